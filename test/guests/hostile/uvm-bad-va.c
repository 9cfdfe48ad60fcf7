/*
 * update_va_mapping, to map its own frame writable, at addresses that are
 * not the guest's. The guests (-D flag):
 *   uvm-noncanonical (NONCANONICAL)  non-canonical addresses
 *                                    (0x0000800000000000 and
 *                                    0x8000000000000000): whatever L1 a walk
 *                                    of them finds is not the guest's to change
 *   uvm-hole (HOLE)                  the hypervisor's area: over the M2P (Xen's
 *                                    address and wherever it is readable
 *                                    here), its GDT, and its ring-0 stack
 * Xen: -EINVAL for each.
 */
#include "hostile.h"

#if defined(NONCANONICAL)
#define VAS HX_NON_CANONICAL, 0x8000000000000000UL, 0xffff7ffffffff000UL
#define WHAT "update_va_mapping at a non-canonical address"
#elif defined(HOLE)
#define VAS HX_HOLE_M2P, (unsigned long)hx_m2p(), 0xffff808000000000UL, HX_HOLE_RING0_STACK, 0xffff87fffffff000UL
#define WHAT "update_va_mapping in the hypervisor's area"
#else
#error "uvm-bad-va.c: the Makefile passes -DNONCANONICAL or -DHOLE"
#endif

static int attack(void)
{
    const unsigned long va[] = { VAS };
    unsigned long own = hx_virt_to_mfn(hx_scratch(0));
    unsigned int i;

    for (i = 0; i < ARRAY_SIZE(va); i++)
        hx_attempt(hx_update_va_mapping(va[i], (own << 12) | HX_RW, UVMF_INVLPG), 1, WHAT);
    return 0;
}
