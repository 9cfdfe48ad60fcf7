/*
 * Maps every frame below its own highest that has no M2P entry and is not
 * its own: the hypervisor's frames (the M2P itself, its page tables, each
 * domain's GDT, TSS and ring-0 stack), free frames, and other domains'
 * shared_info pages; read-only and read-write by turns.
 * Xen: -EBUSY for each.
 */
#include "hostile.h"

static unsigned long unowned[4096];

int main(start_info_t *si)
{
    unsigned long va;
    uint64_t before;
    unsigned int i, n;
    long rc;

    (void)si;
    if ((rc = hx_setup()))
        return (int)rc;
    n = hx_unowned_frames(unowned, ARRAY_SIZE(unowned));
    if (n == 0)
        return hx_setup_failed("no frame without an M2P entry below ours", 0);
    va = hx_scratch(0);
    before = hx_pte(va, 1);
    for (i = 0; i < n; i++) {
        rc = hx_update_va_mapping(va, (unowned[i] << 12) | (i & 1 ? HX_RW : HX_RO), UVMF_INVLPG);
        hx_attempt(rc, hx_pte(va, 1) == before, "mapping a frame with no M2P entry");
    }
    return hx_finish();
}
