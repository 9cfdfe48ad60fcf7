/*
 * A stale translation as a way in. It writes through its writable mapping
 * of frame X (so the CPU caches it), moves that address to frame Y without
 * asking for a flush (UVMF_NONE), pins X as an L1 (allowed: X has no
 * writable mapping left), and writes through the address again. If the
 * hypervisor left the old translation in place, the store lands in X, a
 * validated L1. Both stores are non-present entries, so nothing breaks if
 * it does. Xen flushes when X's type changes; paravane when a present
 * entry changes.
 * Xen: 0 and the second store in Y. The line says "refused ...: 0" then.
 */
#include "hostile.h"

#define FIRST  0x4242424242424240UL   /* not present: harmless in an L1 */
#define SECOND 0x5454545454545450UL

int main(start_info_t *si)
{
    volatile uint64_t *p, *xview;
    unsigned long va, x, y;
    long rc;

    (void)si;
    if ((rc = hx_setup()))
        return (int)rc;
    va = hx_scratch(0);
    p = (volatile uint64_t *)va;
    x = hx_virt_to_mfn(va);
    y = hx_virt_to_mfn(hx_scratch(1));
    p[0] = FIRST;
    if (p[0] != FIRST)
        return hx_setup_failed("the scratch page does not keep what is stored", 0);
    rc = hx_update_va_mapping(va, (y << 12) | HX_RW, UVMF_NONE);
    if (rc != 0)
        return hx_setup_failed("could not move the scratch address to another frame", rc);
    rc = hx_mmuext1(MMUEXT_PIN_L1_TABLE, x, 0);
    if (rc != 0)
        return hx_setup_failed("could not pin the old frame as an L1", rc);
    p[0] = SECOND;
    /* Look at X through a read-only mapping (allowed for an L1). */
    rc = hx_update_va_mapping(hx_scratch(2), (x << 12) | HX_RO, UVMF_INVLPG);
    if (rc != 0)
        return hx_setup_failed("could not map the new L1 read-only", rc);
    xview = (volatile uint64_t *)hx_scratch(2);
    hx_attempt_any(0, xview[0] == FIRST && p[0] == SECOND,
                   "a store through a translation the hypervisor should have dropped");
    return hx_finish();
}
