/*
 * MMUEXT_COPY_PAGE from every frame the M2P gives another domain into its
 * own scratch page: the victim's memory, read.
 * Xen: -EINVAL for each (get_page_from_gfn: not the caller's frame).
 */
#include "hostile.h"

#define MARK 0x6d6d6d6d6d6d6d6dUL

static unsigned long foreign[4096];

int main(start_info_t *si)
{
    volatile uint64_t *page;
    unsigned int i, j, n;
    long rc;

    (void)si;
    if ((rc = hx_setup()))
        return (int)rc;
    n = hx_foreign_frames(foreign, ARRAY_SIZE(foreign));
    if (n == 0)
        return hx_setup_failed("the M2P shows no other domain's frame", 0);
    page = (volatile uint64_t *)hx_scratch(0);
    for (j = 0; j < 512; j++)
        page[j] = MARK;
    for (i = 0; i < n; i++) {
        int intact = 1;

        rc = hx_mmuext1(MMUEXT_COPY_PAGE, hx_virt_to_mfn(hx_scratch(0)), foreign[i]);
        for (j = 0; j < 512; j++)
            if (page[j] != MARK)
                intact = 0;
        hx_attempt(rc, intact, "copying another domain's frame");
    }
    return hx_finish();
}
