/*
 * Loads a data page it maps writable (the scratch page) as its kernel
 * page-table root: it could then write the root's entries directly.
 * Xen: -EINVAL (a writable page cannot become an L4).
 */
#include "hostile.h"

int main(start_info_t *si)
{
    unsigned long va, x;
    long rc;

    (void)si;
    if ((rc = hx_setup()))
        return (int)rc;
    va = hx_scratch(0);
    x = hx_virt_to_mfn(va);
    rc = hx_mmuext1(MMUEXT_NEW_BASEPTR, x, 0);
    hx_attempt(rc, hx_update_va_mapping(va, (x << 12) | HX_RW, UVMF_INVLPG) == 0,
               "MMUEXT_NEW_BASEPTR to a writable data page");
    return hx_finish();
}
