// The generated C headers must agree with Xen's public headers (Debian's
// libxen-dev) on every structure size, member offset and width, member
// signedness and constant value that the schemas declare.

import { describe, expect, it, beforeAll } from 'vitest';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { compareProbes, GUEST_INCLUDE, probeLayouts, tmpDir, XEN_INTERFACE_VERSION, xenHeadersPresent } from './probe-harness.js';

const haveXen = xenHeadersPresent();
if (!haveXen) {
  const msg = "Xen's public headers are not installed (/usr/include/xen/xen.h): install Debian's libxen-dev to run the ABI conformance tests";
  if (process.env.CI) throw new Error(msg + ' (CI must install it: see .ci/run)');
  console.warn('SKIP: ' + msg);
}

describe.skipIf(!haveXen)("generated headers against Xen's public headers", () => {
  let dir: string;
  let xen: Map<string, string>;
  let ours: Map<string, string>;

  beforeAll(() => {
    dir = tmpDir('conformance');
    // Two translation units from one probe source: Xen's headers from
    // /usr/include, ours from guest-kit/include (searched first with -I).
    xen = probeLayouts([`-D__XEN_INTERFACE_VERSION__=${XEN_INTERFACE_VERSION}`], dir, 'probe-xen');
    ours = probeLayouts([`-I${GUEST_INCLUDE}`], dir, 'probe-ours');
  });

  it('agree on every size, offset, width, signedness and constant', () => {
    expect(compareProbes(xen, ours)).toEqual([]);
  });

  it('cover the structures and constants the ABI needs', () => {
    const required = [
      'start_info', 'shared_info', 'vcpu_info', 'arch_vcpu_info', 'vcpu_time_info', 'arch_shared_info',
      'mmu_update', 'mmuext_op', 'trap_info', 'multicall_entry', 'evtchn_alloc_unbound', 'evtchn_bind_interdomain',
      'evtchn_bind_virq', 'evtchn_bind_ipi', 'evtchn_send', 'evtchn_close', 'evtchn_status', 'evtchn_unmask',
      'evtchn_bind_vcpu', 'sched_shutdown', 'sched_poll', 'vcpu_register_vcpu_info', 'vcpu_set_singleshot_timer',
      'xen_memory_reservation', 'xen_memory_map', 'callback_register', 'xen_feature_info', 'xencons_interface',
      'xenstore_domain_interface', 'xsd_sockmsg',
    ];
    for (const s of required) expect(xen.has(`size struct:${s}`), `struct ${s} is probed`).toBe(true);
    const constants = [
      '__HYPERVISOR_set_trap_table', '__HYPERVISOR_hypfs_op', '__HYPERVISOR_arch_7', 'XEN_EINVAL', 'XEN_ENOSYS',
      'MMUEXT_PIN_L4_TABLE', 'EVTCHNOP_bind_virq', 'SCHEDOP_poll', 'VCPUOP_register_vcpu_info',
      'XENMEM_machphys_mapping', 'XENMEM_memory_map', 'CONSOLEIO_write', 'XENVER_get_features', 'CALLBACKOP_register',
      'VMASST_TYPE_writable_pagetables', 'PHYSDEVOP_set_iopl', 'GNTTABOP_setup_table', 'GNTTABOP_query_size',
      'MMU_PT_UPDATE_PRESERVE_AD', 'UVMF_INVLPG', 'VIRQ_TIMER', 'SHUTDOWN_crash', 'XEN_ELFNOTE_HYPERCALL_PAGE',
      'SIF_MOD_START_PFN', 'XENFEAT_writable_page_tables', 'HYPERVISOR_VIRT_START', 'MACH2PHYS_VIRT_END', 'FLAT_KERNEL_CS',
    ];
    for (const c of constants) expect(xen.has(`const ${c}`), `${c} is probed`).toBe(true);
  });

  it('reports a perturbed header: a changed constant, a widened member and a moved member', () => {
    // Copy our headers, break three things (dropping the static asserts that
    // would otherwise stop the build), and check each difference is reported.
    const copy = path.join(dir, 'include');
    fs.cpSync(GUEST_INCLUDE, copy, { recursive: true });
    const sched = path.join(copy, 'xen/sched.h');
    let text = fs.readFileSync(sched, 'utf8').replace(/^_Static_assert.*$/gm, '');
    text = text.replace(/#define SCHEDOP_poll(\s+)3/, '#define SCHEDOP_poll$14');
    text = text.replace('    unsigned int nr_ports;', '    uint64_t nr_ports;');
    text = text.replace(/(struct sched_remote_shutdown \{\n(?:.*\n)*?)(\s+domid_t domain_id;)/, '$1    uint32_t pad_perturbation;\n$2');
    fs.writeFileSync(sched, text);
    const perturbed = probeLayouts([`-I${copy}`], dir, 'probe-perturbed');
    const diffs = compareProbes(xen, perturbed);
    expect(diffs).toContain('const SCHEDOP_poll: Xen 0x3, paravane 0x4');
    expect(diffs).toContain('member sched_poll.nr_ports: Xen 8 4, paravane 8 8');
    expect(diffs.some((d) => d.startsWith('member sched_remote_shutdown.domain_id: Xen 0 2'))).toBe(true);
    expect(diffs.some((d) => d.startsWith('size struct:sched_remote_shutdown'))).toBe(true);
  });
});
