/*
 * hypercalls: calls each hypercall the hypervisor implements, with good
 * arguments and with deliberately bad ones, and prints one line per check:
 * "ok <what>" or "FAIL <what>: got <x> expected <y>", then
 * "hypercalls: <n> ok, <m> failed (transport <t>)". Returns 0 (poweroff)
 * when every check passed, 1 (crash) otherwise. Expectations are those of
 * Xen 4.17 towards an unprivileged PV domU.
 */
#include <paravane/guest.h>
#include <paravane/check.h>

/* Addresses no hypercall may accept as a buffer. */
#define NON_CANONICAL    0x0000800000000000UL  /* first address past the lower half */
#define LOWER_HALF_END   0x00007ffffffffff0UL  /* 64 bytes from here cross into it */
#define HYPERVISOR_HOLE  HYPERVISOR_VIRT_START /* readable M2P, but Xen's, not ours */
#define WRAPPING         0xfffffffffffffff0UL  /* 64 bytes from here wrap to 0 */

/*
 * A string field of size bytes that a hypercall filled, after the caller
 * pre-filled it with 0xff: a NUL within the field and zeros after it.
 */
static void check_string(const char *name, const char *s, size_t size)
{
    size_t len = strnlen(s, size), i;
    char what[128], got[64];

    snprintf(what, sizeof(what), "%s is a NUL-terminated, zero-filled string \"%.*s\"",
             name, (int)len, s);
    if (len == size) {
        snprintf(got, sizeof(got), "no NUL in %zu bytes", size);
        check_record(0, what, got, "a NUL");
        return;
    }
    for (i = len + 1; i < size; i++) {
        if (s[i] != 0) {
            snprintf(got, sizeof(got), "byte %zu (after the NUL) = %#x", i, (unsigned char)s[i]);
            check_record(0, what, got, "0");
            return;
        }
    }
    check_record(1, what, "", "");
}

/* The bytes past a structure the hypervisor filled are still 0xff. */
static void check_untouched(const char *name, const char *buf, size_t from, size_t to)
{
    char what[96], got[64];
    size_t i;

    snprintf(what, sizeof(what), "%s writes no byte past its %zu-byte structure", name, from);
    for (i = from; i < to; i++) {
        if ((unsigned char)buf[i] != 0xff) {
            snprintf(got, sizeof(got), "byte %zu = %#x", i, (unsigned char)buf[i]);
            check_record(0, what, got, "0xff");
            return;
        }
    }
    check_record(1, what, "", "");
}

static char big[XEN_CAPABILITIES_INFO_LEN + 64];

/* A XENVER_* sub-command that fills a string of `size` bytes. */
static void xen_version_string(unsigned int cmd, const char *name, size_t size)
{
    char what[64];
    long rc;

    memset(big, 0xff, sizeof(big));
    rc = HYPERVISOR_xen_version(cmd, big);
    snprintf(what, sizeof(what), "%s returns 0", name);
    check_eq(what, rc, 0);
    if (rc != 0)
        return;
    check_string(name, big, size);
    check_untouched(name, big, size, size + 64);
}

static void test_console_io(void)
{
    static char msg[] = "console_io: a direct CONSOLEIO_write\n";
    char in[16];

    console_flush();
    check_eq("console_io write", HYPERVISOR_console_io(CONSOLEIO_write, sizeof(msg) - 1, msg), 0);
    check_eq("console_io read (no input)", HYPERVISOR_console_io(CONSOLEIO_read, sizeof(in), in), 0);
    check_eq("console_io unknown cmd 99", HYPERVISOR_console_io(99, 0, msg), -XEN_EINVAL);

    check_eq("console_io write from NULL",
             HYPERVISOR_console_io(CONSOLEIO_write, 16, NULL), -XEN_EFAULT);
    check_eq("console_io write from a non-canonical address",
             HYPERVISOR_console_io(CONSOLEIO_write, 16, (void *)NON_CANONICAL), -XEN_EFAULT);
    check_eq("console_io write across the end of the lower half",
             HYPERVISOR_console_io(CONSOLEIO_write, 64, (void *)LOWER_HALF_END), -XEN_EFAULT);
    check_eq("console_io write from the hypervisor hole",
             HYPERVISOR_console_io(CONSOLEIO_write, 16, (void *)HYPERVISOR_HOLE), -XEN_EFAULT);
    check_eq("console_io write from a range that wraps",
             HYPERVISOR_console_io(CONSOLEIO_write, 64, (void *)WRAPPING), -XEN_EFAULT);
}

static void test_xen_version(void)
{
    char what[128], got[64];
    long rc, version;
    unsigned int i;

    version = HYPERVISOR_xen_version(XENVER_version, NULL);
    snprintf(what, sizeof(what), "xen_version version %ld.%ld has major >= 4",
             version >> 16, version & 0xffff);
    check_ge(what, version >> 16, 4);

    xen_version_string(XENVER_extraversion, "xen_version extraversion", XEN_EXTRAVERSION_LEN);
    xen_version_string(XENVER_capabilities, "xen_version capabilities", XEN_CAPABILITIES_INFO_LEN);
    snprintf(got, sizeof(got), "\"%.20s\"", big);
    check_record(strncmp(big, "xen-3.0-x86_64", 14) == 0,
           "xen_version capabilities start with xen-3.0-x86_64", got, "\"xen-3.0-x86_64...\"");
    xen_version_string(XENVER_changeset, "xen_version changeset", XEN_CHANGESET_INFO_LEN);

    {
        struct xen_compile_info *ci = (struct xen_compile_info *)big;

        memset(big, 0xff, sizeof(big));
        rc = HYPERVISOR_xen_version(XENVER_compile_info, ci);
        check_eq("xen_version compile_info returns 0", rc, 0);
        if (rc == 0) {
            check_string("compile_info.compiler", ci->compiler, sizeof(ci->compiler));
            check_string("compile_info.compile_by", ci->compile_by, sizeof(ci->compile_by));
            check_string("compile_info.compile_domain", ci->compile_domain, sizeof(ci->compile_domain));
            check_string("compile_info.compile_date", ci->compile_date, sizeof(ci->compile_date));
            check_untouched("xen_version compile_info", big, sizeof(*ci), sizeof(*ci) + 64);
        }
    }

    {
        xen_platform_parameters_t pp = { 0 };

        check_eq("xen_version platform_parameters returns 0",
                 HYPERVISOR_xen_version(XENVER_platform_parameters, &pp), 0);
        check_hex("xen_version platform_parameters virt_start == HYPERVISOR_VIRT_START",
                  pp.virt_start, HYPERVISOR_VIRT_START);
    }

    {
        xen_feature_info_t fi = { .submap_idx = 0, .submap = 0xffffffff };

        rc = HYPERVISOR_xen_version(XENVER_get_features, &fi);
        snprintf(what, sizeof(what), "xen_version get_features submap 0 (= %#x) returns 0", fi.submap);
        check_eq(what, rc, 0);
    }

    check_eq("xen_version pagesize", HYPERVISOR_xen_version(XENVER_pagesize, NULL), 4096);

    {
        xen_domain_handle_t h;
        int n;

        memset(h, 0xff, sizeof(h));
        rc = HYPERVISOR_xen_version(XENVER_guest_handle, h);
        n = snprintf(what, sizeof(what), "xen_version guest_handle ");
        for (i = 0; i < sizeof(h); i++)
            n += snprintf(what + n, sizeof(what) - n, "%02x%s", h[i],
                          i == 3 || i == 5 || i == 7 || i == 9 ? "-" : "");
        snprintf(what + n, sizeof(what) - n, " returns 0");
        check_eq(what, rc, 0);
    }

    check_eq("xen_version unknown sub-op 999", HYPERVISOR_xen_version(999, NULL), -XEN_ENOSYS);

    check_eq("xen_version extraversion into NULL",
             HYPERVISOR_xen_version(XENVER_extraversion, NULL), -XEN_EFAULT);
    check_eq("xen_version extraversion into a non-canonical address",
             HYPERVISOR_xen_version(XENVER_extraversion, (void *)NON_CANONICAL), -XEN_EFAULT);
    check_eq("xen_version capabilities into the hypervisor hole",
             HYPERVISOR_xen_version(XENVER_capabilities, (void *)HYPERVISOR_HOLE), -XEN_EFAULT);
}

static void test_sched_op(void)
{
    check_eq("sched_op yield", HYPERVISOR_sched_op(SCHEDOP_yield, NULL), 0);
    check_eq("sched_op unknown cmd 999", HYPERVISOR_sched_op(999, NULL), -XEN_ENOSYS);
    check_eq("sched_op shutdown with a NULL argument",
             HYPERVISOR_sched_op(SCHEDOP_shutdown, NULL), -XEN_EFAULT);
    /* Reaching this line is the check: the bad shutdown did not end the domain. */
    check_record(1, "the domain still runs after the failed shutdown", "", "");
}

static void test_vm_assist(void)
{
    check_eq("vm_assist enable writable_pagetables",
             HYPERVISOR_vm_assist(VMASST_CMD_enable, VMASST_TYPE_writable_pagetables), 0);
    check_eq("vm_assist enable runstate_update_flag",
             HYPERVISOR_vm_assist(VMASST_CMD_enable, VMASST_TYPE_runstate_update_flag), 0);
    check_eq("vm_assist enable unknown type 31",
             HYPERVISOR_vm_assist(VMASST_CMD_enable, 31), -XEN_EINVAL);
    check_eq("vm_assist unknown cmd 99",
             HYPERVISOR_vm_assist(99, VMASST_TYPE_writable_pagetables), -XEN_ENOSYS);
}

static void test_memory_op(void)
{
    struct xen_memory_domain dom = { .domid = DOMID_SELF };
    struct xen_machphys_mapping m;
    struct xen_memory_map map;
    char e820[20 * 8];
    long cur, max, rc;

    cur = HYPERVISOR_memory_op(XENMEM_current_reservation, &dom);
    check_eq("memory_op current_reservation(DOMID_SELF) == start_info nr_pages",
             cur, (long)start_info->nr_pages);
    max = HYPERVISOR_memory_op(XENMEM_maximum_reservation, &dom);
    check_ge("memory_op maximum_reservation(DOMID_SELF) >= current_reservation", max, cur);
    /* Domain 0 is the control domain (paravane's core), never a guest:
     * a guest may not query it. (Any fixed domU id could be this guest.) */
    dom.domid = 0;
    check_eq("memory_op current_reservation of domain 0 (not ours)",
             HYPERVISOR_memory_op(XENMEM_current_reservation, &dom), -XEN_EPERM);

    memset(&m, 0, sizeof(m));
    rc = HYPERVISOR_memory_op(XENMEM_machphys_mapping, &m);
    check_eq("memory_op machphys_mapping returns 0", rc, 0);
    /* Xen's address, or (where the host reserves that range) another place
     * in the hypervisor's area: guests are to use what this returns. */
    check_record(m.v_start == MACH2PHYS_VIRT_START ||
           (m.v_start >= HYPERVISOR_VIRT_START && m.v_start < HYPERVISOR_VIRT_END),
           "memory_op machphys_mapping v_start is in the hypervisor's area", "", "");
    check_hex("memory_op machphys_mapping spans MACH2PHYS_VIRT_END - MACH2PHYS_VIRT_START",
              m.v_end - m.v_start, MACH2PHYS_VIRT_END - MACH2PHYS_VIRT_START);
    check_ge("memory_op machphys_mapping max_mfn > 0", (long)m.max_mfn, 1);
    {
        /* The M2P there maps the frame of the guest's pfn 0 back to pfn 0. */
        const uint64_t *p2m = (const uint64_t *)start_info->mfn_list;
        const uint64_t *m2p = (const uint64_t *)m.v_start;
        check_hex("the M2P at v_start maps pfn 0's frame back to pfn 0", m2p[p2m[0]], 0);
    }

    map.nr_entries = sizeof(e820) / 20;
    set_xen_guest_handle(map.buffer, e820);
    check_eq("memory_op memory_map (none set for a domU)",
             HYPERVISOR_memory_op(XENMEM_memory_map, &map), -XEN_ENOSYS);

    check_eq("memory_op current_reservation with a NULL argument",
             HYPERVISOR_memory_op(XENMEM_current_reservation, NULL), -XEN_EFAULT);
}

static void test_pvbench_op(void)
{
    struct pvbench_echo echo = { .value = 41, .result = 0 };
    char got[24];

    check_eq("pvbench_op nop", HYPERVISOR_pvbench_op(PVBENCHOP_nop, NULL), 0);
    check_eq("pvbench_op echo returns 0", HYPERVISOR_pvbench_op(PVBENCHOP_echo, &echo), 0);
    snprintf(got, sizeof(got), "%lu", (unsigned long)echo.result);
    check_record(echo.value == 41 && echo.result == 42, "pvbench_op echo 41 gives 42", got, "42");
    check_eq("pvbench_op echo with a NULL argument",
             HYPERVISOR_pvbench_op(PVBENCHOP_echo, NULL), -XEN_EFAULT);
    /* Results of every width come back whole, whatever the transport (the
     * page path returns 32-bit results and wider ones differently). */
    check_hex("pvbench_op ret 0x123456789abcdef0",
              (unsigned long)HYPERVISOR_pvbench_op(PVBENCHOP_ret, (void *)0x123456789abcdef0UL), 0x123456789abcdef0UL);
    check_eq("pvbench_op ret INT32_MIN",
             HYPERVISOR_pvbench_op(PVBENCHOP_ret, (void *)(long)-0x80000000L), -0x80000000L);
    check_eq("pvbench_op ret INT32_MAX",
             HYPERVISOR_pvbench_op(PVBENCHOP_ret, (void *)0x7fffffffL), 0x7fffffffL);
}

static void test_unknown_hypercalls(void)
{
    /* volatile: the number is not a compile-time constant, so the page
     * transport computes the stub's address instead of calling it directly. */
    volatile unsigned long nr;

    check_eq("hypercall 60 (unassigned)", hypercall(60, 0, 0, 0, 0, 0), -XEN_ENOSYS);
    check_eq("hypercall 127 (last stub)", hypercall(127, 0, 0, 0, 0, 0), -XEN_ENOSYS);
    nr = 63;
    check_eq("hypercall 63 by a run-time number", hypercall(nr, 0, 0, 0, 0, 0), -XEN_ENOSYS);
    nr = __HYPERVISOR_pvbench_op;
    check_eq("pvbench_op nop by a run-time number",
             hypercall(nr, PVBENCHOP_nop, 0, 0, 0, 0), 0);
}

int main(start_info_t *si)
{
    (void)si;
    printk("hypercalls: testing with the %s transport\n", hypercall_transport());
    test_console_io();
    test_xen_version();
    test_sched_op();
    test_vm_assist();
    test_memory_op();
    test_pvbench_op();
    test_unknown_hypercalls();
    printk("hypercalls: %u ok, %u failed (transport %s)\n", check_passed, check_failed,
           hypercall_transport());
    return check_failed == 0 ? 0 : 1;
}
