/*
 * Pins its console page as a table, at each level. The hypervisor's
 * console backend writes that page (the ring indices, host input) itself,
 * as xenconsoled does through its mapping: had the page become a table,
 * those writes would change validated entries behind the page-type
 * system's back (the guest chooses out_prod, which the backend copies into
 * out_cons: the two halves of one 8-byte entry). The page is zeroed first,
 * so that it would validate at every level, and mapped read-only, so that
 * the guest's own mapping is no reason to refuse (the kit prints through
 * console_io, not the ring).
 * Xen: xenconsoled's writable mapping holds the page's type: -EINVAL.
 */
#include "hostile.h"

static int attack(void)
{
    unsigned long mfn = start_info->console.domU.mfn;
    unsigned long va = (unsigned long)hx_mfn_to_virt(mfn);
    unsigned int cmd;
    long rc;

    if (!hx_own(mfn))
        return hx_setup_failed("start_info's console page is not the domain's", (long)mfn);
    for (cmd = MMUEXT_PIN_L1_TABLE; cmd <= MMUEXT_PIN_L4_TABLE; cmd++) {
        /* Zeroed (an L4 pin fills the hypervisor's slots) and read-only before each level. */
        memset((void *)va, 0, HX_PAGE);
        rc = hx_update_va_mapping(va, (mfn << 12) | HX_RO, UVMF_INVLPG);
        if (rc != 0)
            return hx_setup_failed("could not map the console page read-only", rc);
        rc = hx_mmuext1(cmd, mfn, 0);
        if (rc == 0)
            hx_mmuext1(MMUEXT_UNPIN_TABLE, mfn, 0);
        hx_attempt(rc, 1, "pinning its console page");
        /* Writable again, for the next level's zeroing. */
        if (!hx_still_writable(va, mfn))
            return hx_setup_failed("could not map the console page writable again", 0);
    }
    return 0;
}
