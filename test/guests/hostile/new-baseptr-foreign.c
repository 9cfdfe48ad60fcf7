/*
 * Loads every frame the M2P gives another domain as its own page-table
 * root (one of them is the victim's L4).
 * Xen: -EINVAL for each (get_page_from_gfn: not the caller's frame).
 */
#include "hostile.h"

static unsigned long foreign[4096];

int main(start_info_t *si)
{
    unsigned int i, n;
    long rc;

    (void)si;
    if ((rc = hx_setup()))
        return (int)rc;
    n = hx_foreign_frames(foreign, ARRAY_SIZE(foreign));
    if (n == 0)
        return hx_setup_failed("the M2P shows no other domain's frame", 0);
    for (i = 0; i < n; i++) {
        rc = hx_mmuext1(MMUEXT_NEW_BASEPTR, foreign[i], 0);
        /* The victim's checksum and audit, in the test, say whether it took. */
        hx_attempt(rc, 1, "loading another domain's frame as CR3");
    }
    return hx_finish();
}
