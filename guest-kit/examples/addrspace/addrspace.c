/*
 * addrspace: builds a second address space with <paravane/mmu.h>, pins it,
 * moves into it, then maps, unmaps and remaps memory there and checks what
 * the hypervisor refuses. Prints "ok <what>" or "FAIL <what>: got <x>
 * expected <y>" per check, then "addrspace: <n> ok, <m> failed"; returns 0
 * (poweroff) only when every check passed. Needs about 9 MiB past the
 * initial mapping: run with --memory 32. Expectations are Xen's towards an
 * unprivileged PV domU.
 *
 * The new address space, by L4 slot:
 *   511  the kernel: a new L3 and L2 whose entries copy the bootstrap L2's,
 *        so the bootstrap L1s (and the code they map) are shared, as Linux
 *        does with level2_kernel_pgt
 *   32   window A at 0x100000000000: DATA_PAGES frames from past the
 *        initial mapping, read-write; window B, 1 GiB higher: the same
 *        frames, read-only
 * Its tables come from mmu_alloc_page(): filled with plain stores, made
 * read-only, pinned. The windows' L1 entries are written afterwards, on
 * the live tables, through the mmu_update queue.
 *
 * Touching a page that is not mapped would end the domain (there are no
 * trap handlers), so absence is checked by reading the L1 entries instead
 * (the tables stay mapped read-only in the initial mapping).
 */
#include <paravane/guest.h>
#include <paravane/check.h>
#include <paravane/mmu.h>

#define DATA_PAGES  2048                                /* 8 MiB per window */
#define WIN_A       0x0000100000000000UL
#define WIN_B       (WIN_A + (1UL << 30))
#define WIN_L1S     (DATA_PAGES / PAGETABLE_ENTRIES)
#define WORDS       (PAGE_SIZE / sizeof(uint64_t))
#define PTE_DATA_RW (PTE_RW | _PAGE_NX)
#define PTE_DATA_RO (PTE_RO | _PAGE_NX)
/* A frame number past any machine memory. */
#define NO_SUCH_MFN 0xfffffffffUL

/* The new tables, at their addresses in the initial mapping. */
static struct {
    uint64_t *l4, *kernel_l3, *kernel_l2, *data_l3, *l2_a, *l2_b;
    uint64_t *l1_a[WIN_L1S], *l1_b[WIN_L1S];
} sp;
/* The same, as a list. */
static uint64_t *tables[6 + 2 * WIN_L1S];
/* The frames behind the windows: page k of A and of B is data_mfn[k]. */
static xen_pfn_t data_mfn[DATA_PAGES];
/* The bootstrap tables on the way to the kernel (read-only in the initial mapping). */
static uint64_t *boot_l4, *boot_l3, *boot_l2, *boot_l1;

/* --- Windows and their contents. */

static void *page_of(unsigned long window, unsigned int k)
{
    return (void *)(window + (unsigned long)k * PAGE_SIZE);
}

/* The machine address of the L1 entry for page k of a window. */
static uint64_t slot(uint64_t *const l1[], unsigned int k)
{
    return virt_to_maddr(&l1[k / PAGETABLE_ENTRIES][k % PAGETABLE_ENTRIES]);
}

/* Word w of the pattern tagged `tag` (one tag per page written). */
static uint64_t pattern(unsigned int tag, unsigned int w)
{
    return ((uint64_t)tag << 40) ^ ((uint64_t)w << 12) ^ 0x5eed00a11ce5ULL;
}

static void fill(unsigned long window, unsigned int k, unsigned int tag)
{
    volatile uint64_t *p = page_of(window, k);
    unsigned int w;

    for (w = 0; w < WORDS; w++)
        p[w] = pattern(tag, w);
}

static int holds(unsigned long window, unsigned int k, unsigned int tag)
{
    const volatile uint64_t *p = page_of(window, k);
    unsigned int w;

    for (w = 0; w < WORDS; w++) {
        if (p[w] != pattern(tag, w))
            return 0;
    }
    return 1;
}

/* The entry for page k of a window, read from its L1 (read-only in the initial mapping). */
static uint64_t entry_of(uint64_t *const l1[], unsigned int k)
{
    return ((const volatile uint64_t *)l1[k / PAGETABLE_ENTRIES])[k % PAGETABLE_ENTRIES];
}

/* Whether an entry maps mfn with the given RW and NX bits (US, A and D aside). */
static int maps(uint64_t pte, xen_pfn_t mfn, uint64_t flags)
{
    const uint64_t mask = _PAGE_PRESENT | _PAGE_RW | _PAGE_NX;

    return pte_mfn(pte) == mfn && (pte & mask) == (flags & mask);
}

/* A bootstrap table an entry names (they are the nr_pt_frames pages from pt_base). */
static uint64_t *boot_table(uint64_t entry)
{
    xen_pfn_t first = virt_to_pfn((void *)start_info->pt_base), pfn;

    for (pfn = first; pfn < first + start_info->nr_pt_frames; pfn++) {
        if (pfn_to_mfn(pfn) == pte_mfn(entry))
            return pfn_to_virt(pfn);
    }
    return NULL;
}

/* Flags of an entry naming a lower table (the hypervisor adds US, as Xen). */
static uint64_t table_flags(void)
{
    return PTE_TABLE;
}

/* --- Steps. */

static int allocate(void)
{
    struct mmu_memory m;
    unsigned int i, n = 0;

    mmu_memory(&m);
    printk("memory: mapped pool pfns %#lx-%#lx, unmapped pool pfns %#lx-%#lx\n",
           m.mapped_next, m.mapped_end, m.unmapped_next, m.unmapped_end);
    tables[n++] = sp.l4 = mmu_alloc_page();
    tables[n++] = sp.kernel_l3 = mmu_alloc_page();
    tables[n++] = sp.kernel_l2 = mmu_alloc_page();
    tables[n++] = sp.data_l3 = mmu_alloc_page();
    tables[n++] = sp.l2_a = mmu_alloc_page();
    tables[n++] = sp.l2_b = mmu_alloc_page();
    for (i = 0; i < WIN_L1S; i++) {
        tables[n++] = sp.l1_a[i] = mmu_alloc_page();
        tables[n++] = sp.l1_b[i] = mmu_alloc_page();
    }
    for (i = 0; i < n; i++) {
        if (tables[i] == NULL) {
            check_eq("allocate the tables from the initial mapping's slack", i, n);
            return 0;
        }
    }
    for (i = 0; i < DATA_PAGES; i++) {
        xen_pfn_t pfn = mmu_alloc_pfn();

        if (pfn == INVALID_PFN) {
            check_eq("allocate the data frames past the initial mapping (use --memory 32)", i, DATA_PAGES);
            return 0;
        }
        data_mfn[i] = pfn_to_mfn(pfn);
    }
    check_eq("allocate the tables and 8 MiB of data frames", n, ARRAY_SIZE(tables));
    return 1;
}

/* Fills the new tables with plain stores while they are still writable. */
static int fill_tables(void)
{
    unsigned int i;

    boot_l4 = (uint64_t *)start_info->pt_base;
    boot_l3 = boot_table(boot_l4[pt_index(VIRT_BASE, 4)]);
    boot_l2 = boot_l3 ? boot_table(boot_l3[pt_index(VIRT_BASE, 3)]) : NULL;
    boot_l1 = boot_l2 ? boot_table(boot_l2[pt_index(VIRT_BASE, 2)]) : NULL;
    if (boot_l1 == NULL) {
        check_eq("find the bootstrap L3, L2 and L1 of the kernel", 0, 1);
        return 0;
    }
    check_hex("window A's L4 slot is free in the bootstrap L4", boot_l4[pt_index(WIN_A, 4)], 0);

    for (i = 0; i < PAGETABLE_ENTRIES; i++) {
        /* The hypervisor fills its own slots when the L4 is validated. */
        if (i < HYPERVISOR_L4_FIRST_SLOT || i > HYPERVISOR_L4_LAST_SLOT)
            sp.l4[i] = boot_l4[i];
        sp.kernel_l3[i] = boot_l3[i];
        sp.kernel_l2[i] = boot_l2[i];
    }
    sp.l4[pt_index(VIRT_BASE, 4)] = pte_make(virt_to_mfn(sp.kernel_l3), table_flags());
    sp.kernel_l3[pt_index(VIRT_BASE, 3)] = pte_make(virt_to_mfn(sp.kernel_l2), table_flags());

    sp.l4[pt_index(WIN_A, 4)] = pte_make(virt_to_mfn(sp.data_l3), table_flags());
    sp.data_l3[pt_index(WIN_A, 3)] = pte_make(virt_to_mfn(sp.l2_a), table_flags());
    sp.data_l3[pt_index(WIN_B, 3)] = pte_make(virt_to_mfn(sp.l2_b), table_flags());
    for (i = 0; i < WIN_L1S; i++) {
        sp.l2_a[pt_index(WIN_A, 2) + i] = pte_make(virt_to_mfn(sp.l1_a[i]), table_flags());
        sp.l2_b[pt_index(WIN_B, 2) + i] = pte_make(virt_to_mfn(sp.l1_b[i]), table_flags());
    }
    return 1;
}

/* Makes the new tables read-only, pins the L4 and switches to it. */
static int pin_and_switch(void)
{
    xen_pfn_t l4 = virt_to_mfn(sp.l4);
    uint64_t *last = sp.l1_b[WIN_L1S - 1];
    unsigned long at = ~0UL;
    long rc = 0;
    unsigned int i;

    /*
     * Window B's last L1 is the last table the L4's validation reaches: it
     * stays writable for a while, so a pin first validates, then has to
     * undo, everything before it.
     */
    check_eq("pin an L1 that is still mapped writable", mmu_pin(1, virt_to_mfn(last)), -XEN_EINVAL);
    for (i = 0; i < ARRAY_SIZE(tables); i++) {
        if (tables[i] != last && rc == 0)
            rc = mmu_set_readonly(tables[i]);
    }
    check_eq("make every new table read-only but one L1", rc, 0);
    check_eq("pin the L4 while an L1 three levels down is writable", mmu_pin(4, l4), -XEN_EINVAL);
    check_eq("a failed pin leaves nothing typed: an L2 it had validated can be writable",
             mmu_set_writable(sp.l2_a), 0);
    check_eq("and read-only again", mmu_set_readonly(sp.l2_a), 0);
    check_eq("make the last L1 read-only", mmu_set_readonly(last), 0);
    check_eq("pin the new L4 (validates all 14 tables)", mmu_pin(4, l4), 0);
    check_eq("pin it twice", mmu_pin(4, l4), -XEN_EINVAL);
    check_eq("map one of its L1s writable", mmu_set_writable(sp.l1_a[0]), -XEN_EBUSY);
    check_eq("map the L4 itself writable", mmu_set_writable(sp.l4), -XEN_EBUSY);

    mmu_queue_pte(virt_to_maddr(&sp.l4[HYPERVISOR_L4_FIRST_SLOT]), 0);
    rc = mmu_flush(&at);
    check_eq("mmu_update of a hypervisor L4 slot (256)", rc, -XEN_EINVAL);
    check_eq("reported as request 0", (long)at, 0);
    mmu_queue_pte(virt_to_maddr(&sp.l2_a[100]), pte_make(data_mfn[0], PTE_TABLE | _PAGE_PSE));
    check_eq("mmu_update installing a 2 MiB superpage", mmu_flush(NULL), -XEN_EINVAL);

    check_hex("mmu_current_base() is the bootstrap L4", mmu_current_base(), virt_to_mfn(boot_l4));
    rc = mmu_new_baseptr(l4);
    check_eq("NEW_BASEPTR to the new L4", rc, 0);
    if (rc != 0)
        return 0;
    check_hex("mmu_current_base() follows", mmu_current_base(), l4);
    return 1;
}

/* Maps both windows through the queue and checks data through them. */
static void map_windows(void)
{
    unsigned int k, bad = 0;
    long rc = 0;

    for (k = 0; k < DATA_PAGES && rc == 0; k++)
        rc = mmu_queue_pte(slot(sp.l1_a, k), pte_make(data_mfn[k], PTE_DATA_RW));
    for (k = 0; k < DATA_PAGES && rc == 0; k++)
        rc = mmu_queue_pte(slot(sp.l1_b, k), pte_make(data_mfn[k], PTE_DATA_RO));
    check_eq("map 2 x 2048 pages, 512 requests per mmu_update", mmu_flush(NULL), 0);
    for (k = 0; k < DATA_PAGES; k++) {
        bad += !maps(entry_of(sp.l1_a, k), data_mfn[k], PTE_DATA_RW);
        bad += !maps(entry_of(sp.l1_b, k), data_mfn[k], PTE_DATA_RO);
    }
    check_eq("all 4096 entries are in the L1s (entries differing)", bad, 0);

    for (k = 0; k < DATA_PAGES; k++)
        fill(WIN_A, k, k);
    for (k = 0, bad = 0; k < DATA_PAGES; k++)
        bad += !holds(WIN_B, k, k);
    check_eq("8 MiB written through A reads back through B (pages differing)", bad, 0);
}

static void unmap_and_remap(void)
{
    unsigned long a5 = (unsigned long)page_of(WIN_A, 5);
    unsigned int k, bad = 0;
    long rc = 0;

    /* One page, with update_va_mapping. */
    check_eq("update_va_mapping(A page 5, 0)", HYPERVISOR_update_va_mapping(a5, 0, UVMF_INVLPG), 0);
    check_hex("A page 5 is absent", entry_of(sp.l1_a, 5), 0);
    check_eq("B page 5 still holds its data", holds(WIN_B, 5, 5), 1);
    check_eq("remap A page 5 to the frame of page 7",
             HYPERVISOR_update_va_mapping(a5, pte_make(data_mfn[7], PTE_DATA_RW), UVMF_INVLPG), 0);
    check_eq("A page 5 now reads page 7's data", holds(WIN_A, 5, 7), 1);
    fill(WIN_A, 5, 7000);
    check_eq("a write through A page 5 shows in B page 7", holds(WIN_B, 7, 7000), 1);

    /* 512 pages with the queue: unmap, then remap in reverse order. */
    for (k = 512; k < 1024 && rc == 0; k++)
        rc = mmu_queue_pte(slot(sp.l1_a, k), 0);
    check_eq("unmap A pages 512-1023 in one mmu_update", mmu_flush(NULL), 0);
    /* As on Xen, an mmu_update flushes nothing: the old translations may
     * live on until the guest asks. One flush after the batch. */
    check_eq("TLB_FLUSH_LOCAL after the batch", mmu_tlb_flush(), 0);
    for (k = 512; k < 1024; k++)
        bad += entry_of(sp.l1_a, k) != 0;
    check_eq("all 512 are absent (present entries)", bad, 0);
    for (k = 512, bad = 0; k < 1024; k++)
        bad += !holds(WIN_B, k, k);
    check_eq("their frames keep their data, seen through B (pages differing)", bad, 0);
    for (k = 512, rc = 0; k < 1024 && rc == 0; k++)
        rc = mmu_queue_pte(slot(sp.l1_a, k), pte_make(data_mfn[1535 - k], PTE_DATA_RW));
    check_eq("remap them to the same frames in reverse order", mmu_flush(NULL), 0);
    check_eq("TLB_FLUSH_LOCAL after the batch", mmu_tlb_flush(), 0);
    for (k = 512, bad = 0; k < 1024; k++)
        bad += !holds(WIN_A, k, 1535 - k);
    check_eq("each reads its new frame's data (pages differing)", bad, 0);
}

static void fresh_frame(void)
{
    unsigned long a6 = (unsigned long)page_of(WIN_A, 6);
    xen_pfn_t pfn = mmu_alloc_pfn(), mfn;
    const volatile uint64_t *p = (const volatile uint64_t *)a6;
    unsigned int w, nonzero = 0;

    if (pfn == INVALID_PFN) {
        check_eq("allocate one more frame", 0, 1);
        return;
    }
    mfn = pfn_to_mfn(pfn);
    check_eq("CLEAR_PAGE a frame mapped nowhere", mmu_clear_page(mfn), 0);
    check_eq("remap A page 6 to it",
             HYPERVISOR_update_va_mapping(a6, pte_make(mfn, PTE_DATA_RW), UVMF_INVLPG), 0);
    for (w = 0; w < WORDS; w++)
        nonzero += p[w] != 0;
    check_eq("it reads as zeros (non-zero words)", nonzero, 0);
    check_eq("COPY_PAGE page 9's frame into it", mmu_copy_page(mfn, data_mfn[9]), 0);
    check_eq("A page 6 now reads page 9's data", holds(WIN_A, 6, 9), 1);
    check_eq("CLEAR_PAGE a page table", mmu_clear_page(virt_to_mfn(sp.l1_b[0])), -XEN_EINVAL);

    /* The M2P is the hypervisor's, updated on request. */
    mmu_queue_machphys(mfn, 0x12345);
    check_eq("MMU_MACHPHYS_UPDATE", mmu_flush(NULL), 0);
    check_hex("the M2P shows it", mfn_to_pfn(mfn), 0x12345);
    mmu_queue_machphys(mfn, pfn);
    check_eq("and back", mmu_flush(NULL), 0);
    check_hex("mfn_to_pfn(pfn_to_mfn(pfn)) == pfn", mfn_to_pfn(mfn), pfn);
}

/* mmu_lookup walks the tables loaded now, finding each with mfn_to_pfn. */
static void lookups(void)
{
    uint64_t pte = ~0ULL, maddr = 0;

    check_eq("mmu_lookup(A page 3)", mmu_lookup((unsigned long)page_of(WIN_A, 3), &pte, &maddr), 0);
    check_hex("finds its entry", pte, entry_of(sp.l1_a, 3));
    check_hex("at its machine address", maddr, slot(sp.l1_a, 3));
    check_eq("mmu_lookup(B page 3)", mmu_lookup((unsigned long)page_of(WIN_B, 3), &pte, NULL), 0);
    check_hex("finds the same frame read-only", pte, entry_of(sp.l1_b, 3));
    check_eq("mmu_lookup(the kernel's first page)", mmu_lookup(VIRT_BASE, &pte, NULL), 0);
    check_hex("finds the bootstrap L1's entry", pte, boot_l1[0]);
    check_eq("mmu_lookup where no L2 is", mmu_lookup(WIN_A + (2UL << 30), &pte, NULL), -XEN_ENOENT);
    check_eq("mmu_lookup in the hypervisor's slots", mmu_lookup(MACH2PHYS_VIRT_START, &pte, NULL), -XEN_EFAULT);
    check_hex("mfn_to_pfn of the new L4", mfn_to_pfn(virt_to_mfn(sp.l4)), virt_to_pfn(sp.l4));
}

static void refusals(void)
{
    unsigned long at = ~0UL;
    long rc = 0, first = 0;
    unsigned int i, refused_at = 0;

    check_eq("map a frame outside machine memory",
             HYPERVISOR_update_va_mapping((unsigned long)page_of(WIN_A, 12),
                                          pte_make(NO_SUCH_MFN, PTE_DATA_RO), UVMF_INVLPG), -XEN_EPERM);

    /* A short batch failing in its middle: before applied, after not. */
    mmu_queue_pte(slot(sp.l1_a, 8), pte_make(data_mfn[10], PTE_DATA_RO));
    mmu_queue_pte(slot(sp.l1_a, 9), pte_make(virt_to_mfn(sp.l1_b[0]), PTE_DATA_RW));
    mmu_queue_pte(slot(sp.l1_a, 11), 0);
    rc = mmu_flush(&at);
    check_eq("a batch mapping a page table writable", rc, -XEN_EBUSY);
    check_eq("fails at request 1", (long)at, 1);
    check_eq("request 0 was applied", maps(entry_of(sp.l1_a, 8), data_mfn[10], PTE_DATA_RO), 1);
    check_eq("request 1 was not", maps(entry_of(sp.l1_a, 9), data_mfn[9], PTE_DATA_RW), 1);
    check_eq("request 2 was not", maps(entry_of(sp.l1_a, 11), data_mfn[11], PTE_DATA_RW), 1);

    /*
     * 600 requests, number 100 refused: the queue issues the first 512 on
     * its own, that batch fails, and later requests get its error.
     */
    for (i = 0, at = ~0UL; i < 600; i++) {
        xen_pfn_t mfn = i == 100 ? virt_to_mfn(sp.l1_b[0]) : data_mfn[1024 + i];
        uint64_t flags = i == 100 ? PTE_DATA_RW : PTE_DATA_RO;

        rc = mmu_queue_pte(slot(sp.l1_a, 1024 + i), pte_make(mfn, flags));
        if (rc != 0 && first == 0) {
            first = rc;
            refused_at = i;
        }
    }
    check_eq("a full queue failing at request 100: mmu_queue_pte reports it", first, -XEN_EBUSY);
    check_eq("when the queue fills (request 511)", refused_at, 511);
    rc = mmu_flush(&at);
    check_eq("mmu_flush reports it", rc, -XEN_EBUSY);
    check_eq("at request 100", (long)at, 100);
    check_eq("request 99 was applied (read-only now)",
             maps(entry_of(sp.l1_a, 1024 + 99), data_mfn[1024 + 99], PTE_DATA_RO), 1);
    check_eq("request 101 was not (still read-write)",
             maps(entry_of(sp.l1_a, 1024 + 101), data_mfn[1024 + 101], PTE_DATA_RW), 1);
    check_eq("the queue works again after mmu_flush", mmu_queue_pte(slot(sp.l1_a, 1024 + 99),
             pte_make(data_mfn[1024 + 99], PTE_DATA_RW)) == 0 && mmu_flush(NULL) == 0, 1);

    check_eq("TLB_FLUSH_LOCAL", mmu_tlb_flush(), 0);
    check_eq("INVLPG_LOCAL", mmu_invlpg(WIN_A), 0);
}

/* The bootstrap tables, now unused but pinned: unpin and take them back. */
static void release_bootstrap(void)
{
    volatile uint64_t *reused = boot_l4;

    check_eq("the bootstrap L4, pinned, cannot be made writable", mmu_set_writable(boot_l4), -XEN_EBUSY);
    check_eq("unpin the bootstrap L4", mmu_unpin(virt_to_mfn(boot_l4)), 0);
    check_eq("unpin it twice", mmu_unpin(virt_to_mfn(boot_l4)), -XEN_EINVAL);
    check_eq("the bootstrap L4 is plain memory again: writable", mmu_set_writable(boot_l4), 0);
    check_eq("so is its L3", mmu_set_writable(boot_l3), 0);
    check_eq("and its L2", mmu_set_writable(boot_l2), 0);
    check_eq("its L1s are still tables (the new L2 shares them)", mmu_set_writable(boot_l1), -XEN_EBUSY);
    reused[0] = 0x600d;
    check_hex("the old L4's page takes a write", reused[0], 0x600d);
}

int main(start_info_t *si)
{
    printk("addrspace: %lu pages, bootstrap L4 at %p (%lu table frames)\n",
           si->nr_pages, (void *)si->pt_base, si->nr_pt_frames);
    if (allocate() && fill_tables() && pin_and_switch()) {
        map_windows();
        lookups();
        unmap_and_remap();
        fresh_frame();
        refusals();
        release_bootstrap();
    }
    printk("addrspace: %u ok, %u failed\n", check_passed, check_failed);
    return check_failed == 0 ? 0 : 1;
}
