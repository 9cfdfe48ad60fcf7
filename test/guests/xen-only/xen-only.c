/*
 * A guest that sees only Xen's public headers and gcc's freestanding ones:
 * it greets through console_io, prints the Xen version, and powers off,
 * each hypercall a direct `call hypercall_page + nr * 32`. If paravane runs
 * it, paravane speaks Xen's ABI as Xen's headers define it.
 */
#include <stdint.h>
#include <xen/xen.h>
#include <xen/sched.h>
#include <xen/version.h>

extern char hypercall_page[];

/* Hypercall `nr` (a constant) with two or three arguments. The stub sets
 * rax; the argument registers, rcx and r11 come back clobbered. */
#define HYPERCALL3(nr, x, y, z) ({                                          \
    register unsigned long a1 asm("rdi") = (unsigned long)(x);              \
    register unsigned long a2 asm("rsi") = (unsigned long)(y);              \
    register unsigned long a3 asm("rdx") = (unsigned long)(z);              \
    long ret;                                                               \
    asm volatile("call hypercall_page + %c[off]"                            \
                 : "=a"(ret), "+r"(a1), "+r"(a2), "+r"(a3)                  \
                 : [off] "i"((nr) * 32)                                     \
                 : "rcx", "r11", "r8", "r10", "memory");                    \
    ret;                                                                    \
})
#define HYPERCALL2(nr, x, y) HYPERCALL3(nr, x, y, 0)

/* Writes s up to its NUL or max bytes, whichever comes first. */
static void put_max(const char *s, unsigned long max)
{
    unsigned long n = 0;

    while (n < max && s[n] != '\0')
        n++;
    HYPERCALL3(__HYPERVISOR_console_io, CONSOLEIO_write, n, s);
}

static void put(const char *s)
{
    put_max(s, ~0UL);
}

/* Decimal digits of v into buf (at least 21 bytes). */
static char *decimal(char *buf, unsigned long v)
{
    char *p = buf + 20;

    *p = '\0';
    do {
        *--p = (char)('0' + v % 10);
        v /= 10;
    } while (v != 0);
    return p;
}

void xen_only_main(start_info_t *si);

void xen_only_main(start_info_t *si)
{
    struct sched_shutdown off = { .reason = SHUTDOWN_poweroff };
    xen_extraversion_t extra;
    char digits[21];
    long version;
    unsigned int i;

    put("Hello from a guest built only against Xen's headers\n");

    put("start_info magic: ");
    put_max(si->magic, sizeof(si->magic));
    put("\n");

    version = HYPERCALL2(__HYPERVISOR_xen_version, XENVER_version, 0);
    for (i = 0; i < sizeof(extra); i++)
        extra[i] = '\0';
    HYPERCALL2(__HYPERVISOR_xen_version, XENVER_extraversion, extra);
    put("xen_version: ");
    put(decimal(digits, (unsigned long)version >> 16));
    put(".");
    put(decimal(digits, (unsigned long)version & 0xffff));
    put_max(extra, sizeof(extra));
    put("\n");

    HYPERCALL2(__HYPERVISOR_sched_op, SCHEDOP_shutdown, &off);
    put("SCHEDOP_shutdown returned\n");
    for (;;)
        asm volatile("ud2");
}
