/*
 * The host build of a kit workload: the same source run as an ordinary
 * Linux process, the native-speed reference a PV or plain kernel's figures
 * are compared with (bench pvfv's "host" mode). Only workloads that use
 * nothing but printk, main's return and the TSC can run so (compute).
 * Built with the host's compiler and C library: gcc -Dmain=workload_main
 * (the workload's `int main(start_info_t *)` becomes workload_main), this
 * file providing printk and the real main.
 */
#include <stdarg.h>
#include <stdio.h>

struct start_info;
int workload_main(struct start_info *si);

int printk(const char *fmt, ...)
{
    va_list ap;
    int n;

    va_start(ap, fmt);
    n = vprintf(fmt, ap);
    va_end(ap);
    return n;
}

#undef main
int main(void)
{
    int rc = workload_main(0);

    fflush(stdout);
    return rc;
}
