/*
 * <paravane/platform.h> for the PV build.
 */
#include <paravane/guest.h>
#include <paravane/platform.h>
#include <paravane/mmu.h>

const char *platform_name(void)
{
    return "pv";
}

long platform_io_init(void)
{
    struct physdev_set_iopl iopl = { .iopl = 1 };

    return HYPERVISOR_physdev_op(PHYSDEVOP_set_iopl, &iopl);
}

/* The region's L1 (a page of the kit's, made a table). */
static uint64_t *region_l1;

/* The table at level `level` - 1 that entry `e` of a bootstrap table names, by its address in the initial mapping. */
static uint64_t *next_table(uint64_t e)
{
    return (uint64_t *)pfn_to_virt(mfn_to_pfn(pte_mfn(e)));
}

long platform_region_init(void)
{
    uint64_t *l4 = (uint64_t *)start_info->pt_base, *l3, *l2;
    long rc;

    if (region_l1 != NULL)
        return 0;
    /* The bootstrap tables map VIRT_BASE through L4 slot 511 and L3 slot 510; the region is in that L2. */
    l3 = next_table(l4[pt_index(PLATFORM_REGION_VA, 4)]);
    l2 = next_table(l3[pt_index(PLATFORM_REGION_VA, 3)]);
    region_l1 = mmu_alloc_page();
    if (region_l1 == NULL)
        return -XEN_ENOMEM;
    rc = mmu_set_readonly(region_l1);
    if (rc == 0)
        rc = mmu_queue_pte(virt_to_maddr(&l2[pt_index(PLATFORM_REGION_VA, 2)]), pte_make(virt_to_mfn(region_l1), PTE_TABLE));
    if (rc == 0)
        rc = mmu_flush(NULL);
    return rc;
}

uint64_t platform_pte(const void *va, int writable)
{
    return pte_make(virt_to_mfn(va), (writable ? PTE_RW : PTE_RO) | _PAGE_NX);
}

long platform_region_set(unsigned int i, uint64_t pte)
{
    return HYPERVISOR_update_va_mapping(PLATFORM_REGION_VA + ((unsigned long)i << PAGE_SHIFT), pte, UVMF_INVLPG);
}

long platform_region_set_all(const uint64_t *ptes, unsigned int n)
{
    long rc = 0;

    for (unsigned int i = 0; i < n && rc == 0; i++)
        rc = mmu_queue_pte(virt_to_maddr(&region_l1[i]), ptes[i]);
    if (rc == 0)
        rc = mmu_flush(NULL);
    else
        mmu_flush(NULL);
    return rc == 0 ? mmu_tlb_flush() : rc;
}

/* Each address space's tables (pages of the kit's, allocated once), and the base pointer to go back to. */
static struct { uint64_t *l4, *l3, *l2, *l1; } as[PLATFORM_ASPACES];
static xen_pfn_t as_home;

long platform_aspace_create(unsigned int id, const void *const *pages, unsigned int n)
{
    uint64_t *boot_l4 = (uint64_t *)start_info->pt_base;
    long rc;

    if (id >= PLATFORM_ASPACES || n > PAGETABLE_ENTRIES)
        return -XEN_EINVAL;
    if (as[id].l4 == NULL) {
        as[id].l4 = mmu_alloc_page();
        as[id].l3 = mmu_alloc_page();
        as[id].l2 = mmu_alloc_page();
        as[id].l1 = mmu_alloc_page();
        if (as[id].l4 == NULL || as[id].l3 == NULL || as[id].l2 == NULL || as[id].l1 == NULL)
            return -XEN_ENOMEM;
    }
    for (unsigned int i = 0; i < PAGETABLE_ENTRIES; i++) {
        /* The hypervisor fills its own slots when the L4 is validated. */
        as[id].l4[i] = i >= HYPERVISOR_L4_FIRST_SLOT && i <= HYPERVISOR_L4_LAST_SLOT ? 0 : boot_l4[i];
        as[id].l3[i] = as[id].l2[i] = 0;
        as[id].l1[i] = i < n ? pte_make(virt_to_mfn(pages[i]), PTE_RO | _PAGE_NX) : 0;
    }
    as[id].l4[pt_index(PLATFORM_WINDOW_VA, 4)] = pte_make(virt_to_mfn(as[id].l3), PTE_TABLE);
    as[id].l3[pt_index(PLATFORM_WINDOW_VA, 3)] = pte_make(virt_to_mfn(as[id].l2), PTE_TABLE);
    as[id].l2[pt_index(PLATFORM_WINDOW_VA, 2)] = pte_make(virt_to_mfn(as[id].l1), PTE_TABLE);
    rc = mmu_set_readonly(as[id].l1);
    if (rc == 0)
        rc = mmu_set_readonly(as[id].l2);
    if (rc == 0)
        rc = mmu_set_readonly(as[id].l3);
    if (rc == 0)
        rc = mmu_set_readonly(as[id].l4);
    return rc == 0 ? mmu_pin(4, virt_to_mfn(as[id].l4)) : rc;
}

long platform_aspace_enter(unsigned int id)
{
    if (id >= PLATFORM_ASPACES || as[id].l4 == NULL)
        return -XEN_EINVAL;
    if (as_home == 0)
        as_home = mmu_current_base();
    return mmu_new_baseptr(virt_to_mfn(as[id].l4));
}

long platform_aspace_leave(void)
{
    long rc = as_home ? mmu_new_baseptr(as_home) : 0;

    as_home = 0;
    return rc;
}

long platform_aspace_destroy(unsigned int id)
{
    long rc;

    if (id >= PLATFORM_ASPACES || as[id].l4 == NULL)
        return -XEN_EINVAL;
    rc = mmu_unpin(virt_to_mfn(as[id].l4));
    if (rc == 0)
        rc = mmu_set_writable(as[id].l4);
    if (rc == 0)
        rc = mmu_set_writable(as[id].l3);
    if (rc == 0)
        rc = mmu_set_writable(as[id].l2);
    if (rc == 0)
        rc = mmu_set_writable(as[id].l1);
    return rc;
}
