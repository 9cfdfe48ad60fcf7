/*
 * What the plain kernel's C files share (native/ only): port I/O, MSRs,
 * and a kernel address's physical one (the image is loaded at its link
 * address less VIRT_BASE).
 */
#ifndef __PARAVANE_NATIVE_H__
#define __PARAVANE_NATIVE_H__

#include <stdint.h>

#define MSR_EFER 0xc0000080
#define EFER_NXE 0x800

extern char __virt_base[];
#define NATIVE_PHYS(va) ((uint64_t)(unsigned long)(va) - (uint64_t)(unsigned long)__virt_base)

static inline void outb(uint16_t port, uint8_t v)
{
    asm volatile("outb %0, %1" : : "a"(v), "Nd"(port));
}

static inline void outw(uint16_t port, uint16_t v)
{
    asm volatile("outw %0, %1" : : "a"(v), "Nd"(port));
}

static inline uint8_t inb(uint16_t port)
{
    uint8_t v;

    asm volatile("inb %1, %0" : "=a"(v) : "Nd"(port));
    return v;
}

static inline void wrmsr(uint32_t msr, uint64_t v)
{
    asm volatile("wrmsr" : : "c"(msr), "a"((uint32_t)v), "d"((uint32_t)(v >> 32)));
}

static inline uint64_t rdmsr(uint32_t msr)
{
    uint32_t lo, hi;

    asm volatile("rdmsr" : "=a"(lo), "=d"(hi) : "c"(msr));
    return ((uint64_t)hi << 32) | lo;
}

#endif /* __PARAVANE_NATIVE_H__ */
