/*
 * The MMU helpers of <paravane/mmu.h>: the mmu_update queue, one-operation
 * mmuext_op calls, a walker over the current tables and the page
 * allocator. Inputs: the guest's own requests and start_info (trusted).
 */
#include <paravane/guest.h>
#include <paravane/mmu.h>

extern char _end[];

/* --- The queue. */

static mmu_update_t queue[MMU_QUEUE_SIZE];
static unsigned int queued;
/* Requests issued in earlier batches since the last mmu_flush(). */
static unsigned long issued;
/* The first error since the last mmu_flush() (0: none), and the request that failed. */
static long queue_error;
static unsigned long queue_failed;

static void fail_at(long rc, unsigned long index)
{
    if (queue_error == 0) {
        queue_error = rc;
        queue_failed = index;
    }
}

/* Issues the queued requests as one mmu_update. */
static void issue(void)
{
    unsigned int done = 0;
    long rc;

    if (queued == 0)
        return;
    rc = HYPERVISOR_mmu_update(queue, queued, &done, DOMID_SELF);
    if (rc < 0)
        fail_at(rc, issued + done);
    issued += queued;
    queued = 0;
}

static long enqueue(uint64_t ptr, uint64_t val)
{
    if (queue_error != 0)
        return queue_error;
    queue[queued].ptr = ptr;
    queue[queued].val = val;
    if (++queued == MMU_QUEUE_SIZE)
        issue();
    return queue_error;
}

long mmu_queue_pte(uint64_t pte_maddr, uint64_t val)
{
    if (queue_error == 0 && (pte_maddr & 7) != 0) {
        /* The low bits carry the request type: refuse an unaligned entry,
         * after issuing what was queued before it. */
        issue();
        fail_at(-XEN_EINVAL, issued);
        return queue_error;
    }
    return enqueue(pte_maddr | MMU_NORMAL_PT_UPDATE, val);
}

long mmu_queue_machphys(xen_pfn_t mfn, xen_pfn_t pfn)
{
    return enqueue(((uint64_t)mfn << PAGE_SHIFT) | MMU_MACHPHYS_UPDATE, pfn);
}

long mmu_flush(unsigned long *failed)
{
    long rc;

    if (queue_error == 0)
        issue();
    rc = queue_error;
    if (rc != 0 && failed != NULL)
        *failed = queue_failed;
    queued = 0;
    issued = 0;
    queue_error = 0;
    queue_failed = 0;
    return rc;
}

/* --- The allocator's view of memory and the M2P (see mmu.h), found once. */

const xen_pfn_t *machine_to_phys_mapping = (const xen_pfn_t *)MACH2PHYS_VIRT_START;
/* The largest MFN the M2P has an entry for. */
static xen_pfn_t m2p_max_mfn = ~0UL;

static int ready;
static xen_pfn_t mapped_next, mapped_end, unmapped_next, unmapped_end;
/* The L4 loaded now (the bootstrap L4 until mmu_new_baseptr). */
static xen_pfn_t base_mfn;
/* Pfns of the bootstrap tables: [boot_pt_first, boot_pt_end). */
static xen_pfn_t boot_pt_first, boot_pt_end;
/* Tables mmu_lookup may read: pfns below this (all in the initial mapping). */
static xen_pfn_t walk_limit;

static xen_pfn_t max_pfn(xen_pfn_t a, xen_pfn_t b)
{
    return a > b ? a : b;
}

/* The pfn of a bootstrap table, found in the P2M (INVALID_PFN: not one). */
static xen_pfn_t bootstrap_pfn(xen_pfn_t mfn)
{
    xen_pfn_t pfn;

    for (pfn = boot_pt_first; pfn < boot_pt_end; pfn++) {
        if (pfn_to_mfn(pfn) == mfn)
            return pfn;
    }
    return INVALID_PFN;
}

/*
 * The L1 entry for va in the tables rooted at l4 (see mmu_lookup). Each
 * table is read at its place in the initial mapping: to_pfn finds its pfn,
 * which must be below `limit` and name the table back in the P2M.
 */
static long walk(xen_pfn_t l4, unsigned long va, xen_pfn_t (*to_pfn)(xen_pfn_t mfn),
                 xen_pfn_t limit, uint64_t *pte, uint64_t *pte_maddr)
{
    xen_pfn_t mfn = l4;
    unsigned int slot = pt_index(va, 4);
    int level;

    /* The hypervisor's slots map its frames: nothing of the guest's to read. */
    if (slot >= HYPERVISOR_L4_FIRST_SLOT && slot <= HYPERVISOR_L4_LAST_SLOT)
        return -XEN_EFAULT;
    for (level = 4;; level--) {
        xen_pfn_t pfn = to_pfn(mfn);
        unsigned int i = pt_index(va, level);
        uint64_t e;

        if (pfn >= limit || pfn_to_mfn(pfn) != mfn)
            return -XEN_EFAULT;
        e = ((const volatile uint64_t *)pfn_to_virt(pfn))[i];
        if (level == 1) {
            if (pte != NULL)
                *pte = e;
            if (pte_maddr != NULL)
                *pte_maddr = ((uint64_t)mfn << PAGE_SHIFT) + i * sizeof(uint64_t);
            return 0;
        }
        if (!(e & _PAGE_PRESENT))
            return -XEN_ENOENT;
        mfn = pte_mfn(e);
    }
}

/*
 * The pools, after Xen's builder layout: the first free page follows the
 * bootstrap tables and the boot stack; the initial mapping ends where the
 * bootstrap tables stop mapping pfn n read-write at VIRT_BASE + n * 4096;
 * an initrd passed by pfn and an INIT_P2M list lie after it. The walk here
 * finds tables by searching the bootstrap ones, so it needs no M2P.
 */
static void setup(void)
{
    struct xen_machphys_mapping m2p;
    xen_pfn_t first, pfn;

    if (ready)
        return;
    ready = 1;
    if (HYPERVISOR_memory_op(XENMEM_machphys_mapping, &m2p) == 0) {
        machine_to_phys_mapping = (const xen_pfn_t *)m2p.v_start;
        m2p_max_mfn = m2p.max_mfn;
    }
    base_mfn = virt_to_mfn((const void *)start_info->pt_base);
    boot_pt_first = virt_to_pfn((const void *)start_info->pt_base);
    boot_pt_end = boot_pt_first + start_info->nr_pt_frames;
    first = max_pfn(boot_pt_end + 1, virt_to_pfn(_end));   /* + 1: the boot stack */
    for (pfn = first; pfn < start_info->nr_pages; pfn++) {
        uint64_t pte;

        if (walk(base_mfn, (unsigned long)pfn_to_virt(pfn), bootstrap_pfn, boot_pt_end, &pte, NULL) != 0 ||
            (pte & (_PAGE_PRESENT | _PAGE_RW)) != (_PAGE_PRESENT | _PAGE_RW) ||
            pte_mfn(pte) != pfn_to_mfn(pfn))
            break;
    }
    mapped_next = first;
    mapped_end = pfn;
    walk_limit = mapped_end;
    unmapped_next = mapped_end;
    if ((start_info->flags & SIF_MOD_START_PFN) && start_info->mod_len != 0)
        unmapped_next = max_pfn(unmapped_next, start_info->mod_start +
                                (start_info->mod_len + PAGE_SIZE - 1) / PAGE_SIZE);
    if (start_info->nr_p2m_frames != 0)
        unmapped_next = max_pfn(unmapped_next, start_info->first_p2m_pfn + start_info->nr_p2m_frames);
    unmapped_end = start_info->nr_pages;
}

xen_pfn_t mfn_to_pfn(xen_pfn_t mfn)
{
    setup();
    return mfn <= m2p_max_mfn ? machine_to_phys_mapping[mfn] : INVALID_PFN;
}

void *mmu_alloc_page(void)
{
    void *page;

    setup();
    if (mapped_next >= mapped_end)
        return NULL;
    page = pfn_to_virt(mapped_next++);
    memset(page, 0, PAGE_SIZE);
    return page;
}

xen_pfn_t mmu_alloc_pfn(void)
{
    setup();
    while (unmapped_next < unmapped_end) {
        xen_pfn_t pfn = unmapped_next++;

        if (pfn_to_mfn(pfn) != INVALID_MFN)   /* a hole in the P2M: skip it */
            return pfn;
    }
    return INVALID_PFN;
}

void mmu_memory(struct mmu_memory *m)
{
    setup();
    m->mapped_next = mapped_next;
    m->mapped_end = mapped_end;
    m->unmapped_next = unmapped_next;
    m->unmapped_end = unmapped_end;
}

long mmu_lookup(unsigned long va, uint64_t *pte, uint64_t *pte_maddr)
{
    setup();
    return walk(base_mfn, va, mfn_to_pfn, walk_limit, pte, pte_maddr);
}

/* --- mmuext_op. */

static long mmuext(unsigned int cmd, unsigned long arg1, unsigned long arg2)
{
    struct mmuext_op op;

    memset(&op, 0, sizeof(op));
    op.cmd = cmd;
    op.arg1.mfn = arg1;
    op.arg2.src_mfn = arg2;
    return HYPERVISOR_mmuext_op(&op, 1, NULL, DOMID_SELF);
}

long mmu_pin(int level, xen_pfn_t mfn)
{
    if (level < 1 || level > 4)
        return -XEN_EINVAL;
    return mmuext(MMUEXT_PIN_L1_TABLE + (level - 1), mfn, 0);
}

long mmu_unpin(xen_pfn_t mfn)
{
    return mmuext(MMUEXT_UNPIN_TABLE, mfn, 0);
}

long mmu_new_baseptr(xen_pfn_t mfn)
{
    long rc;

    setup();
    rc = mmuext(MMUEXT_NEW_BASEPTR, mfn, 0);
    if (rc == 0)
        base_mfn = mfn;
    return rc;
}

long mmu_new_user_baseptr(xen_pfn_t mfn)
{
    return mmuext(MMUEXT_NEW_USER_BASEPTR, mfn, 0);
}

xen_pfn_t mmu_current_base(void)
{
    setup();
    return base_mfn;
}

long mmu_tlb_flush(void)
{
    return mmuext(MMUEXT_TLB_FLUSH_LOCAL, 0, 0);
}

long mmu_invlpg(unsigned long va)
{
    return mmuext(MMUEXT_INVLPG_LOCAL, va, 0);
}

long mmu_clear_page(xen_pfn_t mfn)
{
    return mmuext(MMUEXT_CLEAR_PAGE, mfn, 0);
}

long mmu_copy_page(xen_pfn_t dst, xen_pfn_t src)
{
    return mmuext(MMUEXT_COPY_PAGE, dst, src);
}

/* --- The initial mapping. */

static long remap(const void *va, uint64_t flags)
{
    unsigned long page = (unsigned long)va & ~(unsigned long)(PAGE_SIZE - 1);

    return HYPERVISOR_update_va_mapping(page, pte_make(virt_to_mfn(va), flags), UVMF_INVLPG);
}

long mmu_set_readonly(const void *va)
{
    return remap(va, PTE_RO);
}

long mmu_set_writable(const void *va)
{
    return remap(va, PTE_RW);
}
