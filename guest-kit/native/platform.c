/*
 * The kit's platform for a plain (native) kernel, in place of the PV one
 * (lib/entry.S, start.c, shutdown.c, console.c): the console is the first
 * serial port (a 16550 at 0x3f8, polled), the end is QEMU's isa-debug-exit
 * device (port 0xf4: QEMU exits with status 2 * value + 1; the kit writes
 * 0x10 for a poweroff and 0x11 for a crash, statuses 33 and 35, which QEMU
 * itself never exits with), then the ACPI
 * and keyboard-controller power-off and reset a PC answers, then hlt. No
 * start_info: main() gets NULL. Inputs: none (the boot loader's
 * hvm_start_info is not read).
 */
#include <paravane/guest.h>
#include <paravane/platform.h>
#include "native.h"

#define COM1 0x3f8
#define DEBUG_EXIT 0xf4

/* The NX bit, where entry-pvh.S could turn EFER.NXE on (0 elsewhere: the bit would be reserved); read once, at boot. */
static uint64_t nx_bit;

start_info_t *start_info;

static void serial_init(void)
{
    outb(COM1 + 1, 0x00);   /* no interrupts */
    outb(COM1 + 3, 0x80);   /* DLAB: set the divisor */
    outb(COM1 + 0, 0x01);   /* 115200 baud */
    outb(COM1 + 1, 0x00);
    outb(COM1 + 3, 0x03);   /* 8N1 */
    outb(COM1 + 2, 0xc7);   /* FIFOs on, cleared */
}

static void serial_put(char c)
{
    /* Wait for the transmit holding register; give up after a while (no UART there). */
    for (int spin = 0; spin < 100000 && !(inb(COM1 + 5) & 0x20); spin++)
        ;
    outb(COM1, (uint8_t)c);
}

void console_write(const char *s, size_t len)
{
    for (size_t i = 0; i < len; i++) {
        if (s[i] == '\n')
            serial_put('\r');
        serial_put(s[i]);
    }
}

void console_flush(void)
{
}

long console_read(char *buf, size_t len)
{
    size_t n = 0;

    /* Line status bit 0: a byte waits in the receive register. No UART (all ones): nothing. */
    while (n < len) {
        uint8_t lsr = inb(COM1 + 5);

        if (lsr == 0xff || !(lsr & 1))
            break;
        buf[n++] = (char)inb(COM1);
    }
    return (long)n;
}

void console_wait_input(void)
{
    asm volatile("pause");
}

static void put_console(void *ctx, char c)
{
    (void)ctx;
    console_write(&c, 1);
}

int vprintk(const char *fmt, va_list ap)
{
    return vformat(put_console, NULL, fmt, ap);
}


void shutdown(unsigned int reason)
{
    /* isa-debug-exit: QEMU ends with 2 * value + 1 (33 for a poweroff, 35 for a crash). */
    outb(DEBUG_EXIT, reason == SHUTDOWN_poweroff ? 0x10 : 0x11);
    /* A PC without it: ACPI S5 at QEMU's PIIX4 and ICH9 PM1a control ports, then a reset. */
    outw(0x604, 0x2000);
    outw(0xb004, 0x2000);
    outb(0x64, 0xfe);
    for (;;)
        asm volatile("cli; hlt");
}

void native_start(uint32_t hvm_start_info)
{
    int rc;

    (void)hvm_start_info;
    nx_bit = (rdmsr(MSR_EFER) & EFER_NXE) ? 1ULL << 63 : 0;
    /* Every IRQ masked at both PICs: what the firmware left running (its PIT tick, on vectors that are
       exceptions here) cannot reach the kernel when it turns interrupts on; the tick unmasks IRQ 0. */
    outb(0x21, 0xff);
    outb(0xa1, 0xff);
    serial_init();
    rc = main(NULL);
    if (rc != 0) {
        printk("main returned %d: shutting down with SHUTDOWN_crash\n", rc);
        shutdown(SHUTDOWN_crash);
    }
    shutdown(SHUTDOWN_poweroff);
}

const char *platform_name(void)
{
    return "native";
}

long platform_io_init(void)
{
    return 0;
}

/* The boot page directory (entry-pvh.S): 2 MiB pages over the first GiB, at identity and at VIRT_BASE. */
extern uint64_t boot_pd[512];
static uint64_t region_pt[512] __attribute__((aligned(4096)));


static int region_ready;

long platform_region_init(void)
{
    /* The region's 2 MiB in the boot page directory becomes a page table of its own (P | RW). */
    boot_pd[(PLATFORM_REGION_VA >> 21) & 511] = NATIVE_PHYS(region_pt) | 3;
    asm volatile("invlpg (%0)" : : "r"(PLATFORM_REGION_VA) : "memory");
    region_ready = 1;
    return 0;
}

uint64_t platform_pte(const void *va, int writable)
{
    /* P | A (| RW | D), NX. */
    return (NATIVE_PHYS(va) & ~0xfffULL) | (writable ? 0x63ULL : 0x21ULL) | nx_bit;
}

long platform_region_set(unsigned int i, uint64_t pte)
{
    unsigned long va = PLATFORM_REGION_VA + ((unsigned long)i << 12);

    if (!region_ready || i >= PLATFORM_REGION_SLOTS)
        return -1;
    *(volatile uint64_t *)&region_pt[i] = pte;
    asm volatile("invlpg (%0)" : : "r"(va) : "memory");
    return 0;
}

long platform_region_set_all(const uint64_t *ptes, unsigned int n)
{
    unsigned long cr3;

    if (!region_ready || n > PLATFORM_REGION_SLOTS)
        return -1;
    for (unsigned int i = 0; i < n; i++)
        *(volatile uint64_t *)&region_pt[i] = ptes[i];
    asm volatile("mov %%cr3, %0; mov %0, %%cr3" : "=r"(cr3) : : "memory");
    return 0;
}

/* The boot PML4 (entry-pvh.S), and each address space's own tables. */
extern uint64_t boot_pml4[512];
static struct {
    uint64_t l4[512], l3[512], l2[512], l1[512];
} as[PLATFORM_ASPACES] __attribute__((aligned(4096)));
static int as_built[PLATFORM_ASPACES];

static inline void load_cr3(uint64_t phys)
{
    asm volatile("mov %0, %%cr3" : : "r"(phys) : "memory");
}

long platform_aspace_create(unsigned int id, const void *const *pages, unsigned int n)
{
    if (id >= PLATFORM_ASPACES || n > 512 || as_built[id])
        return -1;
    for (unsigned int i = 0; i < 512; i++) {
        as[id].l4[i] = boot_pml4[i];
        as[id].l3[i] = as[id].l2[i] = 0;
        /* P | A, NX: read-only. */
        as[id].l1[i] = i < n ? platform_pte(pages[i], 0) : 0;
    }
    as[id].l4[(PLATFORM_WINDOW_VA >> 39) & 511] = NATIVE_PHYS(as[id].l3) | 3;
    as[id].l3[(PLATFORM_WINDOW_VA >> 30) & 511] = NATIVE_PHYS(as[id].l2) | 3;
    as[id].l2[(PLATFORM_WINDOW_VA >> 21) & 511] = NATIVE_PHYS(as[id].l1) | 3;
    as_built[id] = 1;
    return 0;
}

long platform_aspace_enter(unsigned int id)
{
    if (id >= PLATFORM_ASPACES || !as_built[id])
        return -1;
    load_cr3(NATIVE_PHYS(as[id].l4));
    return 0;
}

long platform_aspace_leave(void)
{
    load_cr3(NATIVE_PHYS(boot_pml4));
    return 0;
}

/* Nothing to give back: the tables are the kernel's own memory, rebuilt by the next create. */
long platform_aspace_destroy(unsigned int id)
{
    if (id >= PLATFORM_ASPACES || !as_built[id])
        return -1;
    as_built[id] = 0;
    return 0;
}

/* --- Time and the tick: the TSC calibrated against the PIT's counter 2, and the PIT's counter 0 on IRQ 0. */

static uint64_t tsc_per_ms, tsc_boot;
static void (*tick_handler)(void);

/* TSC ticks in 10 ms of PIT counter 2 (mode 0, gate on, OUT on port 0x61 bit 5 at terminal count). */
static void calibrate(void)
{
    const uint16_t count = 11932; /* 1193182 Hz x 10 ms */
    uint64_t t0, t1;

    outb(0x61, (uint8_t)((inb(0x61) & ~0x02) | 0x01));
    outb(0x43, 0xb0);
    outb(0x42, (uint8_t)count);
    outb(0x42, (uint8_t)(count >> 8));
    t0 = platform_cycles();
    while (!(inb(0x61) & 0x20))
        ;
    t1 = platform_cycles();
    tsc_per_ms = (t1 - t0) / 10;
    if (tsc_per_ms == 0)
        tsc_per_ms = 1;
    tsc_boot = t0;
}

uint64_t platform_now_ns(void)
{
    if (tsc_per_ms == 0)
        calibrate();
    return (platform_cycles() - tsc_boot) * 1000000 / tsc_per_ms;
}

/* Called by irq0_entry (traps-entry.S) with interrupts off. */
void native_irq0(void)
{
    if (tick_handler != NULL)
        tick_handler();
    outb(0x20, 0x20); /* EOI to the master PIC */
}

long platform_tick_start(unsigned int period_us, void (*h)(void))
{
    uint32_t divisor = (uint32_t)((1193182ULL * period_us) / 1000000ULL);

    if (divisor == 0 || divisor > 0xffff)
        return -1;
    platform_now_ns(); /* calibrated before the tick runs */
    tick_handler = h;
    /* The PICs: IRQs 0-7 at vectors 32-39, 8-15 at 40-47; all masked but IRQ 0. */
    outb(0x20, 0x11);
    outb(0xa0, 0x11);
    outb(0x21, 0x20);
    outb(0xa1, 0x28);
    outb(0x21, 0x04);
    outb(0xa1, 0x02);
    outb(0x21, 0x01);
    outb(0xa1, 0x01);
    outb(0x21, 0xfe);
    outb(0xa1, 0xff);
    /* Counter 0, LSB then MSB, mode 2 (rate generator). */
    outb(0x43, 0x34);
    outb(0x40, (uint8_t)divisor);
    outb(0x40, (uint8_t)(divisor >> 8));
    return 0;
}

void platform_tick_stop(void)
{
    outb(0x21, 0xff);
    tick_handler = NULL;
}

void platform_wait(void)
{
    /* sti's one-instruction shadow makes "sti; hlt" wait for the next interrupt without missing one. */
    asm volatile("sti; hlt; cli" : : : "memory");
}

void platform_irq_disable(void)
{
    asm volatile("cli" : : : "memory");
}

void platform_irq_enable(void)
{
    asm volatile("sti" : : : "memory");
}

long platform_set_priority(unsigned int level)
{
    if (level > 15)
        return -1;
    asm volatile("mov %0, %%cr8" : : "r"((unsigned long)level) : "memory");
    return 0;
}
