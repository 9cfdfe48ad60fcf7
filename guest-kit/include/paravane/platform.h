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
static inline uint64_t platform_cycles(void)
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

#endif /* __PARAVANE_PLATFORM_H__ */
