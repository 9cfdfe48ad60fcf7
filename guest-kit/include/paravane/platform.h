/*
 * What a workload written for both builds of the kit (a PV kernel, and a
 * plain kernel with PLATFORM=native) uses where the two differ. With it
 * and <paravane/traps.h>, printk and main, one source runs in every mode.
 */
#ifndef __PARAVANE_PLATFORM_H__
#define __PARAVANE_PLATFORM_H__

#include <stdint.h>

/* "pv" or "native". */
const char *platform_name(void);

/*
 * Lets the kernel use in and out: PV, PHYSDEVOP_set_iopl(1) (the virtual
 * IOPL; the ports then answer as the hypervisor's, docs/emulator.md);
 * native, nothing (it runs at CPL 0). 0, or the hypercall's error.
 */
long platform_io_init(void);

/* The TSC, ordered after what came before. */
static inline __attribute__((always_inline)) uint64_t platform_cycles(void)
{
    uint32_t lo, hi;

    asm volatile("lfence; rdtsc" : "=a"(lo), "=d"(hi) : : "memory");
    return ((uint64_t)hi << 32) | lo;
}

static inline uint8_t platform_inb(uint16_t port)
{
    uint8_t v;

    asm volatile("inb %1, %0" : "=a"(v) : "Nd"(port));
    return v;
}

/*
 * The interrupt flag, as a kernel turns it off and on around a critical
 * section: PV the event mask in vcpu_info (a store, no exit; turning it on
 * delivers a pending upcall); natively cli and sti.
 */
void platform_irq_disable(void);
void platform_irq_enable(void);

/*
 * The task priority (natively `mov` to CR8: interrupts of priority class
 * `level` and below are held), Adams & Agesen's cr8 write. A PV kernel
 * has no CR8 (it holds events by masking them): -1 there, and nothing
 * changes.
 */
long platform_set_priority(unsigned int level);

/*
 * A region of 512 page slots (2 MiB at PLATFORM_REGION_VA, unmapped at
 * boot) in a page table of its own, whose entries a workload rewrites:
 * the page-table updates each mode makes cost differently. PV: an L1 of
 * the kit's pages, hooked into the bootstrap L2 by mmu_update (the
 * hypervisor validates every entry); native: a page table of its own in
 * the boot page directory, written with plain stores.
 */
/* The kernel's link base (guest.lds, native/native.lds: the one place it is set). */
extern char __virt_base[];
#define PLATFORM_REGION_VA ((unsigned long)__virt_base + (512UL << 20))
#define PLATFORM_REGION_SLOTS 512u

/* Sets the region up (once). 0, or the hypercall's error. */
long platform_region_init(void);

/* The entry that maps the kernel's page at va, read-only or read-write (never executable). */
uint64_t platform_pte(const void *va, int writable);

/* Writes slot i's entry and drops its old translation: PV one update_va_mapping with INVLPG; native a store and invlpg. A slot past the region, or a region not set up, is refused (PV -XEN_EINVAL, native -1). */
long platform_region_set(unsigned int i, uint64_t pte);

/* Writes slots 0 to n-1, then drops the old translations: PV one batched mmu_update and one TLB flush; native n stores and a CR3 reload. Refused as above when n is past the region. */
long platform_region_set_all(const uint64_t *ptes, unsigned int n);

/*
 * Address spaces of the workload's own (PLATFORM_ASPACES of them), as a
 * fork builds one: the kernel's mappings, and a window at
 * PLATFORM_WINDOW_VA mapping up to 512 of the kernel's pages read-only.
 * PV: four of the kit's pages each, filled with stores, made read-only and
 * pinned (the hypervisor validates them), the base pointer switched by
 * mmuext_op, and unpinned and made writable again to destroy; native: four
 * page tables each, written with stores, and CR3 loads.
 */
#define PLATFORM_WINDOW_VA 0x0000100000000000UL
#define PLATFORM_ASPACES 2u

/* Builds address space `id` over pages[0..n-1] (n <= 512); refused while it is built (destroy it first). 0, or the hypercall's error. */
long platform_aspace_create(unsigned int id, const void *const *pages, unsigned int n);
/* Switches to address space `id` (from the boot tables or another of these); refused for one not built. */
long platform_aspace_enter(unsigned int id);
/* Back to the boot tables. */
long platform_aspace_leave(void);
/* Takes address space `id` apart (not while it is entered), so that it can be built again. */
long platform_aspace_destroy(unsigned int id);

/*
 * Time and a periodic tick, for counting the ticks a mode loses. The
 * clock: PV the PV clock (now_ns()); natively the TSC, calibrated against
 * the PIT's counter 2 at the first call. The tick: PV Xen's periodic
 * timer on VIRQ_TIMER (a period missed while the vCPU did not run is
 * coalesced into the next event, as on Xen); natively the PIT's counter 0
 * on IRQ 0 through the PIC. h runs in the upcall or interrupt handler.
 */
uint64_t platform_now_ns(void);
long platform_tick_start(unsigned int period_us, void (*h)(void));
void platform_tick_stop(void);
/* Waits for the next event or interrupt with them enabled (PV SCHEDOP_block, natively sti; hlt); they are disabled again on return. */
void platform_wait(void);

/*
 * User mode: a user program at CPL 3 making system calls, for the cost of
 * the system-call path. PV: <paravane/user.h> (its own tables mapping only
 * the user image; each syscall bounced to the kernel by the hypervisor and
 * returned by the iret hypercall); native: syscall and sysretq, no
 * hypervisor, and no protection of the kernel's memory (native/user.c).
 * User code and data go in PLATFORM_USER_TEXT functions and
 * PLATFORM_USER_DATA objects, and reach nothing else (platform_cycles()
 * and platform_user_syscall() are inlined).
 */
#define PLATFORM_USER_TEXT __attribute__((section(".user.text"), noinline, used))
#define PLATFORM_USER_DATA __attribute__((section(".user.data")))
/* The system call that ends the user program (its first argument is the status); any other returns 0 at once. */
#define PLATFORM_SYS_EXIT 60

long platform_user_init(void);
/* Runs entry on stack_top at CPL 3 until it makes PLATFORM_SYS_EXIT; returns its status. */
long platform_user_run(void (*entry)(void), void *stack_top);

static inline __attribute__((always_inline)) long platform_user_syscall(long nr, long a0)
{
    long ret;

    asm volatile("syscall" : "=a"(ret) : "a"(nr), "D"(a0) : "rcx", "r11", "memory");
    return ret;
}

#endif /* __PARAVANE_PLATFORM_H__ */
