/*
 * Memory layout and ports shared by the probe guests and
 * src/engine/probe-guest.ts (which builds the page tables, GDT, IDT and TSS
 * these guests run on). Keep the two in step.
 */
#define CODE_GPA    0x10000    /* guest code, CPL 3 */
#define STUBS_GPA   0x7000     /* exception stubs, CPL 0: report the vector on port 0xf0 */
#define DIRTY_GPA   0x200000   /* 2 MiB, memory slot 1, dirty-logged */
#define RO_GPA      0x800000   /* 2 MiB, memory slot 2, read-only */
#define MMIO_GPA    0x1000000  /* no memory slot: accesses exit as MMIO */

#define PORT_A      0x10       /* ports 0x10-0x1f are open in the TSS I/O bitmap */
#define PORT_B      0x11
#define PORT_C      0x12
#define PORT_DONE   0x1f
#define PORT_FAULT  0xf0       /* used by the CPL-0 exception stubs */

/* Report "done" and stay there: each further run exits on PORT_DONE again. */
#define DONE 9: outb %al, $PORT_DONE; jmp 9b
