/*
 * Pins, at each level, a page it still maps writable (the scratch page):
 * it could then rewrite a validated table behind the hypervisor's back.
 * Xen: -EINVAL for each (a writable page cannot take a table type).
 */
#include "hostile.h"

int main(start_info_t *si)
{
    unsigned long va, x;
    unsigned int cmd;
    long rc;

    (void)si;
    if ((rc = hx_setup()))
        return (int)rc;
    va = hx_scratch(0);
    x = hx_virt_to_mfn(va);
    for (cmd = MMUEXT_PIN_L1_TABLE; cmd <= MMUEXT_PIN_L4_TABLE; cmd++) {
        rc = hx_mmuext1(cmd, x, 0);
        /* Had the pin worked, the page could no longer be mapped writable. */
        hx_attempt(rc, hx_update_va_mapping(va, (x << 12) | HX_RW, UVMF_INVLPG) == 0,
                   "pinning a page mapped writable");
    }
    return hx_finish();
}
