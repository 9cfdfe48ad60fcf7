/*
 * Forges a page of entries (every one mapping another domain's frame
 * read-write) and MMUEXT_COPY_PAGEs it over each of its live tables, L1
 * to L4: unvalidated entries straight into tables.
 * Xen: -EINVAL for each (the destination must take a writable type).
 */
#include "hostile.h"

static unsigned long foreign[512];

static int attack(void)
{
    volatile uint64_t *forged;
    unsigned int i, n;
    int level;
    long rc;

    n = hx_need_foreign(foreign, ARRAY_SIZE(foreign));
    if (n == 0)
        return 1;
    forged = (volatile uint64_t *)hx_scratch(1);
    for (i = 0; i < 512; i++)
        forged[i] = (foreign[i % n] << 12) | HX_RW;
    for (level = 1; level <= 4; level++) {
        unsigned long t = hx_table_mfn(hx_scratch(0), level);
        uint64_t before = hx_digest(t);

        rc = hx_mmuext1(MMUEXT_COPY_PAGE, t, hx_virt_to_mfn(hx_scratch(1)));
        hx_attempt(rc, hx_digest(t) == before, "MMUEXT_COPY_PAGE of forged entries over a live table");
    }
    return 0;
}
