// `paravane doctor` tells whether this host can run guests and, if not, why
// and how to fix it; on a KVM host it probes the hypercall transports.

import { describe, expect, it } from 'vitest';
import { spawnSync } from 'node:child_process';
import * as path from 'node:path';
import { HAVE_KVM } from '../support/kvm-gate.js';
import { exitCostWarning, formatDoctor } from '../../src/cli/doctor.js';

const BIN = path.resolve(import.meta.dirname, '../../bin/paravane.js');

function doctor(...args: string[]) {
  const r = spawnSync(process.execPath, [BIN, 'doctor', ...args], { encoding: 'utf8' });
  return { code: r.status, out: r.stdout, err: r.stderr };
}

describe('paravane doctor', () => {
  it('says a missing KVM device is missing, and fails', () => {
    const r = doctor('--kvm', '/nonexistent/kvm');
    expect(r.code).toBe(1);
    expect(r.out).toContain('/nonexistent/kvm does not exist');
    expect(r.out).toContain('cannot run paravane guests on KVM; the software engine runs them');
    // The software engine's transports are probed, not assumed.
    expect(r.out).toMatch(/software engine \(probed\)\n {2}yes {2}hypercall page stub/);
  });

  it('says a device that is not KVM is not KVM, and fails', () => {
    const r = doctor('--kvm', '/dev/null', '--json');
    expect(r.code).toBe(1);
    const j = JSON.parse(r.out) as { ok: boolean; device: { problem: string } };
    expect(j.ok).toBe(false);
    expect(j.device.problem).toMatch(/not a KVM device/);
  });

  it.skipIf(!HAVE_KVM)('reports the API version, capabilities, probed transports and the exit cost', () => {
    const r = doctor('--json');
    expect(r.code).toBe(0);
    const j = JSON.parse(r.out) as {
      ok: boolean; apiVersion: number; capabilities: Record<string, number>;
      transports: Array<{ name: string; usable: boolean; behaviour: string }>; exitCostUs: number;
    };
    expect(j.ok).toBe(true);
    expect(j.apiVersion).toBe(12);
    expect(j.capabilities.KVM_CAP_SYNC_REGS! & 1).toBe(1);
    expect(j.transports.map((t) => t.name)).toEqual([
      'hypercall page stub (port I/O exit via the TSS bitmap)', 'vmcall at CPL 3', 'vmmcall at CPL 3', 'syscall at CPL 3',
    ]);
    expect(j.transports[0]!.usable).toBe(true);
    expect(j.exitCostUs).toBeGreaterThan(0.1);
    expect(j.exitCostUs).toBeLessThan(10_000);
  });
});

describe('paravane doctor: what a slow exit means', () => {
  it('says nothing for a quick exit on a quiet host', () => {
    expect(exitCostWarning({ exitCostUs: 25, load: 0.3, cpus: 2 })).toBeUndefined();
    expect(exitCostWarning({ cpus: 2 })).toBeUndefined();
  });

  it('warns when an exit is slow, and says the host is busy when its load is as high as its CPUs', () => {
    expect(exitCostWarning({ exitCostUs: 673, load: 0.5, cpus: 2 })).toMatch(/^an exit costs 673 us .*: the host or its KVM is slow\. Guests run, but/);
    expect(exitCostWarning({ exitCostUs: 73, load: 3.2, cpus: 2 })).toMatch(/the host is busy \(load average 3\.2 on 2 CPUs\).*run doctor again when the host is quiet/);
    const text = formatDoctor({ device: { path: '/dev/kvm', exists: true, openable: true }, cpus: 2, ok: true, exitCostUs: 300, load: 0.1 });
    expect(text).toMatch(/^warning +an exit costs 300 us/m);
    expect(text).toMatch(/^verdict +this host can run paravane guests on KVM$/m);
  });
});
