/*
 * Points an empty slot of one of its tables at a table: itself (a linear
 * page table) or one two levels up. The guests (-D flag):
 *   linear-l2 (L2_SELF)        L2 slot 511 at the L2, writable: the L2
 *                              would be walked as an L1, its entries as
 *                              page mappings
 *   linear-l3 (L3_SELF)        L3 slot 0 at the L3, writable (an L3
 *                              naming an L3; XSA-185's shape)
 *   linear-l4-ro (L4_SELF_RO)  L4 slot 0 at the L4, read-only (the classic
 *                              linear page table; XSA-182 and XSA-240
 *                              lived there)
 *   linear-l4-rw (L4_SELF_RW)  L4 slot 0 at the L4, writable: a self-map
 *                              through which every table would be a
 *                              writable page
 *   l2-names-l4 (L2_NAMES_L4)  L2 slot 511 at the L4, read-only: a table
 *                              two levels up, to be walked as an L1
 * Xen: -EINVAL (paravane refuses linear page tables; Xen does too for
 * writable ones, and for read-only ones when built without PV_LINEAR_PT;
 * l2-names-l4 is a type conflict: the linear-table exception needs the
 * same level).
 */
#include "hostile.h"

#if defined(L2_SELF)
#define TABLE 2
#define SLOT 511
#define TARGET 2
#define FLAGS HX_RW
#define WHAT "an L2 naming itself"
#elif defined(L3_SELF)
#define TABLE 3
#define SLOT 0
#define TARGET 3
#define FLAGS HX_RW
#define WHAT "an L3 naming itself"
#elif defined(L4_SELF_RO)
#define TABLE 4
#define SLOT 0
#define TARGET 4
#define FLAGS HX_RO
#define WHAT "a read-only L4 self-map"
#elif defined(L4_SELF_RW)
#define TABLE 4
#define SLOT 0
#define TARGET 4
#define FLAGS HX_RW
#define WHAT "a writable L4 self-map"
#elif defined(L2_NAMES_L4)
#define TABLE 2
#define SLOT 511
#define TARGET 4
#define FLAGS HX_RO
#define WHAT "an L2 entry naming the L4"
#else
#error "linear.c: the Makefile passes -DL2_SELF, -DL3_SELF, -DL4_SELF_RO, -DL4_SELF_RW or -DL2_NAMES_L4"
#endif

static int attack(void)
{
    /* The tables on the walk to the kernel (level 4: the L4 itself). */
    unsigned long table = hx_table_mfn(HX_VIRT_BASE, TABLE), target = hx_table_mfn(HX_VIRT_BASE, TARGET);
    long rc;

    if (hx_table(table)[SLOT] != 0)
        return hx_setup_failed("the slot is in use", (long)hx_table(table)[SLOT]);
    rc = hx_mmu1(hx_slot_maddr(table, SLOT), (target << 12) | FLAGS);
    hx_attempt(rc, hx_table(table)[SLOT] == 0, WHAT);
    return 0;
}
