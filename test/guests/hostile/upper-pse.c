/*
 * Writes, in empty slot 0 of an upper table, an entry with PSE set naming
 * its own table one level down. The guests (-D LEVEL=):
 *   l3-pse (3)  in the L3, naming its L2: a 1 GiB superpage over whatever
 *               machine memory follows that frame
 *   l4-pse (4)  in the L4 (PSE is reserved there), naming its L3
 * Xen: -EINVAL.
 */
#include "hostile.h"

#if LEVEL == 3
#define NAME "L3"
#elif LEVEL == 4
#define NAME "L4"
#else
#error "upper-pse.c: the Makefile passes -DLEVEL=3 or -DLEVEL=4"
#endif

static int attack(void)
{
    unsigned long table = hx_table_mfn(HX_VIRT_BASE, LEVEL), below = hx_table_mfn(HX_VIRT_BASE, LEVEL - 1);
    long rc;

    if (hx_table(table)[0] != 0)
        return hx_setup_failed(NAME " slot 0 is in use", (long)hx_table(table)[0]);
    rc = hx_mmu1(hx_slot_maddr(table, 0), (below << 12) | HX_RW | _PAGE_PSE);
    hx_attempt(rc, hx_table(table)[0] == 0, "a PSE entry in the " NAME);
    return 0;
}
