/* What the plain (fv-trap) test kernels share: the debug-exit poweroff (QEMU's isa-debug-exit, as the guest kit's plain kernels use it). */
        .macro POWEROFF
        movb $0x10, %al
        outb %al, $0xf4
        .endm
