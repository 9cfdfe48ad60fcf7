/*
 * mmu_update and mmuext_op with one valid request and pdone (where the
 * count done is written back) at L4 slot 1, through the L4's read-only mapping (an empty slot
 * that a 32-bit store would make present).
 * Xen's rule for every guest handle (xen-abi.md 5.1 #59): -EFAULT. (Xen
 * itself writes pdone best-effort and returns the requests' 0.)
 */
#include "hostile.h"

static uint64_t target[512] __attribute__((aligned(4096)));

int main(start_info_t *si)
{
    mmu_update_t req;
    struct mmuext_op op;
    unsigned long pdone;
    uint64_t before;
    long rc;

    (void)si;
    if ((rc = hx_setup()))
        return (int)rc;
    pdone = start_info->pt_base + 8;
    before = hx_table(hx_l4_mfn())[1];
    req.ptr = hx_virt_to_maddr((unsigned long)target) | MMU_NORMAL_PT_UPDATE;
    req.val = 1;
    rc = hx_mmu_update((unsigned long)&req, 1, pdone, DOMID_SELF);
    hx_attempt_any(rc, hx_table(hx_l4_mfn())[1] == before, "mmu_update");
    memset(&op, 0, sizeof(op));
    op.cmd = MMUEXT_TLB_FLUSH_LOCAL;
    rc = hx_mmuext_op((unsigned long)&op, 1, pdone, DOMID_SELF);
    hx_attempt_any(rc, hx_table(hx_l4_mfn())[1] == before, "mmuext_op");
    return hx_finish();
}
