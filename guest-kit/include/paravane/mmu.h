/*
 * Page tables from a PV guest: wrappers for mmu_update, update_va_mapping
 * and mmuext_op; the P2M and M2P; a queue that batches page-table writes
 * into one mmu_update; pins, base pointers and flushes; and a page
 * allocator over the domain's free memory. See docs/guest-kit.md.
 *
 * Words: a PFN is the guest's own page number (an index into
 * start_info->mfn_list); an MFN is the machine frame behind it, which is
 * what entries, pins and base pointers name. A maddr is MFN << 12 plus an
 * offset. Every table the guest builds is checked by the hypervisor with
 * Xen's rules (the validator's PT-* rules): a page table may not be mapped
 * writable anywhere, so a page becomes a table only after every writable
 * mapping of it is gone (mmu_set_readonly).
 *
 * One vCPU, events masked: nothing here locks.
 */
#ifndef __PARAVANE_MMU_H__
#define __PARAVANE_MMU_H__

#include <stdint.h>
#include <stddef.h>
#include <xen/xen.h>
#include <xen/arch-x86/xen.h>
#include <paravane/hypercall.h>
#include <paravane/pte.h>
#include <paravane/start.h>

/* --- Hypercalls. */

/*
 * mmu_update: count requests from req (MMU_NORMAL_PT_UPDATE,
 * MMU_PT_UPDATE_PRESERVE_AD or MMU_MACHPHYS_UPDATE in ptr's low bits). Stops
 * at the first failure; *pdone (if not NULL) counts the requests done.
 * foreigndom: DOMID_SELF.
 */
__hc_inline long HYPERVISOR_mmu_update(const mmu_update_t *req, unsigned int count,
                                       unsigned int *pdone, unsigned int foreigndom)
{
    return _hypercall4(__HYPERVISOR_mmu_update, (unsigned long)req, count,
                       (unsigned long)pdone, foreigndom);
}

/*
 * update_va_mapping: sets the L1 entry that maps va in the current tables
 * to val; flags are UVMF_NONE, UVMF_INVLPG or UVMF_TLB_FLUSH (| UVMF_ALL).
 */
__hc_inline long HYPERVISOR_update_va_mapping(unsigned long va, uint64_t val, unsigned long flags)
{
    return _hypercall3(__HYPERVISOR_update_va_mapping, va, val, flags);
}

/* mmuext_op: count MMUEXT_* operations from op; *pdone as for mmu_update. */
__hc_inline long HYPERVISOR_mmuext_op(const struct mmuext_op *op, unsigned int count,
                                      unsigned int *pdone, unsigned int foreigndom)
{
    return _hypercall4(__HYPERVISOR_mmuext_op, (unsigned long)op, count,
                       (unsigned long)pdone, foreigndom);
}

/* --- Addresses and frames. */

/* The start of the initial mapping, where pfn n is at VIRT_BASE + n * 4096 (lib/guest.lds). */
extern char __virt_base[];
#define VIRT_BASE ((unsigned long)__virt_base)

/*
 * The read-only M2P (u64 PFN per MFN) the hypervisor maps into every L4.
 * Xen puts it at MACH2PHYS_VIRT_START (<xen/arch-x86/xen.h>); the kit asks
 * where with XENMEM_machphys_mapping (as Linux does) the first time it
 * needs it, and keeps the answer here.
 */
extern const xen_pfn_t *machine_to_phys_mapping;

/* Not a frame: what the allocator returns when it has none left. */
#define INVALID_PFN (~0UL)
#define INVALID_MFN (~0UL)

/* The frame behind pfn (< start_info->nr_pages), from the P2M list. */
static inline xen_pfn_t pfn_to_mfn(xen_pfn_t pfn)
{
    return ((const xen_pfn_t *)start_info->mfn_list)[pfn];
}

/*
 * The pfn of one of the domain's own frames, read from the M2P; INVALID_PFN
 * for a frame past the M2P's end. (Other domains' frames: do not ask.)
 */
xen_pfn_t mfn_to_pfn(xen_pfn_t mfn);

/* Addresses in the initial mapping and their pfns. */
static inline xen_pfn_t virt_to_pfn(const void *va)
{
    return ((unsigned long)va - VIRT_BASE) >> PAGE_SHIFT;
}

static inline void *pfn_to_virt(xen_pfn_t pfn)
{
    return (void *)(VIRT_BASE + (pfn << PAGE_SHIFT));
}

static inline xen_pfn_t virt_to_mfn(const void *va)
{
    return pfn_to_mfn(virt_to_pfn(va));
}

/* The machine address of the byte at va (in the initial mapping). */
static inline uint64_t virt_to_maddr(const void *va)
{
    return ((uint64_t)virt_to_mfn(va) << PAGE_SHIFT) | ((unsigned long)va & (PAGE_SIZE - 1));
}

/* --- Entries. */

/*
 * Flags for a data page (L1), read-write or read-only, and for an entry
 * naming a lower table (L2-L4). No US: the guest kernel runs at CPL 3, so
 * Xen sets US in every entry it validates or installs, and guests (Linux
 * too) leave it to Xen. Add _PAGE_NX to data pages that hold no code.
 */
#define PTE_RW    (_PAGE_PRESENT | _PAGE_RW | _PAGE_ACCESSED | _PAGE_DIRTY)
#define PTE_RO    (_PAGE_PRESENT | _PAGE_ACCESSED)
#define PTE_TABLE (_PAGE_PRESENT | _PAGE_RW | _PAGE_ACCESSED | _PAGE_DIRTY)

/* An entry naming frame mfn with flags. */
static inline uint64_t pte_make(xen_pfn_t mfn, uint64_t flags)
{
    return ((uint64_t)mfn << PAGE_SHIFT) | flags;
}

static inline xen_pfn_t pte_mfn(uint64_t pte)
{
    return (pte & _PAGE_MFN_MASK) >> PAGE_SHIFT;
}

/* The index of va's entry in its level-`level` table (1 = L1 ... 4 = L4). */
static inline unsigned int pt_index(unsigned long va, int level)
{
    return (va >> (PAGE_SHIFT + 9 * (level - 1))) & (PAGETABLE_ENTRIES - 1);
}

/* --- The batching queue (one mmu_update per MMU_QUEUE_SIZE requests). */

#define MMU_QUEUE_SIZE 512

/*
 * Queue "write val to the entry at machine address pte_maddr"
 * (MMU_NORMAL_PT_UPDATE), or "M2P[mfn] = pfn" (MMU_MACHPHYS_UPDATE). A
 * full queue is issued at once. Requests are numbered from 0 since the
 * last mmu_flush(). Once a batch has failed, requests are not queued:
 * they return that error until mmu_flush() reports it. Returns 0 or that
 * error.
 */
long mmu_queue_pte(uint64_t pte_maddr, uint64_t val);
long mmu_queue_machphys(xen_pfn_t mfn, xen_pfn_t pfn);

/*
 * Issues what is queued. Returns 0, or the first error (-XEN_E*) since the
 * last mmu_flush(); then *failed (if not NULL) is the number of the request
 * that failed: those before it were applied, it and those after were not.
 * Flush before anything that depends on the queued writes (a pin, a base
 * pointer, reading the tables, touching the pages they map). This issues
 * the queue; it is not a TLB flush: as on Xen, an update that removes or
 * replaces a present mapping may keep the old translation alive until the
 * guest asks (mmu_tlb_flush(), mmu_invlpg(), or UVMF_INVLPG with
 * update_va_mapping). Additions need no flush.
 */
long mmu_flush(unsigned long *failed);

/* --- mmuext_op, one operation each (0 or -XEN_E*). */

/* Pins the level-`level` (1-4) table in mfn: validates it and all it maps. */
long mmu_pin(int level, xen_pfn_t mfn);
long mmu_unpin(xen_pfn_t mfn);
/* Loads the L4 in mfn as the kernel's base pointer (CR3). */
long mmu_new_baseptr(xen_pfn_t mfn);
/*
 * Loads the L4 in mfn as the user base pointer: the tables guest user mode
 * runs on (0: none, and a return to user mode crashes the domain). See
 * <paravane/user.h>.
 */
long mmu_new_user_baseptr(xen_pfn_t mfn);
/* The L4 loaded now: the bootstrap L4 until mmu_new_baseptr() changes it. */
xen_pfn_t mmu_current_base(void);
long mmu_tlb_flush(void);
long mmu_invlpg(unsigned long va);
/* Zeroes frame mfn; copies frame src to dst (neither may be a page table). */
long mmu_clear_page(xen_pfn_t mfn);
long mmu_copy_page(xen_pfn_t dst, xen_pfn_t src);

/*
 * Remaps the page of the initial mapping at va read-only or read-write
 * (update_va_mapping on the current tables, with INVLPG; after a switch,
 * the new tables must map the initial mapping too). A page must be
 * read-only everywhere before it can be a table, and a table cannot be
 * made writable (-XEN_EBUSY) until it is one no longer.
 */
long mmu_set_readonly(const void *va);
long mmu_set_writable(const void *va);

/*
 * Walks the current tables for va: *pte = its L1 entry (0 when absent),
 * *pte_maddr = that entry's machine address (either pointer may be NULL).
 * Returns 0, -XEN_ENOENT if an upper-level entry is absent, or -XEN_EFAULT
 * if va is in the hypervisor's slots or a table on the way is not in the
 * initial mapping (the walk reads tables there, finding them with
 * mfn_to_pfn).
 */
long mmu_lookup(unsigned long va, uint64_t *pte, uint64_t *pte_maddr);

/* --- Pages from the domain's free memory. */

/*
 * The allocator hands each page out once and never takes it back. It
 * starts after the bootstrap region: the builder places the kernel, P2M,
 * start_info, xenstore and console pages, the bootstrap tables
 * (start_info->pt_base, nr_pt_frames) and a one-page boot stack, then maps
 * slack up to a 4 MiB boundary (the initial mapping; its end is found by
 * walking the bootstrap tables, without the M2P). Two pools:
 *
 *   mmu_alloc_page()  a page of that slack, zeroed, returned as its address
 *                     in the initial mapping, read-write (NULL: none left).
 *                     Good for page tables: fill them, mmu_set_readonly().
 *   mmu_alloc_pfn()   a pfn past the initial mapping (and past an initrd or
 *                     P2M the builder put there), mapped nowhere, contents
 *                     unspecified (INVALID_PFN: none left). Map it (or
 *                     mmu_clear_page() it) before use.
 */
void *mmu_alloc_page(void);
xen_pfn_t mmu_alloc_pfn(void);

/* What the allocator has: next free pfn and end (exclusive) of each pool. */
struct mmu_memory {
    xen_pfn_t mapped_next, mapped_end;
    xen_pfn_t unmapped_next, unmapped_end;
};
void mmu_memory(struct mmu_memory *m);

#endif /* __PARAVANE_MMU_H__ */
