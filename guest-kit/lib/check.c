/* Checks for test and example guests: see <paravane/check.h>. */
#include <paravane/check.h>
#include <paravane/console.h>
#include <xen/errno.h>

unsigned int check_passed, check_failed;

void check_record(int ok, const char *what, const char *got, const char *expected)
{
    if (ok) {
        check_passed++;
        printk("ok %s\n", what);
    } else {
        check_failed++;
        printk("FAIL %s: got %s expected %s\n", what, got, expected);
    }
}

static const char *errno_name(long v)
{
    switch (v) {
    case -XEN_EPERM:  return "-EPERM";
    case -XEN_ENOENT: return "-ENOENT";
    case -XEN_ESRCH:  return "-ESRCH";
    case -XEN_EACCES: return "-EACCES";
    case -XEN_EFAULT: return "-EFAULT";
    case -XEN_EBUSY:  return "-EBUSY";
    case -XEN_EEXIST: return "-EEXIST";
    case -XEN_ENOSPC: return "-ENOSPC";
    case -XEN_EINVAL: return "-EINVAL";
    case -XEN_ENOSYS: return "-ENOSYS";
    default:          return NULL;
    }
}

/* A result as text: -EFAULT (-14), or the number. */
static void show(char *buf, unsigned long size, long v)
{
    const char *name = errno_name(v);

    if (name != NULL)
        snprintf(buf, size, "%s (%ld)", name, v);
    else
        snprintf(buf, size, "%ld", v);
}

void check_eq(const char *what, long got, long expected)
{
    char g[40], e[40];

    show(g, sizeof(g), got);
    show(e, sizeof(e), expected);
    check_record(got == expected, what, g, e);
}

void check_hex(const char *what, uint64_t got, uint64_t expected)
{
    char g[24], e[24];

    snprintf(g, sizeof(g), "%#lx", (unsigned long)got);
    snprintf(e, sizeof(e), "%#lx", (unsigned long)expected);
    check_record(got == expected, what, g, e);
}

void check_ge(const char *what, long got, long least)
{
    char g[40], e[40];

    show(g, sizeof(g), got);
    snprintf(e, sizeof(e), ">= %ld", least);
    check_record(got >= least, what, g, e);
}
