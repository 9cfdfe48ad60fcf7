/*
 * Forges a page of entries (every one mapping another domain's frame
 * read-write) and MMUEXT_COPY_PAGEs it over each of its live tables, L1
 * to L4: unvalidated entries straight into tables.
 * Xen: -EINVAL for each (the destination must take a writable type).
 */
#include "hostile.h"

static unsigned long foreign[512];

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
    volatile uint64_t *forged;
    unsigned int i, n;
    int level;
    long rc;

    (void)si;
    if ((rc = hx_setup()))
        return (int)rc;
    n = hx_foreign_frames(foreign, ARRAY_SIZE(foreign));
    if (n == 0)
        return hx_setup_failed("the M2P shows no other domain's frame", 0);
    forged = (volatile uint64_t *)hx_scratch(1);
    for (i = 0; i < 512; i++)
        forged[i] = (foreign[i % n] << 12) | HX_RW;
    for (level = 1; level <= 4; level++) {
        unsigned long t = hx_table_mfn(hx_scratch(0), level);
        uint64_t before = digest(t);

        rc = hx_mmuext1(MMUEXT_COPY_PAGE, t, hx_virt_to_mfn(hx_scratch(1)));
        hx_attempt(rc, digest(t) == before, "MMUEXT_COPY_PAGE of forged entries over a live table");
    }
    return hx_finish();
}
