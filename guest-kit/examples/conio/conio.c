/*
 * conio: an I/O-heavy workload, in one source for both kernels: LINES
 * lines of text written to the console, timed with the TSC. What one
 * character costs is the mode's I/O path: a PV kernel hands the
 * hypervisor a line per console_io hypercall; a plain kernel writes each
 * character to the serial port and polls its status (two port accesses:
 * cheap in an emulator, an exit each under hardware assist). Prints
 *   conio: <cycles per char> cycles per char (<n> chars)
 * after its lines.
 */
#include <paravane/guest.h>
#include <paravane/platform.h>

#define LINES 64u
#define WIDTH 63u   /* and the newline */

int main(start_info_t *si)
{
    char line[WIDTH + 2];
    uint64_t t;

    (void)si;
    for (unsigned int i = 0; i < WIDTH; i++)
        line[i] = (char)('a' + i % 26);
    line[WIDTH] = '\n';
    line[WIDTH + 1] = 0;
    printk("conio: platform %s\n", platform_name());
    t = platform_cycles();
    for (unsigned int l = 0; l < LINES; l++)
        printk("%s", line);
    t = platform_cycles() - t;
    printk("conio: %lu cycles per char (%u chars)\n", (unsigned long)(t / (LINES * (WIDTH + 1))), LINES * (WIDTH + 1));
    return 0;
}
