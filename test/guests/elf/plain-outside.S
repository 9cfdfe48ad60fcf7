/* A plain kernel whose own page tables map guest-physical memory it does not have (1 GiB identity with 2 MiB pages), then touches 512 MiB: fv-trap must refuse the frame and crash it alone. */
        .text
        .globl _start
_start:
        leaq pd(%rip), %rdi
        xorl %ecx, %ecx
1:      movq %rcx, %rax
        shlq $21, %rax
        orq $0x83, %rax
        movq %rax, (%rdi,%rcx,8)
        incl %ecx
        cmpl $512, %ecx
        jb 1b
        leaq pd(%rip), %rax
        orq $3, %rax
        movq %rax, pdpt(%rip)
        leaq pdpt(%rip), %rax
        orq $3, %rax
        movq %rax, pml4(%rip)
        leaq pml4(%rip), %rax
        movq %rax, %cr3
        movl $0x20000000, %ebx
        movq (%rbx), %rax
        movb $0x10, %al
        outb %al, $0xf4
        .bss
        .balign 4096
pml4:   .skip 4096
pdpt:   .skip 4096
pd:     .skip 4096
