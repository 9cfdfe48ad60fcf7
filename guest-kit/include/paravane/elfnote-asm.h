/*
 * ELFNOTE(type, directive, value) for assembly: one Xen ELF note (owner
 * "Xen") in a .note.Xen section, e.g.
 *     ELFNOTE(XEN_ELFNOTE_XEN_VERSION, .asciz, "xen-3.0")
 *     ELFNOTE(XEN_ELFNOTE_HYPERCALL_PAGE, .quad, hypercall_page)
 * Layout per the ELF note format: namesz, descsz, type, name, desc, each
 * padded to 4 bytes. Include with -D__ASSEMBLY__.
 */
#ifndef __PARAVANE_ELFNOTE_ASM_H__
#define __PARAVANE_ELFNOTE_ASM_H__

#define ELFNOTE(type, directive, value)          \
        .pushsection .note.Xen, "a", @note;      \
        .balign 4;                               \
        .long 2f - 1f;                           \
        .long 4f - 3f;                           \
        .long type;                              \
1:      .asciz "Xen";                            \
2:      .balign 4;                               \
3:      directive value;                         \
4:      .balign 4;                               \
        .popsection

#endif /* __PARAVANE_ELFNOTE_ASM_H__ */
