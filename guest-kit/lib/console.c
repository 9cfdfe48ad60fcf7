/*
 * Console output: console_io(CONSOLEIO_write) of whole lines. printk
 * collects one line in a buffer and writes it at '\n' or when the buffer
 * fills, so each line costs one hypercall. One vCPU, events masked: no
 * locking.
 */
#include <paravane/guest.h>

#define LINE_MAX_BYTES 256
/* The most bytes written per hypercall (paravane accepts up to 64 KiB). */
#define WRITE_CHUNK    4096

static char line[LINE_MAX_BYTES];
static size_t line_len;

static void write_out(const char *s, size_t len)
{
    while (len > 0) {
        size_t n = len < WRITE_CHUNK ? len : WRITE_CHUNK;

        /* The buffer is IN for CONSOLEIO_write: the cast drops const only. */
        HYPERVISOR_console_io(CONSOLEIO_write, n, (void *)(uintptr_t)s);
        s += n;
        len -= n;
    }
}

void console_flush(void)
{
    if (line_len > 0) {
        write_out(line, line_len);
        line_len = 0;
    }
}

void console_write(const char *s, size_t len)
{
    console_flush();
    write_out(s, len);
}

static void put_console(void *ctx, char c)
{
    (void)ctx;
    line[line_len++] = c;
    if (c == '\n' || line_len == sizeof(line))
        console_flush();
}

int vprintk(const char *fmt, va_list ap)
{
    return vformat(put_console, NULL, fmt, ap);
}

int printk(const char *fmt, ...)
{
    va_list ap;
    int n;

    va_start(ap, fmt);
    n = vprintk(fmt, ap);
    va_end(ap);
    return n;
}

/* printf is printk: the console is the only output a guest has. */
int printf(const char *fmt, ...) __attribute__((alias("printk")));
