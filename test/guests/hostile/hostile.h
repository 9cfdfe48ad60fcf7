/*
 * What the hostile guests share. Each guest (one .c file here, or one
 * variant of a family source, built with its own -D flags) tries one
 * escape through the MMU hypercalls (mmu_update, update_va_mapping,
 * mmuext_op, multicall) and ends with exactly one console line:
 *
 *   refused <name>: <rc>     the hypervisor refused, returning rc, and
 *                            nothing the attack aimed at changed (rc is 0
 *                            where the refusal is silent: the call is
 *                            accepted, the effect sought is not)
 *   ESCAPED <name>: <what>   the hypervisor accepted, or something changed
 *   SETUP <name>: <what>     the guest could not set its attack up
 *
 * and powers off (SETUP: crashes). Whether rc is the right errno is decided
 * in one place, test/hv/hostile/hostile.test.ts. <name> is ATTACK, which the
 * Makefile sets from the guest's name.
 *
 * A guest defines `static int attack(void)`: it makes its attempts with
 * hx_attempt and returns 0, or returns hx_setup_failed(...). main, below,
 * runs hx_setup, then the attack, then prints the verdict. A source that
 * serves several guests (a family, see the Makefile) picks its variant
 * from the -D flags the Makefile gives each guest.
 *
 * Inputs: start_info and the boot page tables, laid out as Xen's domain
 * builder lays them out (trusted); the M2P, which every guest may read
 * where XENMEM_machphys_mapping says (not always Xen's address here).
 * Helper names start with hx_ so they never meet the kit's own.
 */
#ifndef HOSTILE_H
#define HOSTILE_H

#include <paravane/guest.h>

#ifndef ATTACK
#error "ATTACK must name the attack: the Makefile passes -DATTACK=\"<name>\""
#endif

/* guest.lds links every kit guest here: pfn = (va - HX_VIRT_BASE) >> 12. */
#define HX_VIRT_BASE        0xffffffff80000000UL
#define HX_PAGE             4096UL
/* A present entry as a guest would write it, writable or read-only. */
#define HX_RW               (_PAGE_PRESENT | _PAGE_RW | _PAGE_USER | _PAGE_ACCESSED)
#define HX_RO               (_PAGE_PRESENT | _PAGE_USER | _PAGE_ACCESSED)
/* M2P entry of a frame that belongs to no guest pfn. */
#define HX_NO_PFN           (~0UL)
/* Addresses no hypercall may use: past the lower half, and two in the hypervisor hole. */
#define HX_NON_CANONICAL    0x0000800000000000UL
#define HX_HOLE_M2P         MACH2PHYS_VIRT_START     /* Xen's M2P address: readable, never a handle */
#define HX_HOLE_RING0_STACK 0xffff808000013000UL     /* paravane: vCPU 0's ring-0 stack page */
/* A frame number far past machine memory (16 TiB). */
#define HX_FAR_MFN          (1UL << 32)
/* The domain that test/hv/hostile/hostile.test.ts creates first and never runs. */
#define HX_VICTIM_DOMID     1U

/* --- Hypercalls, with every argument as the raw register value. */

static inline long hx_mmu_update(unsigned long reqs, unsigned long count, unsigned long pdone,
                                 unsigned long foreigndom)
{
    return _hypercall4(__HYPERVISOR_mmu_update, reqs, count, pdone, foreigndom);
}

static inline long hx_update_va_mapping(unsigned long va, uint64_t val, unsigned long flags)
{
    return _hypercall3(__HYPERVISOR_update_va_mapping, va, val, flags);
}

static inline long hx_mmuext_op(unsigned long ops, unsigned long count, unsigned long pdone,
                                unsigned long foreigndom)
{
    return _hypercall4(__HYPERVISOR_mmuext_op, ops, count, pdone, foreigndom);
}

static inline long hx_multicall(unsigned long list, unsigned long nr)
{
    return _hypercall2(__HYPERVISOR_multicall, list, nr);
}

/* One mmu_update request for this domain (DOMID_SELF), no pdone. */
static inline long hx_mmu1(uint64_t ptr, uint64_t val)
{
    mmu_update_t req = { .ptr = ptr, .val = val };

    return hx_mmu_update((unsigned long)&req, 1, 0, DOMID_SELF);
}

/* One mmuext_op for this domain (DOMID_SELF), no pdone. */
static inline long hx_mmuext1(unsigned int cmd, unsigned long arg1, unsigned long arg2)
{
    struct mmuext_op op = { .cmd = cmd };

    op.arg1.mfn = arg1;
    op.arg2.src_mfn = arg2;
    return hx_mmuext_op((unsigned long)&op, 1, 0, DOMID_SELF);
}

/* --- Frames: the P2M (start_info->mfn_list), the M2P and the initial mapping. */

/* Where the M2P is readable: Xen's MACH2PHYS_VIRT_START, or what the hypervisor says instead. */
static unsigned long hx_m2p_va __attribute__((unused));

static inline const volatile unsigned long *hx_m2p(void)
{
    if (hx_m2p_va == 0) {
        struct xen_machphys_mapping m = { 0 };

        hx_m2p_va = HYPERVISOR_memory_op(XENMEM_machphys_mapping, &m) == 0 ? m.v_start
                                                                          : MACH2PHYS_VIRT_START;
    }
    return (const volatile unsigned long *)hx_m2p_va;
}

static inline unsigned long hx_pfn_to_mfn(unsigned long pfn)
{
    return ((const unsigned long *)start_info->mfn_list)[pfn];
}

/* Frame of an address in the initial mapping. */
static inline unsigned long hx_virt_to_mfn(unsigned long va)
{
    return hx_pfn_to_mfn((va - HX_VIRT_BASE) >> 12);
}

/* Machine address of an address in the initial mapping. */
static inline uint64_t hx_virt_to_maddr(unsigned long va)
{
    return (hx_virt_to_mfn(va) << 12) | (va & (HX_PAGE - 1));
}

/* Address, in the initial mapping, of one of the domain's frames there. */
static inline void *hx_mfn_to_virt(unsigned long mfn)
{
    return (void *)(HX_VIRT_BASE + (hx_m2p()[mfn] << 12));
}

static inline unsigned long hx_shared_info_mfn(void)
{
    return start_info->shared_info >> 12;
}

static inline int hx_own(unsigned long mfn)
{
    unsigned long pfn = hx_m2p()[mfn];

    return (pfn < start_info->nr_pages && hx_pfn_to_mfn(pfn) == mfn) || mfn == hx_shared_info_mfn();
}

/* The domain's highest frame: the M2P is mapped (readable) at least up to it. */
static inline unsigned long hx_own_max(void)
{
    unsigned long max = hx_shared_info_mfn(), pfn;

    for (pfn = 0; pfn < start_info->nr_pages; pfn++)
        if (hx_pfn_to_mfn(pfn) > max)
            max = hx_pfn_to_mfn(pfn);
    return max;
}

/* Up to max frames below our highest that the M2P gives to another domain's pfn. */
static inline unsigned int hx_foreign_frames(unsigned long *out, unsigned int max)
{
    unsigned long mfn, top = hx_own_max();
    unsigned int n = 0;

    for (mfn = 0; mfn <= top && n < max; mfn++)
        if (hx_m2p()[mfn] != HX_NO_PFN && !hx_own(mfn))
            out[n++] = mfn;
    return n;
}

/*
 * Up to max frames below our highest with no M2P entry and not ours: the
 * hypervisor's (M2P, its tables, GDTs, TSSs, ring-0 stacks), free frames,
 * and other domains' shared_info pages.
 */
static inline unsigned int hx_unowned_frames(unsigned long *out, unsigned int max)
{
    unsigned long mfn, top = hx_own_max();
    unsigned int n = 0;

    for (mfn = 0; mfn <= top && n < max; mfn++)
        if (hx_m2p()[mfn] == HX_NO_PFN && !hx_own(mfn))
            out[n++] = mfn;
    return n;
}

/* --- Page tables (the boot tables: in the initial mapping, read-only). */

static inline unsigned int hx_index(unsigned long va, int level)
{
    return (va >> (12 + 9 * (level - 1))) & 511;
}

static inline unsigned long hx_entry_mfn(uint64_t e)
{
    return (e & _PAGE_MFN_MASK) >> 12;
}

static inline unsigned long hx_l4_mfn(void)
{
    return hx_virt_to_mfn(start_info->pt_base);
}

static inline const volatile uint64_t *hx_table(unsigned long mfn)
{
    return (const volatile uint64_t *)hx_mfn_to_virt(mfn);
}

/* The level-`level` table on the walk to va; 0 if the walk ends above it. */
static inline unsigned long hx_table_mfn(unsigned long va, int level)
{
    unsigned long mfn = hx_l4_mfn();
    int l;

    for (l = 4; l > level; l--) {
        uint64_t e = hx_table(mfn)[hx_index(va, l)];

        if (!(e & _PAGE_PRESENT))
            return 0;
        mfn = hx_entry_mfn(e);
    }
    return mfn;
}

/* The entry for va at `level` (0 if the walk ends above it). */
static inline uint64_t hx_pte(unsigned long va, int level)
{
    unsigned long t = hx_table_mfn(va, level);

    return t ? hx_table(t)[hx_index(va, level)] : 0;
}

/* Machine address of that entry, as mmu_update's ptr names it. */
static inline uint64_t hx_pte_maddr(unsigned long va, int level)
{
    return (hx_table_mfn(va, level) << 12) | (hx_index(va, level) * 8);
}

/* Machine address of entry `index` of table `mfn`. */
static inline uint64_t hx_slot_maddr(unsigned long mfn, unsigned int index)
{
    return (mfn << 12) | (index * 8);
}

static inline int hx_mapped(unsigned long va)
{
    return (hx_pte(va, 1) & _PAGE_PRESENT) != 0;
}

/*
 * End of the initial mapping: Xen maps at least 512 KiB past the boot
 * stack (the page after the page tables) and rounds up to 4 MiB.
 */
static inline unsigned long hx_mapping_end(void)
{
    unsigned long end = start_info->pt_base + (start_info->nr_pt_frames + 1) * HX_PAGE + 512 * 1024;

    return (end + (4UL << 20) - 1) & ~((4UL << 20) - 1);
}

/* Scratch page n (0: the last page of the initial mapping): writable, unused. */
static inline unsigned long hx_scratch(unsigned int n)
{
    return hx_mapping_end() - (n + 1) * HX_PAGE;
}

/* --- The verdict: one line at the end. */

static long hx_rc __attribute__((unused)) = 1;     /* 1: nothing tried yet */
static unsigned long hx_tries __attribute__((unused));
static char hx_problem[256] __attribute__((unused));

/*
 * Records one attempt. A refusal is a negative rc with everything intact;
 * with any_rc, any rc counts as long as everything is intact (for attacks
 * whose refusal is silent, or whose rc Xen does not define). Every attempt
 * of a guest must return the same rc.
 */
static inline void hx_record(long rc, int intact, const char *what, int any_rc)
{
    hx_tries++;
    if (hx_problem[0])
        return;
    if (!intact || (!any_rc && rc >= 0)) {
        snprintf(hx_problem, sizeof(hx_problem), "ESCAPED " ATTACK ": %s returned %ld%s",
                 what, rc, intact ? "" : ", and what it aimed at changed");
        return;
    }
    if (hx_rc == 1)
        hx_rc = rc;
    else if (rc != hx_rc)
        snprintf(hx_problem, sizeof(hx_problem), "refused " ATTACK ": %ld, but %s: %ld",
                 hx_rc, what, rc);
}

static inline void hx_attempt(long rc, int intact, const char *what)
{
    hx_record(rc, intact, what, 0);
}

static inline void hx_attempt_any(long rc, int intact, const char *what)
{
    hx_record(rc, intact, what, 1);
}

/* Prints the line; main returns this (0: poweroff). HX_VERBOSE adds a line before it. */
static inline int hx_finish(void)
{
#ifdef HX_VERBOSE
    printk("tries " ATTACK ": %lu\n", hx_tries);
#endif
    if (hx_problem[0])
        printk("%s\n", hx_problem);
    else if (hx_rc == 1)
        printk("SETUP " ATTACK ": nothing was tried\n");
    else
        printk("refused " ATTACK ": %ld\n", hx_rc);
    return hx_rc == 1 && !hx_problem[0];
}

/* The attack cannot be set up: main returns this (1: crash). */
static inline int hx_setup_failed(const char *what, long detail)
{
    printk("SETUP " ATTACK ": %s (%ld)\n", what, detail);
    return 1;
}

/*
 * Checks what every attack relies on: the scratch pages are mapped
 * writable and the initial mapping ends where hx_mapping_end says.
 * Returns 0, or what main should return.
 */
static inline int hx_setup(void)
{
    unsigned long last = hx_scratch(0);

    if (!(hx_pte(last, 1) & _PAGE_RW) || !(hx_pte(hx_scratch(31), 1) & _PAGE_RW))
        return hx_setup_failed("the last pages of the initial mapping are not writable", (long)last);
    if (hx_mapped(hx_mapping_end()))
        return hx_setup_failed("the initial mapping goes on past where Xen's layout ends it", (long)hx_mapping_end());
    if (hx_scratch(31) < (unsigned long)start_info->pt_base + (start_info->nr_pt_frames + 1) * HX_PAGE)
        return hx_setup_failed("the scratch pages overlap the boot page tables or stack", (long)hx_scratch(31));
    return 0;
}

/* --- Shared pieces of several attacks. */

/* hx_foreign_frames, after a SETUP line if there are none (then 0: main returns 1). */
static inline unsigned int hx_need_foreign(unsigned long *out, unsigned int max)
{
    unsigned int n = hx_foreign_frames(out, max);

    if (n == 0)
        hx_setup_failed("the M2P shows no other domain's frame", 0);
    return n;
}

/* A digest of a table's 512 entries. */
static inline uint64_t hx_digest(unsigned long mfn)
{
    const volatile uint64_t *t = hx_table(mfn);
    uint64_t h = 0;
    unsigned int i;

    for (i = 0; i < 512; i++)
        h = (h ^ t[i]) * 0x100000001b3UL;
    return h;
}

/*
 * Whether va's 2 MiB holds the kernel, the boot tables or the stack (where
 * `stack` is), or with p2m also the P2M (start_info->mfn_list): an attack
 * that changes that 2 MiB's L2 entry must not.
 */
static inline int hx_2m_in_use(unsigned long va, const void *stack, int p2m)
{
    unsigned int i = hx_index(va, 2);

    return i == hx_index(HX_VIRT_BASE, 2) || i == hx_index(start_info->pt_base, 2) ||
           i == hx_index((unsigned long)stack, 2) || (p2m && i == hx_index(start_info->mfn_list, 2));
}

/* Whether frame x, mapped at va, can still be mapped writable there: it is no page table. */
static inline int hx_still_writable(unsigned long va, unsigned long x)
{
    return hx_update_va_mapping(va, (x << 12) | HX_RW, UVMF_INVLPG) == 0;
}

/*
 * The stale-translation attacks (stale-tlb-*): p, the scratch address,
 * first reaches frame X; each attack moves it to another frame in its own
 * way and then calls hx_stale_store. The stores are non-present entries,
 * harmless in an L1 if they do land.
 */
#define HX_STALE_FIRST  0x4242424242424240UL
#define HX_STALE_SECOND 0x5454545454545450UL

/*
 * Every stale-tlb attack's start: *p is the scratch address (scratch page
 * 0), whose 2 MiB holds neither the kernel, its tables, its stack nor the
 * P2M, mapping frame *x; *y is scratch page 1's frame. 0, or what main
 * returns.
 */
static inline int hx_stale_begin(volatile uint64_t **p, unsigned long *x, unsigned long *y)
{
    unsigned long va = hx_scratch(0);
    long on_stack;

    if (hx_2m_in_use(va, &on_stack, 1))
        return hx_setup_failed("the scratch pages share their 2 MiB with the kernel", (long)va);
    *p = (volatile uint64_t *)va;
    *x = hx_virt_to_mfn(va);
    *y = hx_virt_to_mfn(hx_scratch(1));
    return 0;
}

/* Stores HX_STALE_FIRST through p, so that the translation is cached; 0, or what main returns. */
static inline int hx_stale_first(volatile uint64_t *p)
{
    p[0] = HX_STALE_FIRST;
    if (p[0] != HX_STALE_FIRST)
        return hx_setup_failed("the scratch page does not keep what is stored", 0);
    return 0;
}

/*
 * A second tree for the scratch address va, in scratch pages 3 (L1) to 6
 * (L4): copies of the four tables that map va (their frames in old[1..4]),
 * each pointing at the next copy down, the L1 mapping va to frame y and
 * the copies read-only; the new L4 (frame newt[4]) is pinned. 0, or what
 * main returns.
 */
static inline int hx_stale_copy_tree(unsigned long va, unsigned long y, unsigned long old[5], unsigned long newt[5])
{
    volatile uint64_t *copy[5];
    unsigned int i;
    int level;
    long rc;

    for (level = 1; level <= 4; level++) {
        old[level] = hx_table_mfn(va, level);
        copy[level] = (volatile uint64_t *)hx_scratch(2 + level);
        newt[level] = hx_virt_to_mfn(hx_scratch(2 + level));
        for (i = 0; i < 512; i++)
            copy[level][i] = hx_table(old[level])[i];
    }
    for (level = 2; level <= 4; level++)
        copy[level][hx_index(va, level)] = (newt[level - 1] << 12) | HX_RW;
    copy[1][hx_index(va, 1)] = (y << 12) | HX_RW;
    for (level = 1; level <= 4; level++)
        copy[1][hx_index(hx_scratch(2 + level), 1)] = (newt[level] << 12) | HX_RO;
    for (level = 1; level <= 4; level++) {
        rc = hx_update_va_mapping(hx_scratch(2 + level), (newt[level] << 12) | HX_RO, UVMF_INVLPG);
        if (rc != 0)
            return hx_setup_failed("could not map a new table read-only", rc);
    }
    rc = hx_mmuext1(MMUEXT_PIN_L4_TABLE, newt[4], 0);
    if (rc != 0)
        return hx_setup_failed("could not pin the new L4", rc);
    return 0;
}

/*
 * Pins the old frame x as an L1, stores HX_STALE_SECOND through p, and
 * records whether that store reached the new frame and not x (looked at
 * through a read-only mapping at scratch page 2). 0, or what main returns.
 */
static inline int hx_stale_store(volatile uint64_t *p, unsigned long x, const char *what)
{
    volatile uint64_t *xview = (volatile uint64_t *)hx_scratch(2);
    long rc = hx_mmuext1(MMUEXT_PIN_L1_TABLE, x, 0);

    if (rc != 0)
        return hx_setup_failed("could not pin the old frame as an L1", rc);
    p[0] = HX_STALE_SECOND;
    rc = hx_update_va_mapping(hx_scratch(2), (x << 12) | HX_RO, UVMF_INVLPG);
    if (rc != 0)
        return hx_setup_failed("could not map the new L1 read-only", rc);
    hx_attempt_any(0, xview[0] == HX_STALE_FIRST && p[0] == HX_STALE_SECOND, what);
    return 0;
}

/* --- main: every guest's. */

static int attack(void);

int main(start_info_t *si)
{
    int rc;

    (void)si;
    if ((rc = hx_setup()))
        return rc;
    if ((rc = attack()))
        return rc;
    return hx_finish();
}

#endif /* HOSTILE_H */
