/*
 * <paravane/platform.h> for the PV build.
 */
#include <paravane/guest.h>
#include <paravane/platform.h>
#include <paravane/mmu.h>
#include <paravane/events.h>
#include <paravane/time.h>
#include <paravane/user.h>

const char *platform_name(void)
{
    return "pv";
}

long platform_io_init(void)
{
    struct physdev_set_iopl iopl = { .iopl = 1 };

    return HYPERVISOR_physdev_op(PHYSDEVOP_set_iopl, &iopl);
}

/* The region's L1 (a page of the kit's, made a table), set once it is hooked in. */
static uint64_t *region_l1;

/* The table an entry of a bootstrap table names, by its address in the initial mapping; NULL if absent. */
static uint64_t *next_table(uint64_t e)
{
    return (e & _PAGE_PRESENT) ? (uint64_t *)pfn_to_virt(mfn_to_pfn(pte_mfn(e))) : NULL;
}

long platform_region_init(void)
{
    uint64_t *l4 = (uint64_t *)start_info->pt_base, *l3, *l2, *l1;
    long rc;

    if (region_l1 != NULL)
        return 0;
    /* The bootstrap tables map VIRT_BASE through L4 slot 511 and L3 slot 510; the region is in that L2. */
    l3 = next_table(l4[pt_index(PLATFORM_REGION_VA, 4)]);
    l2 = l3 ? next_table(l3[pt_index(PLATFORM_REGION_VA, 3)]) : NULL;
    if (l2 == NULL)
        return -XEN_ENOENT;
    l1 = mmu_alloc_page();
    if (l1 == NULL)
        return -XEN_ENOMEM;
    rc = mmu_set_readonly(l1);
    if (rc == 0)
        rc = mmu_queue_pte(virt_to_maddr(&l2[pt_index(PLATFORM_REGION_VA, 2)]), pte_make(virt_to_mfn(l1), PTE_TABLE));
    if (rc == 0)
        rc = mmu_flush(NULL);
    if (rc == 0)
        region_l1 = l1;
    return rc;
}

uint64_t platform_pte(const void *va, int writable)
{
    return pte_make(virt_to_mfn(va), (writable ? PTE_RW : PTE_RO) | _PAGE_NX);
}

long platform_region_set(unsigned int i, uint64_t pte)
{
    if (region_l1 == NULL || i >= PLATFORM_REGION_SLOTS)
        return -XEN_EINVAL;
    return HYPERVISOR_update_va_mapping(PLATFORM_REGION_VA + ((unsigned long)i << PAGE_SHIFT), pte, UVMF_INVLPG);
}

long platform_region_set_all(const uint64_t *ptes, unsigned int n)
{
    long rc = 0;

    if (region_l1 == NULL || n > PLATFORM_REGION_SLOTS)
        return -XEN_EINVAL;
    for (unsigned int i = 0; i < n && rc == 0; i++)
        rc = mmu_queue_pte(virt_to_maddr(&region_l1[i]), ptes[i]);
    if (rc == 0)
        rc = mmu_flush(NULL);
    else
        mmu_flush(NULL);
    return rc == 0 ? mmu_tlb_flush() : rc;
}

/* Each address space's tables (pages of the kit's, allocated once), whether it is built, and the base pointer to go back to. */
static struct { uint64_t *t[4]; int built; } as[PLATFORM_ASPACES];
static xen_pfn_t as_home;

/* Makes the tables of address space `id` writable again (after an unpin, or a pin that failed). */
static long aspace_writable(unsigned int id)
{
    long rc = 0;

    for (unsigned int k = 0; k < 4 && rc == 0; k++)
        rc = mmu_set_writable(as[id].t[k]);
    return rc;
}

long platform_aspace_create(unsigned int id, const void *const *pages, unsigned int n)
{
    uint64_t *boot_l4 = (uint64_t *)start_info->pt_base, *l4, *l3, *l2, *l1;
    long rc = 0;

    if (id >= PLATFORM_ASPACES || n > PAGETABLE_ENTRIES || as[id].built)
        return -XEN_EINVAL;
    for (unsigned int k = 0; k < 4; k++) {
        if (as[id].t[k] == NULL)
            as[id].t[k] = mmu_alloc_page();
        if (as[id].t[k] == NULL)
            return -XEN_ENOMEM;
    }
    l4 = as[id].t[0], l3 = as[id].t[1], l2 = as[id].t[2], l1 = as[id].t[3];
    for (unsigned int i = 0; i < PAGETABLE_ENTRIES; i++) {
        /* The hypervisor fills its own slots when the L4 is validated. */
        l4[i] = i >= HYPERVISOR_L4_FIRST_SLOT && i <= HYPERVISOR_L4_LAST_SLOT ? 0 : boot_l4[i];
        l3[i] = l2[i] = 0;
        l1[i] = i < n ? platform_pte(pages[i], 0) : 0;
    }
    l4[pt_index(PLATFORM_WINDOW_VA, 4)] = pte_make(virt_to_mfn(l3), PTE_TABLE);
    l3[pt_index(PLATFORM_WINDOW_VA, 3)] = pte_make(virt_to_mfn(l2), PTE_TABLE);
    l2[pt_index(PLATFORM_WINDOW_VA, 2)] = pte_make(virt_to_mfn(l1), PTE_TABLE);
    /* Read-only from the leaves up, then the pin validates the tree. */
    for (int k = 3; k >= 0 && rc == 0; k--)
        rc = mmu_set_readonly(as[id].t[k]);
    if (rc == 0)
        rc = mmu_pin(4, virt_to_mfn(l4));
    if (rc != 0) {
        aspace_writable(id); /* so that the next create can write them */
        return rc;
    }
    as[id].built = 1;
    return 0;
}

long platform_aspace_enter(unsigned int id)
{
    if (id >= PLATFORM_ASPACES || !as[id].built)
        return -XEN_EINVAL;
    if (as_home == 0)
        as_home = mmu_current_base();
    return mmu_new_baseptr(virt_to_mfn(as[id].t[0]));
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

    if (id >= PLATFORM_ASPACES || !as[id].built)
        return -XEN_EINVAL;
    rc = mmu_unpin(virt_to_mfn(as[id].t[0]));
    if (rc == 0)
        rc = aspace_writable(id);
    if (rc == 0)
        as[id].built = 0;
    return rc;
}

static void (*tick_handler)(void);

static void on_timer(evtchn_port_t port, void *arg)
{
    (void)port;
    (void)arg;
    if (tick_handler != NULL)
        tick_handler();
}

uint64_t platform_now_ns(void)
{
    return now_ns();
}

long platform_tick_start(unsigned int period_us, void (*h)(void))
{
    int port;

    evtchn_init();
    tick_handler = h;
    /* Binding VIRQ_TIMER stops Xen's periodic timer; then it is set to the period asked for. */
    port = timer_bind(on_timer, NULL);
    if (port < 0)
        return port;
    return timer_xen_periodic((uint64_t)period_us * NSEC_PER_USEC);
}

void platform_tick_stop(void)
{
    timer_xen_periodic(0);
    tick_handler = NULL;
}

void platform_wait(void)
{
    local_events_disable();
    block();
    local_events_disable();
}

void platform_irq_disable(void)
{
    local_events_disable();
}

void platform_irq_enable(void)
{
    local_events_enable();
}

/* No CR8 for a PV kernel (Xen emulates no write to it): it holds events by masking them. */
long platform_set_priority(unsigned int level)
{
    (void)level;
    return -1;
}

/* The user program's system calls: PLATFORM_SYS_EXIT ends it; any other returns 0 at once. */
static long on_syscall(struct trap_frame *f)
{
    if (f->rax == PLATFORM_SYS_EXIT)
        user_exit((long)f->rdi);
    return 0;
}

long platform_user_init(void)
{
    return user_init(on_syscall);
}

long platform_user_run(void (*entry)(void), void *stack_top)
{
    return user_run(entry, stack_top);
}
