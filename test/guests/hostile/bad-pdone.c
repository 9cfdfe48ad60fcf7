/*
 * mmu_update and mmuext_op with one valid request and pdone (where the
 * count done is written back) somewhere no guest may have it written. The
 * guests (-D flag):
 *   bad-pdone-null (NUL)                at 0x100, in the unmapped first page
 *                                       (0 itself means no pdone)
 *   bad-pdone-noncanonical (NONCANONICAL)  at 0x0000800000000000, the first
 *                                       non-canonical address
 *   bad-pdone-hole (HOLE)               at the top of its ring-0 stack in the
 *                                       hypervisor's area, where exception
 *                                       frames land
 *   bad-pdone-l4 (L4)                   at L4 slot 1, through the L4's
 *                                       read-only mapping (an empty slot that
 *                                       a 32-bit store would make present)
 * Xen's rule for every guest handle (xen-abi.md 5.1 #59): -EFAULT. (Xen
 * itself writes pdone best-effort and returns the requests' 0.)
 */
#include "hostile.h"

#if defined(NUL)
#define PDONE 0x100UL
#elif defined(NONCANONICAL)
#define PDONE HX_NON_CANONICAL
#elif defined(HOLE)
#define PDONE (HX_HOLE_RING0_STACK + 0xff0)
#elif defined(L4)
#define PDONE (start_info->pt_base + 8)
#else
#error "bad-pdone.c: the Makefile passes -DNUL, -DNONCANONICAL, -DHOLE or -DL4"
#endif

#ifdef L4
#define INTACT (hx_table(hx_l4_mfn())[1] == before)
#else
#define INTACT 1
#endif

static uint64_t target[512] __attribute__((aligned(4096)));

static int attack(void)
{
    mmu_update_t req;
    struct mmuext_op op;
    unsigned long pdone = PDONE;
    uint64_t before __attribute__((unused)) = hx_table(hx_l4_mfn())[1];
    long rc;

    req.ptr = hx_virt_to_maddr((unsigned long)target) | MMU_NORMAL_PT_UPDATE;
    req.val = 1;
    rc = hx_mmu_update((unsigned long)&req, 1, pdone, DOMID_SELF);
    hx_attempt_any(rc, INTACT, "mmu_update");
    memset(&op, 0, sizeof(op));
    op.cmd = MMUEXT_TLB_FLUSH_LOCAL;
    rc = hx_mmuext_op((unsigned long)&op, 1, pdone, DOMID_SELF);
    hx_attempt_any(rc, INTACT, "mmuext_op");
    return 0;
}
