/*
 * update_va_mapping at addresses in the hypervisor's area, to map its own
 * frame writable there: over the M2P (Xen's address and wherever it is
 * readable here), its GDT, and its ring-0 stack.
 * Xen: -EINVAL for each.
 */
#include "hostile.h"

int main(start_info_t *si)
{
    const unsigned long va[] = {
        HX_HOLE_M2P, (unsigned long)hx_m2p(), 0xffff808000000000UL, HX_HOLE_RING0_STACK,
        0xffff87fffffff000UL,
    };
    unsigned long own;
    unsigned int i;
    long rc;

    (void)si;
    if ((rc = hx_setup()))
        return (int)rc;
    own = hx_virt_to_mfn(hx_scratch(0));
    for (i = 0; i < ARRAY_SIZE(va); i++) {
        rc = hx_update_va_mapping(va[i], (own << 12) | HX_RW, UVMF_INVLPG);
        hx_attempt(rc, 1, "update_va_mapping in the hypervisor's area");
    }
    return hx_finish();
}
