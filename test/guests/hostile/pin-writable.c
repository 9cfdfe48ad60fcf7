/*
 * Pins, at each level, a page it still maps writable (the scratch page):
 * it could then rewrite a validated table behind the hypervisor's back.
 * Xen: -EINVAL for each (a writable page cannot take a table type).
 */
#include "hostile.h"

static int attack(void)
{
    unsigned long va, x;
    unsigned int cmd;
    long rc;

    va = hx_scratch(0);
    x = hx_virt_to_mfn(va);
    for (cmd = MMUEXT_PIN_L1_TABLE; cmd <= MMUEXT_PIN_L4_TABLE; cmd++) {
        rc = hx_mmuext1(cmd, x, 0);
        /* Had the pin worked, the page could no longer be mapped writable. */
        hx_attempt(rc, hx_still_writable(va, x),
                   "pinning a page mapped writable");
    }
    return 0;
}
