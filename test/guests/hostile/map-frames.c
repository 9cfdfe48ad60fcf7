/*
 * Maps, one after another at the scratch page, read-only and read-write by
 * turns, every frame of a kind below its own highest. The guests (-D flag):
 *   map-foreign-m2p (FOREIGN)  every frame the M2P shows belonging to
 *                              another domain's pfn (the victim's memory,
 *                              page tables included)
 *   map-unowned (UNOWNED)      every frame that has no M2P entry and is not
 *                              its own: the hypervisor's frames (the M2P
 *                              itself, its page tables, each domain's GDT,
 *                              TSS and ring-0 stack), free frames, and
 *                              other domains' shared_info pages
 * Xen: -EBUSY for each (the frame is not the caller's).
 */
#include "hostile.h"

#if defined(FOREIGN)
#define WHAT "mapping another domain's frame"
#elif defined(UNOWNED)
#define WHAT "mapping a frame with no M2P entry"
#else
#error "map-frames.c: the Makefile passes -DFOREIGN or -DUNOWNED"
#endif

static unsigned long frames[4096];

static int attack(void)
{
    unsigned long va = hx_scratch(0);
    uint64_t before = hx_pte(va, 1);
    unsigned int i, n;
    long rc;

#ifdef FOREIGN
    n = hx_need_foreign(frames, ARRAY_SIZE(frames));
    if (n == 0)
        return 1;
#else
    n = hx_unowned_frames(frames, ARRAY_SIZE(frames));
    if (n == 0)
        return hx_setup_failed("no frame without an M2P entry below ours", 0);
#endif
    for (i = 0; i < n; i++) {
        rc = hx_update_va_mapping(va, (frames[i] << 12) | (i & 1 ? HX_RW : HX_RO), UVMF_INVLPG);
        hx_attempt(rc, hx_pte(va, 1) == before, WHAT);
    }
    return 0;
}
