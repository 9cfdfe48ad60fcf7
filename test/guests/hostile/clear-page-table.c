/*
 * MMUEXT_CLEAR_PAGE on each of its live tables (L1 to L4): the entries
 * would be gone without their references being dropped.
 * Xen: -EINVAL for each (the page must be able to take a writable type).
 */
#include "hostile.h"

/* A digest of a table's 512 entries. */
static uint64_t digest(unsigned long mfn)
{
    const volatile uint64_t *t = hx_table(mfn);
    uint64_t h = 0;
    unsigned int i;

    for (i = 0; i < 512; i++)
        h = (h ^ t[i]) * 0x100000001b3UL;
    return h;
}

int main(start_info_t *si)
{
    int level;
    long rc;

    (void)si;
    if ((rc = hx_setup()))
        return (int)rc;
    for (level = 1; level <= 4; level++) {
        unsigned long t = hx_table_mfn(hx_scratch(0), level);
        uint64_t before = digest(t);

        rc = hx_mmuext1(MMUEXT_CLEAR_PAGE, t, 0);
        hx_attempt(rc, digest(t) == before, "MMUEXT_CLEAR_PAGE on a live table");
    }
    return hx_finish();
}
