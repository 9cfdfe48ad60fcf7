/*
 * Maps, one after another, every frame the M2P shows belonging to another
 * domain's pfn (the victim's memory, page tables included), read-only and
 * read-write by turns, at the scratch page.
 * Xen: -EBUSY for each (the frame is not the caller's).
 */
#include "hostile.h"

static unsigned long foreign[4096];

int main(start_info_t *si)
{
    unsigned long va;
    uint64_t before;
    unsigned int i, n;
    long rc;

    (void)si;
    if ((rc = hx_setup()))
        return (int)rc;
    n = hx_foreign_frames(foreign, ARRAY_SIZE(foreign));
    if (n == 0)
        return hx_setup_failed("the M2P shows no other domain's frame", 0);
    va = hx_scratch(0);
    before = hx_pte(va, 1);
    for (i = 0; i < n; i++) {
        rc = hx_update_va_mapping(va, (foreign[i] << 12) | (i & 1 ? HX_RW : HX_RO), UVMF_INVLPG);
        hx_attempt(rc, hx_pte(va, 1) == before, "mapping another domain's frame");
    }
    return hx_finish();
}
