/*
 * User mode in the plain kernel, for <paravane/platform.h>'s
 * platform_user_*: a GDT with user segments and a TSS, syscall set up
 * (EFER.SCE, STAR, LSTAR, FMASK), and the boot page tables made
 * user-accessible. Unlike a PV kernel's user mode, which runs on tables
 * that map only the user image, this one is not kept from the kernel's
 * memory: it is for measuring the system-call path, not for running
 * programs the kernel must be protected from.
 */
#include <paravane/guest.h>
#include <paravane/platform.h>
#include "native.h"

extern uint64_t boot_pml4[512], boot_pdpt[512], boot_pd[512];
extern char native_syscall_entry[];
long native_user_enter(void (*entry)(void), void *stack_top);
void native_user_exit(long status) __attribute__((noreturn));

static uint64_t gdt[8] __attribute__((aligned(16)));
static uint8_t tss[104] __attribute__((aligned(16)));
static uint8_t fault_stack[8192] __attribute__((aligned(16)));
static int ready;

long platform_user_init(void)
{
    struct __attribute__((packed)) { uint16_t limit; uint64_t base; } gdtr = { sizeof(gdt) - 1, (uint64_t)gdt };
    uint64_t t = (uint64_t)tss, cr3;

    if (ready)
        return 0;
    gdt[1] = 0x00af9a000000ffffULL;     /* 0x08: kernel code */
    gdt[2] = 0x00cf92000000ffffULL;     /* 0x10: kernel data */
    gdt[3] = 0x00cff2000000ffffULL;     /* 0x18: user data (DPL 3): sysret's ss = STAR[63:48] + 8 */
    gdt[4] = 0x00affa000000ffffULL;     /* 0x20: user code (DPL 3, 64-bit): sysret's cs = STAR[63:48] + 16 */
    /* 0x28: the TSS (available, 64-bit), rsp0 for faults taken in user mode; no I/O bitmap. */
    *(uint64_t *)(tss + 4) = (uint64_t)(fault_stack + sizeof(fault_stack));
    *(uint16_t *)(tss + 102) = sizeof(tss);
    gdt[5] = (sizeof(tss) - 1) | ((t & 0xffffff) << 16) | (0x89ULL << 40) | (((t >> 24) & 0xff) << 56);
    gdt[6] = t >> 32;
    asm volatile("lgdt %0" : : "m"(gdtr));
    asm volatile("mov %0, %%ss; mov %0, %%ds; mov %0, %%es" : : "r"(0x10) : "memory");
    asm volatile("ltr %w0" : : "r"(0x28));
    wrmsr(MSR_EFER, rdmsr(MSR_EFER) | 1);                       /* EFER.SCE */
    wrmsr(0xc0000081, (0x10ULL << 48) | (0x08ULL << 32));       /* STAR */
    wrmsr(0xc0000082, (uint64_t)native_syscall_entry);          /* LSTAR */
    wrmsr(0xc0000084, 0x700);                                   /* FMASK: TF, IF, DF */
    /* The boot tables, user-accessible at every level (U/S). */
    for (unsigned int i = 0; i < 512; i++) {
        if (boot_pd[i] & 1)
            boot_pd[i] |= 4;
        if (boot_pdpt[i] & 1)
            boot_pdpt[i] |= 4;
        if (boot_pml4[i] & 1)
            boot_pml4[i] |= 4;
    }
    asm volatile("mov %%cr3, %0; mov %0, %%cr3" : "=r"(cr3) : : "memory");
    ready = 1;
    return 0;
}

/* The system calls a user program makes (native/user.S): PLATFORM_SYS_EXIT ends it; any other returns 0 at once. */
long native_syscall(long nr, long a0, long a1, long a2)
{
    (void)a1;
    (void)a2;
    if (nr == PLATFORM_SYS_EXIT)
        native_user_exit(a0);
    return 0;
}

long platform_user_run(void (*entry)(void), void *stack_top)
{
    if (!ready)
        return -1;
    return native_user_enter(entry, stack_top);
}
