/*
 * spin: a CPU-bound guest, the busy neighbour beside which the ticks
 * workload counts its ticks (bench pvfv): it computes without waiting for
 * SPIN_MS of the clock (<paravane/platform.h>'s platform_now_ns), then
 * prints how many rounds it made and powers off.
 */
#include <paravane/guest.h>
#include <paravane/platform.h>

#define SPIN_MS 1500u

int main(start_info_t *si)
{
    uint64_t start = platform_now_ns(), x = 1;
    unsigned long rounds = 0;

    (void)si;
    while (platform_now_ns() - start < (uint64_t)SPIN_MS * 1000000) {
        for (unsigned int i = 0; i < 10000; i++)
            x = x * 6364136223846793005ULL + 1442695040888963407ULL;
        rounds++;
    }
    printk("spin: %lu rounds in %u ms (%#lx)\n", rounds, SPIN_MS, (unsigned long)(x & 0xff));
    return 0;
}
