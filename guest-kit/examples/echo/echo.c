/*
 * echo: console input, the kit's way (<paravane/console.h>): reads what
 * the host types (`paravane run`'s stdin) with console_read(), waits for
 * more with console_wait_input() (under PV: blocked until VIRQ_CONSOLE),
 * and answers each line with "echo: <line>". The line "quit" powers off.
 * Prints "echo: type a line; quit ends" first.
 */
#include <paravane/guest.h>

#define LINE_MAX 128

int main(start_info_t *si)
{
    char line[LINE_MAX + 1], buf[64];
    size_t len = 0;

    (void)si;
    printk("echo: type a line; quit ends\n");
    for (;;) {
        long n = console_read(buf, sizeof(buf));

        if (n < 0) {
            printk("echo: console_read failed: %ld\n", n);
            return 1;
        }
        if (n == 0) {
            console_wait_input();
            continue;
        }
        for (long i = 0; i < n; i++) {
            char c = buf[i];

            if (c == '\r' || c == '\n') {
                line[len] = '\0';
                if (len == 4 && memcmp(line, "quit", 4) == 0) {
                    printk("echo: bye\n");
                    return 0;
                }
                if (len > 0)
                    printk("echo: %s\n", line);
                len = 0;
            } else if (len < LINE_MAX) {
                line[len++] = c;
            }
        }
    }
}
