/*
 * Re-maps the scratch page to its own frame with one forbidden L1 bit set,
 * with update_va_mapping and with mmu_update. The guests (-D flag):
 *   l1-pwt (PWT)      PWT, write-through  } cache attributes are for
 *   l1-pcd (PCD)      PCD, cache disable  } domains with I/O privileges
 *   l1-pat (PAT)      the PAT bit         }
 *   l1-bit62 (BIT62)  bit 62, the bit Xen keeps for grant mappings (a
 *                     debug build's answer; a release build lets it through)
 * Xen: -EINVAL.
 */
#include "hostile.h"

#if defined(PWT)
#define BIT _PAGE_PWT
#define WHAT "PWT (write-through)"
#elif defined(PCD)
#define BIT _PAGE_PCD
#define WHAT "PCD (cache disable)"
#elif defined(PAT)
#define BIT _PAGE_PAT
#define WHAT "PAT"
#elif defined(BIT62)
#define BIT _PAGE_GNTTAB
#define WHAT "bit 62 (Xen's grant-mapping bit)"
#else
#error "l1-bits.c: the Makefile passes -DPWT, -DPCD, -DPAT or -DBIT62"
#endif

static int attack(void)
{
    unsigned long va = hx_scratch(0);
    uint64_t before = hx_pte(va, 1);
    long rc;

    rc = hx_update_va_mapping(va, before | BIT, UVMF_INVLPG);
    hx_attempt(rc, hx_pte(va, 1) == before, "update_va_mapping with " WHAT);
    rc = hx_mmu1(hx_pte_maddr(va, 1), before | BIT);
    hx_attempt(rc, hx_pte(va, 1) == before, "mmu_update with " WHAT);
    return 0;
}
