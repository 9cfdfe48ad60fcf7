/*
 * mmubench: the cost of validated page-table updates from a guest
 * (`npm run bench -- mmu`). It builds an L1 table of its own for a spare
 * 2 MiB of address space (the domain's last page, pinned and hooked into
 * the kernel's L2), maps pages of its slack there, then toggles the RW bit
 * of those entries, so every request takes or drops a writable type
 * reference: the full validation path, not Xen's fast path. (Its own L1,
 * so that what the hypervisor makes the engine forget is only that table,
 * as for a kernel updating some mappings, not the ones it runs on.) Each round
 * times one mmu_update of 1, 64, 512 and 2048 requests, one multicall of a
 * 512-request mmu_update and MMUEXT_TLB_FLUSH_LOCAL, and a null hypercall
 * (pvbench_op nop) after each, with rdtsc. It writes the TSC counts to the
 * console as raw 64-bit words: rounds, columns, then per round the five
 * calls and the five null hypercalls; then it powers off.
 */
#include <paravane/guest.h>
#include <paravane/mmu.h>

#define SLACK_PAGES   96            /* of the >= 128 guaranteed after the boot stack */
#define MAX_BATCH     2048
#define ROUNDS        40
/* Per round: the four batch sizes, 512 with a flush, then a null hypercall after each. */
#define COLUMNS       10

static struct mmu_update reqs[MAX_BATCH];
static uint64_t out[2 + ROUNDS * COLUMNS];
static struct mmuext_op flush = { .cmd = MMUEXT_TLB_FLUSH_LOCAL };

static inline uint64_t rdtsc(void)
{
    uint32_t lo, hi;
    asm volatile("rdtsc" : "=a"(lo), "=d"(hi));
    return ((uint64_t)hi << 32) | lo;
}

int main(start_info_t *si)
{
    const uint64_t *p2m = (const uint64_t *)si->mfn_list;
    unsigned long pt_pfn = (si->pt_base - VIRT_BASE) >> 12;
    /* Bootstrap tables: L4, L3, L2, then the L1s (one L3 and one L2 here). */
    unsigned long first_l1 = pt_pfn + 3, nr_l1 = si->nr_pt_frames - 3;
    /* The boot stack follows the tables; the slack follows the stack. */
    unsigned long slack = pt_pfn + si->nr_pt_frames + 1;
    static const unsigned sizes[4] = { 1, 64, 512, 2048 };
    unsigned int done; /* *pdone is an unsigned int (Xen) */
    int rw = 0;

    if (slack + SLACK_PAGES > nr_l1 * 512) {
        printk("mmubench: the slack is not mapped by the bootstrap L1s\n");
        return 1;
    }
    /* The new L1: the domain's last page (beyond the initial mapping, so
     * nothing maps it writable), pinned, then hooked into L2 entry 8. */
    uint64_t l1 = p2m[si->nr_pages - 1];
    uint64_t l2 = p2m[pt_pfn + 2];
    struct mmuext_op pin = { .cmd = MMUEXT_PIN_L1_TABLE, .arg1.mfn = l1 };
    long rc = HYPERVISOR_mmuext_op(&pin, 1, NULL, DOMID_SELF);
    if (rc == 0) {
        reqs[0].ptr = (l2 << 12) + 8 * 8;
        reqs[0].val = (l1 << 12) | 0x27;
        rc = HYPERVISOR_mmu_update(reqs, 1, NULL, DOMID_SELF);
    }
    if (rc != 0) {
        printk("mmubench: could not set up its L1: %ld\n", rc);
        return 1;
    }
    (void)first_l1;
    /* Rounds interleave the sizes and a null hypercall, so that noise
     * hits all alike; every call is timed on its own (the host takes
     * medians). The last column is a 512-request batch and a TLB flush in
     * one multicall, as a kernel issues them: the flush is what makes the
     * hypervisor forget the translations the batch took away. */
    for (int r = 0; r < ROUNDS; r++) {
        for (int s = 0; s < 5; s++) {
            unsigned n = s < 4 ? sizes[s] : 512;
            rw ^= 1;
            for (unsigned i = 0; i < n; i++) {
                unsigned long pfn = slack + i % SLACK_PAGES;
                reqs[i].ptr = (l1 << 12) + (i % SLACK_PAGES) * 8;          /* MMU_NORMAL_PT_UPDATE */
                reqs[i].val = (p2m[pfn] << 12) | 0x25 | ((i / SLACK_PAGES + rw) & 1 ? 2 : 0);
            }
            uint64_t t0 = rdtsc();
            long rc;
            if (s < 4) {
                rc = HYPERVISOR_mmu_update(reqs, n, &done, DOMID_SELF);
            } else {
                multicall_entry_t mc[2] = {
                    { .op = __HYPERVISOR_mmu_update, .args = { (unsigned long)reqs, n, (unsigned long)&done, DOMID_SELF } },
                    { .op = __HYPERVISOR_mmuext_op, .args = { (unsigned long)&flush, 1, 0, DOMID_SELF } },
                };
                rc = HYPERVISOR_multicall(mc, 2);
                if (rc == 0 && (mc[0].result != 0 || mc[1].result != 0)) rc = mc[0].result ? (long)mc[0].result : (long)mc[1].result;
            }
            out[2 + r * COLUMNS + s] = rdtsc() - t0;
            if (rc != 0 || done != n) {
                printk("mmubench: mmu_update of %u requests failed: %ld (done %u)\n", n, rc, done);
                return 1;
            }
            t0 = rdtsc();
            HYPERVISOR_pvbench_op(PVBENCHOP_nop, NULL);
            out[2 + r * COLUMNS + 5 + s] = rdtsc() - t0;
        }
    }
    out[0] = ROUNDS;
    out[1] = COLUMNS;
    console_write((const char *)out, sizeof(out));
    return 0;
}
