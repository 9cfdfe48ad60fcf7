/*
 * Builds a new L4 in a page of its own: a copy of its current L4 with every
 * hypervisor slot (256-271) forged to point at its own L3. Then drops its
 * writable mapping of that page and pins it as an L4. The pin is allowed;
 * what must not survive is the forgery: validation skips those slots and
 * the hypervisor writes its own entries there.
 * Xen: 0, with slots 256-271 as in every other L4 of the domain. The line
 * says "refused ...: 0" when the slots were replaced.
 */
#include "hostile.h"

static int attack(void)
{
    const volatile uint64_t *cur;
    volatile uint64_t *page;
    unsigned long va, f, l3;
    unsigned int slot;
    int same = 1;
    long rc;

    cur = hx_table(hx_l4_mfn());
    l3 = hx_table_mfn(HX_VIRT_BASE, 3);
    va = hx_scratch(0);
    f = hx_virt_to_mfn(va);
    page = (volatile uint64_t *)va;
    for (slot = 0; slot < 512; slot++)
        page[slot] = cur[slot];
    for (slot = HYPERVISOR_L4_FIRST_SLOT; slot <= HYPERVISOR_L4_LAST_SLOT; slot++)
        page[slot] = (l3 << 12) | HX_RW;
    rc = hx_update_va_mapping(va, (f << 12) | HX_RO, UVMF_INVLPG);
    if (rc != 0)
        return hx_setup_failed("could not map the new L4 read-only", rc);
    rc = hx_mmuext1(MMUEXT_PIN_L4_TABLE, f, 0);
    for (slot = HYPERVISOR_L4_FIRST_SLOT; slot <= HYPERVISOR_L4_LAST_SLOT; slot++)
        if (page[slot] != cur[slot])
            same = 0;
    hx_attempt_any(rc, same, "pinning an L4 with forged hypervisor slots");
    return 0;
}
