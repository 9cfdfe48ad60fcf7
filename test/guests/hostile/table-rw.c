/*
 * A writable mapping of a live page table, at the scratch page. The
 * guests (-D flags):
 *   l1-rw-self-mmu (LEVEL=1 MMU)  its L1, with mmu_update on that very L1:
 *                                 one of its entries would map the L1
 *                                 itself read-write
 *   l1-rw-self-uvm (LEVEL=1 UVM)  its L1, with update_va_mapping at an
 *                                 address that L1 itself maps
 *   l2-rw, l3-rw, l4-rw (LEVEL=n MMU UVM)  the Ln on the walk to the
 *                                 scratch page, both ways: the guest could
 *                                 then rewrite its Ln at will
 * Xen: -EBUSY (a page table cannot take a writable type reference).
 */
#include "hostile.h"

#if LEVEL == 1
#define WHAT "its own L1"
#elif LEVEL == 2
#define WHAT "the L2"
#elif LEVEL == 3
#define WHAT "the L3"
#elif LEVEL == 4
#define WHAT "the L4"
#else
#error "table-rw.c: the Makefile passes -DLEVEL=1 to 4"
#endif

static int attack(void)
{
    unsigned long va = hx_scratch(0), target = hx_table_mfn(va, LEVEL);
    uint64_t before = hx_pte(va, 1);
    long rc;

#ifdef MMU
    rc = hx_mmu1(hx_pte_maddr(va, 1), (target << 12) | HX_RW);
    hx_attempt(rc, hx_pte(va, 1) == before, "mmu_update mapping " WHAT " writable");
#endif
#ifdef UVM
    rc = hx_update_va_mapping(va, (target << 12) | HX_RW, UVMF_INVLPG);
    hx_attempt(rc, hx_pte(va, 1) == before, "update_va_mapping mapping " WHAT " writable");
#endif
    return 0;
}
