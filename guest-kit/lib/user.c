/*
 * Guest user mode (see <paravane/user.h>): the user tables over the user
 * image, the kernel stack entries from user mode land on, the syscall
 * callback, user_run() and user_exit().
 * Inputs: syscall frames, whose registers are the user program's (the
 * guest's handler must treat them as untrusted).
 */
#include <paravane/events.h>
#include <paravane/guest.h>
#include <paravane/mmu.h>
#include <paravane/user.h>
#include <xen/callback.h>
#include "internal.h"

/* The user image (lib/guest.lds): page-aligned, pages of its own. */
extern char __user_text_start[], __user_text_end[], __user_data_start[], __user_data_end[];

/* The kernel stack the hypervisor puts a bounce from user mode on (stack_switch). */
static char kernel_stack[16384] __attribute__((aligned(16)));

static user_syscall_t syscall_handler;
/* Inside user_run(): user_exit() has somewhere to go. */
static int running;

/* The pages of the user tree, to be made read-only before the pin. */
#define USER_TABLES_MAX 16
static uint64_t *tables[USER_TABLES_MAX];
static unsigned int n_tables;

static uint64_t *new_table(void)
{
    uint64_t *t;

    if (n_tables == USER_TABLES_MAX || (t = mmu_alloc_page()) == NULL)
        return NULL;
    tables[n_tables++] = t;
    return t;
}

/* The table below `table`'s entry for va at `level`, made if absent; NULL when no page is left. */
static uint64_t *lower(uint64_t *table, unsigned long va, int level)
{
    uint64_t *e = &table[pt_index(va, level)];
    uint64_t *t;

    if (*e & _PAGE_PRESENT)
        return pfn_to_virt(mfn_to_pfn(pte_mfn(*e)));
    if ((t = new_table()) == NULL)
        return NULL;
    *e = pte_make(virt_to_mfn(t), PTE_TABLE);
    return t;
}

/* Maps [start, end) of the image at the same addresses in the tree under l4. */
static int map_range(uint64_t *l4, char *start, char *end, uint64_t flags)
{
    char *p;

    for (p = start; p < end; p += PAGE_SIZE) {
        unsigned long va = (unsigned long)p;
        uint64_t *l3 = lower(l4, va, 4), *l2 = l3 ? lower(l3, va, 3) : NULL, *l1 = l2 ? lower(l2, va, 2) : NULL;

        if (l1 == NULL)
            return -1;
        l1[pt_index(va, 1)] = pte_make(virt_to_mfn(p), flags);
    }
    return 0;
}

long user_init(user_syscall_t handler)
{
    callback_register_t cb = {
        .type = CALLBACKTYPE_syscall,
        .flags = CALLBACKF_mask_events,
        .address = (xen_callback_t)user_syscall_entry,
    };
    uint64_t *l4;
    unsigned int i;
    long rc;

    syscall_handler = handler;
    if ((l4 = new_table()) == NULL || map_range(l4, __user_text_start, __user_text_end, PTE_RO) ||
        map_range(l4, __user_data_start, __user_data_end, PTE_RW | _PAGE_NX)) {
        printk("user_init: no pages left for the user tables\n");
        return -XEN_ENOMEM;
    }
    /* A page is a table only once no writable mapping of it is left. */
    for (i = 0; i < n_tables; i++) {
        if ((rc = mmu_set_readonly(tables[i])) != 0) {
            printk("user_init: making a user table read-only failed: %ld\n", rc);
            return rc;
        }
    }
    if ((rc = mmu_pin(4, virt_to_mfn(l4))) != 0) {
        printk("user_init: pinning the user L4 failed: %ld\n", rc);
        return rc;
    }
    if ((rc = mmu_new_user_baseptr(virt_to_mfn(l4))) != 0) {
        printk("user_init: MMUEXT_NEW_USER_BASEPTR failed: %ld\n", rc);
        return rc;
    }
    if ((rc = HYPERVISOR_stack_switch(FLAT_KERNEL_SS, (unsigned long)(kernel_stack + sizeof(kernel_stack)))) != 0) {
        printk("user_init: stack_switch failed: %ld\n", rc);
        return rc;
    }
    if ((rc = HYPERVISOR_callback_op(CALLBACKOP_register, &cb)) != 0) {
        printk("user_init: registering the syscall callback failed: %ld\n", rc);
        return rc;
    }
    return 0;
}

unsigned int user_syscall(struct trap_frame *f)
{
    f->rax = syscall_handler ? (uint64_t)syscall_handler(f) : (uint64_t)-XEN_ENOSYS;
    return trap_resume_how(f);
}

long user_run(void (*entry)(void), void *stack_top)
{
    unsigned long *sp = (unsigned long *)(((unsigned long)stack_top & ~15UL) - 8);
    unsigned int saved = local_events_save();
    long status;

    /* As if entry were called: a return address, 0, so that returning from it faults in user mode. */
    *sp = 0;
    running = 1;
    status = user_enter((unsigned long)entry, (unsigned long)sp);
    running = 0;
    local_events_restore(saved);
    return status;
}

void user_exit(long status)
{
    if (!running) {
        printk("user_exit: no user program is running\n");
        shutdown(SHUTDOWN_crash);
    }
    user_leave(status);
}
