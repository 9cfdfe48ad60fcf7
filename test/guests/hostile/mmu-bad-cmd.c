/*
 * mmu_update requests whose type (ptr's low 3 bits) is 4 to 7: no such
 * request exists; none may be taken for another.
 * Xen: -ENOSYS for each.
 */
#include "hostile.h"

static uint64_t target[512] __attribute__((aligned(4096)));

static int attack(void)
{
    uint64_t ptr;
    unsigned int cmd;
    long rc;

    ptr = hx_virt_to_maddr((unsigned long)target);
    for (cmd = 4; cmd <= 7; cmd++) {
        rc = hx_mmu1(ptr | cmd, 0x4242424242424242UL);
        hx_attempt(rc, target[0] == 0, "an mmu_update request of an unknown type");
    }
    return 0;
}
