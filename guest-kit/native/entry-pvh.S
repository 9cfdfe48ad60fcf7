/*
 * The plain kernel's boot code: Xen's PVH entry, as QEMU's -kernel enters
 * a kernel (the x86 boot protocol of an ELF with a
 * XEN_ELFNOTE_PHYS32_ENTRY note): 32-bit
 * protected mode, paging off, flat segments, ebx = the physical address of
 * struct hvm_start_info. From there to the kit's C code in long mode at
 * VIRT_BASE: page tables mapping the first GiB twice (identity, and at
 * VIRT_BASE, with 2 MiB pages), PAE, EFER.LME (and NXE where CPUID
 * offers NX), paging with CR0.WP (read-only mappings hold for the kernel
 * too, as they do for a PV kernel at CPL 3), a GDT of its own, and a jump
 * to the high mapping with a stack of its own.
 */
#include <xen/elfnote.h>
#include <paravane/elfnote-asm.h>

#define VIRT_BASE 0xffffffff80000000
#define PHYS(x) ((x) - VIRT_BASE)
#define STACK_SIZE (4 * 4096)

ELFNOTE(XEN_ELFNOTE_GUEST_OS,       .asciz, "paravane-guest-kit-native")
ELFNOTE(XEN_ELFNOTE_PHYS32_ENTRY,   .quad,  PHYS(pvh_start32))

        .code32
        .section .text.boot32, "ax", @progbits
        .globl pvh_start32
        .type pvh_start32, @function
pvh_start32:
        cli
        cld
        movl %ebx, %esi                         /* hvm_start_info, kept for C */
        /* The PD: 512 entries of 2 MiB (P | RW | PS), physical 0 to 1 GiB. */
        movl $PHYS(boot_pd), %edi
        xorl %ecx, %ecx
1:      movl %ecx, %eax
        shll $21, %eax
        orl $0x83, %eax
        movl %eax, (%edi,%ecx,8)
        movl $0, 4(%edi,%ecx,8)
        incl %ecx
        cmpl $512, %ecx
        jb 1b
        /* The PDPT's entries 0 (identity) and 510 (VIRT_BASE) point at it; the PML4's 0 and 511 at the PDPT. */
        movl $PHYS(boot_pd) + 3, %eax
        movl %eax, PHYS(boot_pdpt)
        movl %eax, PHYS(boot_pdpt) + 510 * 8
        movl $PHYS(boot_pdpt) + 3, %eax
        movl %eax, PHYS(boot_pml4)
        movl %eax, PHYS(boot_pml4) + 511 * 8
        /* PAE, the tables, long mode and NX, then paging. */
        movl %cr4, %eax
        orl $0x20, %eax
        movl %eax, %cr4
        movl $PHYS(boot_pml4), %eax
        movl %eax, %cr3
        /* EFER.LME, and NXE if CPUID 0x80000001 EDX bit 20 says the CPU has NX. */
        movl %esi, %edi
        movl $0x80000001, %eax
        cpuid
        movl $0x100, %ebx
        btl $20, %edx
        jnc 3f
        orl $0x800, %ebx
3:      movl $0xc0000080, %ecx
        rdmsr
        orl %ebx, %eax
        wrmsr
        movl %edi, %esi                         /* hvm_start_info again (cpuid took ebx) */
        movl %cr0, %eax
        orl $0x80010001, %eax                   /* PG | WP | PE */
        movl %eax, %cr0
        lgdt PHYS(boot_gdt_desc)
        ljmp $0x08, $PHYS(start64_low)

        .code64
start64_low:
        movl $0x10, %eax
        movl %eax, %ds
        movl %eax, %es
        movl %eax, %ss
        xorl %eax, %eax
        movl %eax, %fs
        movl %eax, %gs
        movabsq $start64, %rax
        jmp *%rax
        .size pvh_start32, . - pvh_start32

/*
 * The 64-bit entry (the ELF's entry point): for a loader that enters
 * kernels in long mode, as paravane's fv-trap mode does (a deprivileged
 * kernel cannot run the 32-bit entry's paging-off code). It is entered at
 * its link address with paging on, the image mapped at VIRT_BASE and at
 * its physical address, CR0.PG|WP|PE, CR4.PAE and EFER.LME set, flat
 * segments and no stack; rsi = 0 (no hvm_start_info). It builds the same
 * boot tables as the 32-bit entry, here in 64-bit code, turns on NX where
 * CPUID offers it, loads its own tables and goes on at start64.
 */
        .text
        .globl start64_entry
        .type start64_entry, @function
start64_entry:
        cli
        cld
        xorl %esi, %esi
        leaq boot_pd(%rip), %rdi
        xorl %ecx, %ecx
1:      movq %rcx, %rax
        shlq $21, %rax
        orq $0x83, %rax
        movq %rax, (%rdi,%rcx,8)
        incl %ecx
        cmpl $512, %ecx
        jb 1b
        movabsq $PHYS(boot_pd) + 3, %rax
        movq %rax, boot_pdpt(%rip)
        movq %rax, boot_pdpt + 510 * 8(%rip)
        movabsq $PHYS(boot_pdpt) + 3, %rax
        movq %rax, boot_pml4(%rip)
        movq %rax, boot_pml4 + 511 * 8(%rip)
        movl $0x80000001, %eax
        cpuid
        btl $20, %edx
        jnc 2f
        movl $0xc0000080, %ecx
        rdmsr
        orl $0x800, %eax
        wrmsr
2:      xorl %esi, %esi
        movabsq $PHYS(boot_pml4), %rax
        movq %rax, %cr3
        movl $0x10, %eax
        movl %eax, %ds
        movl %eax, %es
        movl %eax, %ss
        jmp start64
        .size start64_entry, . - start64_entry

        .type start64, @function
start64:
        leaq boot_stack_top(%rip), %rsp
        xorl %ebp, %ebp
        /* .bss (the loader zero-fills it too; a kernel does not rely on that). */
        leaq __bss_start(%rip), %rdi
        leaq __bss_end(%rip), %rcx
        subq %rdi, %rcx
        xorl %eax, %eax
        rep stosb
        movl %esi, %edi
        call native_start
2:      hlt
        jmp 2b
        .size start64, . - start64

        .section .rodata
        .balign 16
boot_gdt:
        .quad 0
        .quad 0x00af9a000000ffff                /* 0x08: 64-bit code, DPL 0 */
        .quad 0x00cf92000000ffff                /* 0x10: data, DPL 0 */
boot_gdt_end:
boot_gdt_desc:
        .word boot_gdt_end - boot_gdt - 1
        .long PHYS(boot_gdt)

        .section .data.pagetables, "aw", @progbits
        .balign 4096
        .globl boot_pml4
boot_pml4:
        .fill 512, 8, 0
        .globl boot_pdpt
boot_pdpt:
        .fill 512, 8, 0
        .globl boot_pd
boot_pd:
        .fill 512, 8, 0

        .section .bss.boot_stack, "aw", @nobits
        .balign 16
boot_stack:
        .skip STACK_SIZE
boot_stack_top:

        .section .note.GNU-stack, "", @progbits
