/*
 * Console output through console_io(CONSOLEIO_write), and a small
 * freestanding printf family (no floating point).
 *
 * printk/printf buffer one line and write it at '\n', when the buffer is
 * full, before console_write() and before shutdown(); nothing else flushes.
 */
#ifndef __PARAVANE_CONSOLE_H__
#define __PARAVANE_CONSOLE_H__

#include <stdarg.h>
#include <stddef.h>

#define __printf_like(f, a) __attribute__((format(printf, f, a)))

/* Writes len bytes to the hypervisor console now (after what printk holds). */
void console_write(const char *s, size_t len);
/* Writes out what printk has buffered. */
void console_flush(void);

/*
 * Console input: what the host typed to this domain (`paravane run`'s
 * stdin, while this domain is the one typed to). Reads up to len bytes
 * that have come, without waiting: returns how many (0: none yet), or a
 * negative Xen errno. Under PV it is console_io(CONSOLEIO_read), which
 * paravane serves to a domain that does not use the console ring (the
 * kit's console never does); natively the serial port's receive register.
 */
long console_read(char *buf, size_t len);
/*
 * Waits until console input may have come. Under PV: blocks until
 * VIRQ_CONSOLE, which paravane raises as input arrives (binding it calls
 * evtchn_init() if the guest has not); returns with events enabled.
 * Natively: one poll of the serial port's line status.
 */
void console_wait_input(void);

/*
 * Formats to the console. Conversions: %d %i %u %x %X %p %s %c %%, with
 * flags '-' (left-justify), '0' (zero-pad) and '#' (0x before %x), a width,
 * a precision (%s: most bytes; integers: fewest digits), '*' for either,
 * and the length modifiers hh h l ll z. No floating point.
 * Returns the number of characters written.
 */
int printk(const char *fmt, ...) __printf_like(1, 2);
int vprintk(const char *fmt, va_list ap) __printf_like(1, 0);
/* The same as printk. */
int printf(const char *fmt, ...) __printf_like(1, 2);

/*
 * Format into buf, writing at most size bytes including the NUL (nothing
 * when size is 0). Returns the length the whole output would have had.
 */
int vsnprintf(char *buf, size_t size, const char *fmt, va_list ap) __printf_like(3, 0);
int snprintf(char *buf, size_t size, const char *fmt, ...) __printf_like(3, 4);

/* The formatter underneath: calls put(ctx, c) for each output character. */
int vformat(void (*put)(void *ctx, char c), void *ctx, const char *fmt, va_list ap)
    __printf_like(3, 0);

#endif /* __PARAVANE_CONSOLE_H__ */
