/*
 * Loads a data page it maps writable (the scratch page) as a page-table
 * root: it could then write the root's entries directly. The guests
 * (-D CMD=):
 *   new-baseptr-data (MMUEXT_NEW_BASEPTR)            its kernel root
 *   new-user-baseptr-data (MMUEXT_NEW_USER_BASEPTR)  its user root
 * Xen: -EINVAL (a writable page cannot become an L4).
 */
#include "hostile.h"

#if CMD == MMUEXT_NEW_BASEPTR
#define WHAT "MMUEXT_NEW_BASEPTR to a writable data page"
#elif CMD == MMUEXT_NEW_USER_BASEPTR
#define WHAT "MMUEXT_NEW_USER_BASEPTR to a writable data page"
#else
#error "baseptr-data.c: the Makefile passes -DCMD=MMUEXT_NEW_BASEPTR or -DCMD=MMUEXT_NEW_USER_BASEPTR"
#endif

static int attack(void)
{
    unsigned long va = hx_scratch(0), x = hx_virt_to_mfn(va);
    long rc = hx_mmuext1(CMD, x, 0);

    hx_attempt(rc, hx_still_writable(va, x), WHAT);
    return 0;
}
