/*
 * mmu_update with count 0x7fffffff over an array of 3000 valid requests
 * that ends where the initial mapping ends: the hypervisor must work
 * through it in bounded chunks and fail with -EFAULT where the array runs
 * off mapped memory, not hang or read past. Request i stores i + 1 into one
 * word of a data page, so that word must equal *pdone afterwards.
 * Xen: -EFAULT (it checks the whole range first and does nothing).
 */
#include "hostile.h"

#define N 3000

static uint64_t target[512] __attribute__((aligned(4096)));
static unsigned int done;

static int attack(void)
{
    mmu_update_t *reqs;
    uint64_t ptr;
    unsigned int i;
    long rc;

    reqs = (mmu_update_t *)(hx_mapping_end() - N * sizeof(*reqs));
    ptr = hx_virt_to_maddr((unsigned long)target) | MMU_NORMAL_PT_UPDATE;
    for (i = 0; i < N; i++) {
        reqs[i].ptr = ptr;
        reqs[i].val = i + 1;
    }
    rc = hx_mmu_update((unsigned long)reqs, 0x7fffffff, (unsigned long)&done, DOMID_SELF);
    hx_attempt(rc, done <= N && target[0] == done, "mmu_update with count 0x7fffffff");
    return 0;
}
