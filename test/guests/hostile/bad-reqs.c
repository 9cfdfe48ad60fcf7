/*
 * mmu_update, mmuext_op and multicall with their request array at an
 * address no request may be read from. The guests (-D ADDR=):
 *   bad-reqs-null (0UL)                    address 0 (nothing is mapped in
 *                                          the first page)
 *   bad-reqs-noncanonical (HX_NON_CANONICAL)  0x0000800000000000, the first
 *                                          non-canonical address
 *   bad-reqs-hole (HX_HOLE_M2P)            0xffff800000000000, in the
 *                                          hypervisor's area (Xen's M2P:
 *                                          readable there on Xen, but never
 *                                          a hypercall argument)
 * Xen: -EFAULT for each.
 */
#include "hostile.h"

#ifndef ADDR
#error "bad-reqs.c: the Makefile passes -DADDR=<the array's address>"
#endif

static int attack(void)
{
    hx_attempt(hx_mmu_update(ADDR, 1, 0, DOMID_SELF), 1, "mmu_update");
    hx_attempt(hx_mmuext_op(ADDR, 1, 0, DOMID_SELF), 1, "mmuext_op");
    hx_attempt(hx_multicall(ADDR, 1), 1, "multicall");
    return 0;
}
