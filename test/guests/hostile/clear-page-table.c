/*
 * MMUEXT_CLEAR_PAGE on each of its live tables (L1 to L4): the entries
 * would be gone without their references being dropped.
 * Xen: -EINVAL for each (the page must be able to take a writable type).
 */
#include "hostile.h"

static int attack(void)
{
    int level;
    long rc;

    for (level = 1; level <= 4; level++) {
        unsigned long t = hx_table_mfn(hx_scratch(0), level);
        uint64_t before = hx_digest(t);

        rc = hx_mmuext1(MMUEXT_CLEAR_PAGE, t, 0);
        hx_attempt(rc, hx_digest(t) == before, "MMUEXT_CLEAR_PAGE on a live table");
    }
    return 0;
}
