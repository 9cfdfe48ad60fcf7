/*
 * One mmuext_op on every frame the M2P gives another domain. The guests
 * (-D flag, the command):
 *   clear-page-foreign (CMD=MMUEXT_CLEAR_PAGE)    the victim's memory, zeroed
 *   new-baseptr-foreign (CMD=MMUEXT_NEW_BASEPTR)  loaded as its own
 *                                                 page-table root (one of
 *                                                 them is the victim's L4)
 *   pin-foreign (CMD=MMUEXT_PIN_L1_TABLE)         pinned as an L1: the
 *                                                 victim's frames would take
 *                                                 a type (and its data a
 *                                                 validation) from the attacker
 * Xen: -EINVAL for each (get_page_from_gfn: not the caller's frame).
 */
#include "hostile.h"

#if CMD == MMUEXT_CLEAR_PAGE
#define WHAT "clearing another domain's frame"
#elif CMD == MMUEXT_NEW_BASEPTR
#define WHAT "loading another domain's frame as CR3"
#elif CMD == MMUEXT_PIN_L1_TABLE
#define WHAT "pinning another domain's frame"
#else
#error "foreign-mmuext.c: the Makefile passes -DCMD=MMUEXT_CLEAR_PAGE, _NEW_BASEPTR or _PIN_L1_TABLE"
#endif

static unsigned long foreign[4096];

static int attack(void)
{
    unsigned int i, n = hx_need_foreign(foreign, ARRAY_SIZE(foreign));

    if (n == 0)
        return 1;
    for (i = 0; i < n; i++) {
        /* The victim's checksum and audit, in the test, say whether it took. */
        hx_attempt(hx_mmuext1(CMD, foreign[i], 0), 1, WHAT);
    }
    return 0;
}
