/*
 * Console output: console_io(CONSOLEIO_write) of whole lines. printk
 * collects one line in a buffer and writes it at '\n' or when the buffer
 * fills, so each line costs one hypercall. One vCPU: an event handler may
 * print too, so once shared_info is mapped each call runs with events
 * masked (a handler's line can still fall between two calls that build
 * one line).
 */
#include <paravane/guest.h>
#include <paravane/events.h>
#include <paravane/time.h>

#define LINE_MAX_BYTES 256
/* The most bytes written per hypercall (paravane accepts up to 64 KiB). */
#define WRITE_CHUNK    4096

static char line[LINE_MAX_BYTES];
static size_t line_len;

/* Masks events while the line buffer is in use, if they can be delivered at all (shared_info mapped). */
static unsigned int console_lock(void)
{
    return HYPERVISOR_shared_info != NULL ? local_events_save() : 1;
}

static void console_unlock(unsigned int saved)
{
    if (HYPERVISOR_shared_info != NULL)
        local_events_restore(saved);
}

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

static void flush_line(void)
{
    if (line_len > 0) {
        write_out(line, line_len);
        line_len = 0;
    }
}

void console_flush(void)
{
    unsigned int saved = console_lock();

    flush_line();
    console_unlock(saved);
}

void console_write(const char *s, size_t len)
{
    unsigned int saved = console_lock();

    flush_line();
    write_out(s, len);
    console_unlock(saved);
}

static void put_console(void *ctx, char c)
{
    (void)ctx;
    line[line_len++] = c;
    if (c == '\n' || line_len == sizeof(line))
        flush_line();
}

int vprintk(const char *fmt, va_list ap)
{
    unsigned int saved = console_lock();
    int n = vformat(put_console, NULL, fmt, ap);

    console_unlock(saved);
    return n;
}

long console_read(char *buf, size_t len)
{
    if (len > WRITE_CHUNK)
        len = WRITE_CHUNK;
    return HYPERVISOR_console_io(CONSOLEIO_read, len, buf);
}

static void on_console_virq(evtchn_port_t port, void *arg)
{
    (void)port;
    (void)arg;
}

void console_wait_input(void)
{
    static int bound;

    if (!bound) {
        int port = evtchn_bind_virq(VIRQ_CONSOLE);

        if (port < 0) {
            printk("console_wait_input: binding VIRQ_CONSOLE failed: %d\n", port);
            shutdown(SHUTDOWN_crash);
        }
        evtchn_set_handler((evtchn_port_t)port, on_console_virq, NULL);
        bound = 1;
    }
    local_events_disable();
    block();
}
