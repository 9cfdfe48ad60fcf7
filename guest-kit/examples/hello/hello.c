/*
 * hello: the smallest useful guest. It prints a greeting, what the domain
 * builder put in start_info and the hypervisor's version, then returns 0,
 * which powers the domain off. The first three lines are matched by tests.
 */
#include <paravane/guest.h>

extern char _text[], _end[];

int main(start_info_t *si)
{
    xen_extraversion_t extra;
    long version, rc;

    printk("Hello from paravane!\n");
    printk("start_info: magic=%.*s nr_pages=%lu cmdline=\"%.*s\"\n",
           (int)sizeof(si->magic), si->magic, si->nr_pages,
           (int)sizeof(si->cmd_line), (const char *)si->cmd_line);

    version = HYPERVISOR_xen_version(XENVER_version, NULL);
    memset(extra, 0, sizeof(extra));
    rc = HYPERVISOR_xen_version(XENVER_extraversion, extra);
    if (rc != 0)
        printk("xen_version: XENVER_extraversion failed: %ld\n", rc);
    printk("xen_version: %ld.%ld%.*s\n", version >> 16, version & 0xffff,
           (int)sizeof(extra), extra);

    printk("hypercall transport: %s\n", hypercall_transport());
    printk("kernel: %p-%p, hypercall page %p\n", (void *)_text, (void *)_end,
           (void *)hypercall_page);
    printk("shared_info: machine address %#lx\n", si->shared_info);
    printk("page tables: pt_base=%p nr_pt_frames=%lu\n", (void *)si->pt_base,
           si->nr_pt_frames);
    printk("mfn_list=%p flags=%#x\n", (void *)si->mfn_list, si->flags);
    printk("xenstore: mfn=%#lx evtchn=%u\n", si->store_mfn, si->store_evtchn);
    printk("console: mfn=%#lx evtchn=%u\n", si->console.domU.mfn,
           si->console.domU.evtchn);
    if (si->mod_len != 0)
        printk("module: start=%p len=%lu\n", (void *)si->mod_start, si->mod_len);
    printk("Goodbye.\n");
    return 0;
}
