/*
 * update_va_mapping at non-canonical addresses (0x0000800000000000 and
 * 0x8000000000000000): whatever L1 a walk of them finds is not the
 * guest's to change.
 * Xen: -EINVAL for each.
 */
#include "hostile.h"

int main(start_info_t *si)
{
    const unsigned long va[] = { HX_NON_CANONICAL, 0x8000000000000000UL, 0xffff7ffffffff000UL };
    unsigned long own;
    unsigned int i;
    long rc;

    (void)si;
    if ((rc = hx_setup()))
        return (int)rc;
    own = hx_virt_to_mfn(hx_scratch(0));
    for (i = 0; i < ARRAY_SIZE(va); i++) {
        rc = hx_update_va_mapping(va[i], (own << 12) | HX_RW, UVMF_INVLPG);
        hx_attempt(rc, 1, "update_va_mapping at a non-canonical address");
    }
    return hx_finish();
}
