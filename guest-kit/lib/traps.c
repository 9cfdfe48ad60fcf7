/*
 * Exceptions: the trap table, the handlers and trap_dispatch(), which
 * lib/traps-entry.S calls with each frame. See <paravane/traps.h>.
 * Inputs: frames built by the hypervisor and the entry stubs (trusted).
 */
#include <paravane/guest.h>
#include <paravane/mmu.h>
#include <paravane/traps.h>
#include "internal.h"

/* The entry stubs, by vector (lib/traps-entry.S). */
extern const unsigned long trap_entries[TRAP_VECTORS];

/* traps-entry.S reaches vcpu_info[0] at the start of shared_info with these offsets. */
_Static_assert(__builtin_offsetof(shared_info_t, vcpu_info) == 0, "vcpu_info[0] at 0");
_Static_assert(__builtin_offsetof(vcpu_info_t, evtchn_upcall_pending) == 0, "upcall_pending at 0");
_Static_assert(__builtin_offsetof(vcpu_info_t, evtchn_upcall_mask) == 1, "upcall_mask at 1");

shared_info_t *HYPERVISOR_shared_info;

/* The virtual address shared_info is mapped at: a page of the kit's own, whose frame is given up. */
static char shared_info_va[PAGE_SIZE] __attribute__((aligned(PAGE_SIZE)));

static unsigned int return_mode = TRAP_RETURN_IRET_HYPERCALL;

/* The virtual IDT: one entry per vector, then the terminator (address 0). */
static trap_info_t trap_table[TRAP_VECTORS + 1];

/* Maps the shared_info frame (start_info->shared_info is its machine address) read-write. */
void shared_info_map(void)
{
    uint64_t pte = (start_info->shared_info & ~(uint64_t)(PAGE_SIZE - 1)) | PTE_RW | _PAGE_NX;
    long rc;

    if (HYPERVISOR_shared_info != NULL)
        return;
    rc = HYPERVISOR_update_va_mapping((unsigned long)shared_info_va, pte, UVMF_INVLPG);
    if (rc != 0) {
        printk("shared_info_map: mapping shared_info (machine address %#lx) failed: %ld\n",
               start_info->shared_info, rc);
        shutdown(SHUTDOWN_crash);
    }
    HYPERVISOR_shared_info = (shared_info_t *)shared_info_va;
}

void traps_init(void)
{
    unsigned int v;
    long rc;

    shared_info_map();
    for (v = 0; v < TRAP_VECTORS; v++) {
        trap_table[v].vector = (uint8_t)v;
        /* DPL 3 lets int3 through from any mode; DPL 0 makes "int $v" a #GP. Bit 2 stays clear. */
        trap_table[v].flags = v == TRAP_BP ? 3 : 0;
        trap_table[v].cs = FLAT_KERNEL_CS;
        trap_table[v].address = trap_entries[v];
    }
    trap_table[TRAP_VECTORS].address = 0;
    rc = HYPERVISOR_set_trap_table(trap_table);
    if (rc != 0) {
        printk("traps_init: set_trap_table failed: %ld\n", rc);
        shutdown(SHUTDOWN_crash);
    }
}

unsigned int trap_return_mode(unsigned int mode)
{
    unsigned int old = return_mode;

    return_mode = mode == TRAP_RETURN_IRETQ ? TRAP_RETURN_IRETQ : TRAP_RETURN_IRET_HYPERCALL;
    return old;
}

unsigned long trap_cr2(void)
{
    if (HYPERVISOR_shared_info == NULL)
        return 0;
    return *(volatile unsigned long *)&HYPERVISOR_shared_info->vcpu_info[0].arch.cr2;
}

/* How traps-entry.S resumes f: TRAP_RETURN_IRETQ only for a frame from guest kernel mode (cs RPL 0). */
unsigned int trap_resume_how(const struct trap_frame *f)
{
    if (return_mode == TRAP_RETURN_IRETQ && (f->cs & 3) == 0)
        return TRAP_RETURN_IRETQ;
    return TRAP_RETURN_IRET_HYPERCALL;
}

/* Called by traps-entry.S with the frame of every exception: runs the handler, then says how to resume. */
unsigned int trap_dispatch(struct trap_frame *f)
{
    trap_handle(f);
    return trap_resume_how(f);
}
