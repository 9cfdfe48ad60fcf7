/*
 * MMUEXT_COPY_PAGE from every frame the M2P gives another domain into its
 * own scratch page: the victim's memory, read.
 * Xen: -EINVAL for each (get_page_from_gfn: not the caller's frame).
 */
#include "hostile.h"

#define MARK 0x6d6d6d6d6d6d6d6dUL

static unsigned long foreign[4096];

static int attack(void)
{
    volatile uint64_t *page;
    unsigned int i, j, n;
    long rc;

    n = hx_need_foreign(foreign, ARRAY_SIZE(foreign));
    if (n == 0)
        return 1;
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
    return 0;
}
