/*
 * compute: a workload that touches nothing but the CPU and its own memory,
 * written only against the kit's console and start contract, so that the
 * same source builds as a PV kernel and as a plain one (PLATFORM=native).
 * It counts the primes below 2,000,000 with a sieve (a known answer:
 * 148933) and folds the sieve into a checksum, then prints both with the
 * TSC cycles the sieve took. Run in every mode, it must print the same
 * answer; the cycles are the native-speed check.
 */
#include <paravane/guest.h>

#define LIMIT 2000000u

static uint8_t composite[LIMIT / 8 + 1];

static inline uint64_t cycles(void)
{
    uint32_t lo, hi;

    asm volatile("lfence; rdtsc" : "=a"(lo), "=d"(hi));
    return ((uint64_t)hi << 32) | lo;
}

static int is_composite(uint32_t n)
{
    return composite[n >> 3] & (1u << (n & 7));
}

int main(start_info_t *si)
{
    uint64_t t0, t1, sum = 0;
    uint32_t primes = 0;

    (void)si;
    t0 = cycles();
    for (uint32_t i = 2; (uint64_t)i * i < LIMIT; i++)
        if (!is_composite(i))
            for (uint32_t j = i * i; j < LIMIT; j += i)
                composite[j >> 3] |= (uint8_t)(1u << (j & 7));
    for (uint32_t n = 2; n < LIMIT; n++) {
        if (!is_composite(n)) {
            primes++;
            sum = sum * 31 + n;
        }
    }
    t1 = cycles();
    printk("compute: primes below %u: %u, checksum %#lx\n", LIMIT, primes, (unsigned long)sum);
    printk("compute: %lu cycles\n", (unsigned long)(t1 - t0));
    return primes == 148933 ? 0 : 1;
}
