/* Writable page tables, the narrow and read-modify-write forms: the guest
 * rewrites page A's L1 entry with byte, word and dword stores, LOCK OR,
 * LOCK AND, LOCK CMPXCHG and BTS/BTR, through the entry's read-only mapping,
 * as PV kernels do. Each flag-setting instruction is also run natively on a
 * copy of the entry in ordinary memory, so the test can compare the flags
 * paravane computes with the CPU's. Steps:
 *   1. lock btrq $0: A's entry not present (CF = 1);
 *   2. B's entry's bytes 1-7 into A's (movb %ch, movw, movl) while it is
 *      not present: it now holds B's frame with A's flags;
 *   3. lock orb $1: present again; after an INVLPG, A reads B's marker;
 *   4. lock andq $~0x20: the accessed bit cleared;
 *   5. a lock cmpxchg that fails (rax = 0): rax gets the entry;
 *   6. lock btrq %rax (rax = 0): not present; A's entry stored while it
 *      is not present; lock btsq %rax from the next entry with rax = -64:
 *      present again; after an INVLPG, A reads its own marker.
 * Reports the words laid out at `out` below, then powers off. */
#include "guest.h"
#include <xen/xen.h>

TEST_GUEST_NOTES

/* pushfq into \slot (a .data qword). */
.macro SAVE_FLAGS slot
        pushfq
        popq \slot(%rip)
.endm

        .text
        .code64
        .globl _start
_start:
        FIRST_L1 %rbx
        ENTRY_VA page_a, %rbx, %r14              /* VA of A's entry */
        ENTRY_VA page_b, %rbx, %rsi
        mov (%r14), %r12                         /* A's entry */
        mov (%rsi), %r13                         /* B's entry */
        mov %r12, out_a(%rip)
        mov %r13, out_b(%rip)

        /* 1. lock btrq $0: not present */
        mov %r12, scratch(%rip)
        lock btrq $0, scratch(%rip)
        SAVE_FLAGS native + 0
        lock btrq $0, (%r14)
        SAVE_FLAGS emul + 0
        mov (%r14), %rax
        mov %rax, entry + 0(%rip)

        /* 2. B's bytes 1-7; %ch needs an encoding without REX, so base rdi */
        mov %r13, %rcx
        mov %r14, %rdi
        movb %ch, 1(%rdi)
        shr $16, %rcx
        movw %cx, 2(%r14)
        shr $16, %rcx
        movl %ecx, 4(%r14)
        mov (%r14), %rax
        mov %rax, entry + 8(%rip)

        /* 3. lock orb $1: present, mapping B's frame */
        mov (%r14), %rax
        mov %rax, scratch(%rip)
        lock orb $1, scratch(%rip)
        SAVE_FLAGS native + 8
        lock orb $1, (%r14)
        SAVE_FLAGS emul + 8
        mov (%r14), %rax
        mov %rax, entry + 16(%rip)
        INVLPG page_a
        mov page_a(%rip), %rax
        mov %rax, seen + 0(%rip)

        /* 4. lock andq $~0x20 (83 /4 with a sign-extended imm8) */
        mov (%r14), %rax
        mov %rax, scratch(%rip)
        lock andq $~0x20, scratch(%rip)
        SAVE_FLAGS native + 16
        lock andq $~0x20, (%r14)
        SAVE_FLAGS emul + 16
        mov (%r14), %rax
        mov %rax, entry + 24(%rip)

        /* 5. lock cmpxchg that fails */
        mov (%r14), %rax
        mov %rax, scratch(%rip)
        xor %eax, %eax
        lock cmpxchg %r12, scratch(%rip)
        SAVE_FLAGS native + 24
        mov %rax, native_rax(%rip)
        xor %eax, %eax
        lock cmpxchg %r12, (%r14)
        SAVE_FLAGS emul + 24
        mov %rax, emul_rax(%rip)

        /* 6. back to A's frame through a not-present entry */
        xor %eax, %eax
        lock btrq %rax, (%r14)
        SAVE_FLAGS emul + 32
        mov %r12, %rcx
        btr $0, %rcx
        mov %rcx, (%r14)
        lea 8(%r14), %rdx
        mov $-64, %rax
        lock btsq %rax, (%rdx)                   /* the qword before rdx: A's entry, bit 0 */
        SAVE_FLAGS emul + 40
        mov (%r14), %rax
        mov %rax, entry + 32(%rip)
        INVLPG page_a
        mov page_a(%rip), %rax
        mov %rax, seen + 8(%rip)

        CONSOLE_WRITE out, (out_end-out)
        SHUTDOWN SHUTDOWN_poweroff, reason

        HYPERCALL_PAGE

        .data
        .balign 4096
page_a: .quad 0xaaaaaaaa
        .balign 4096
page_b: .quad 0xbbbbbbbb
        .balign 4096
/* The report, in qwords: */
out:
out_a:  .quad 0                                  /*  0: A's entry at the start */
out_b:  .quad 0                                  /*  1: B's entry */
entry:  .fill 5, 8, 0                            /*  2-6: A's entry after steps 1, 2, 3, 4, 6 */
seen:   .fill 2, 8, 0                            /*  7-8: read through A after steps 3 and 6 */
native: .fill 4, 8, 0                            /*  9-12: RFLAGS after steps 1, 3, 4, 5 on the copy */
emul:   .fill 6, 8, 0                            /* 13-18: RFLAGS after steps 1, 3, 4, 5 and the btr, bts of 6 */
native_rax: .quad 0                              /* 19: rax after the failed cmpxchg on the copy */
emul_rax: .quad 0                                /* 20: and on the entry */
out_end:
scratch: .quad 0
reason: .long 0
