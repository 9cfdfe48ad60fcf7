// `paravane doctor`: can this host run guests, and how well? Reports the
// KVM device, API version, the capabilities the engine uses, the hypercall
// transports the host offers (probed) and the measured cost of one exit;
// without a usable KVM, whether the software engine runs guests instead.

import { accessSync, constants, existsSync } from 'node:fs';
import { availableParallelism, loadavg } from 'node:os';
import { selectEngine } from '../engine/select.js';
import type { Engine } from '../engine/types.js';
import { measureExitCost, probeTransports, upperHalfSlot256Usable, type TransportReport } from '../engine/host-probe.js';

export interface DoctorReport {
  device: { path: string; exists: boolean; openable: boolean; problem?: string };
  apiVersion?: number;
  runMode?: string;
  cpus: number;
  capabilities?: Record<string, number>;
  transports?: TransportReport[];
  exitCostUs?: number;
  /** The host's 1-minute load average when the exit cost was measured. */
  load?: number;
  /** Whether guests can use L4 slot 256, Xen's M2P address (else paravane reports another). */
  slot256Usable?: boolean;
  /** Whether KVM can run guests here. */
  ok: boolean;
  /** Without a usable KVM: the software engine's transports (probed), and whether it runs guests. */
  software?: { ok: boolean; transports: TransportReport[] };
}

/** The software engine, probed: what `paravane run` falls back to. */
function probeSoftware(): DoctorReport['software'] {
  const engine = selectEngine('soft');
  try {
    const transports = probeTransports(engine);
    return { ok: transports.some((t) => t.usable), transports };
  } finally {
    engine.close();
  }
}

export function runDoctor(path = '/dev/kvm'): DoctorReport {
  const report = kvmReport(path);
  if (!report.ok) report.software = probeSoftware();
  return report;
}

function kvmReport(path: string): DoctorReport {
  const report: DoctorReport = { device: { path, exists: existsSync(path), openable: false }, cpus: availableParallelism(), ok: false };
  if (!report.device.exists) {
    report.device.problem = `${path} does not exist: this host has no KVM (load the kvm module, or enable nested virtualization)`;
    return report;
  }
  let engine: Engine;
  try {
    accessSync(path, constants.R_OK | constants.W_OK);
    engine = selectEngine('kvm', { kvmPath: path });
  } catch (e) {
    const msg = (e as Error).message;
    report.device.problem = /EACCES|permission/i.test(msg)
      ? `${path} exists but cannot be opened (permission denied): add your user to its group (\`sudo usermod -aG kvm $USER\`, then log in again) or run as root`
      : msg;
    return report;
  }
  try {
    report.device.openable = true;
    const info = engine.info();
    report.apiVersion = info.apiVersion;
    report.capabilities = info.capabilities;
    report.runMode = info.runMode;
    report.transports = probeTransports(engine);
    report.exitCostUs = measureExitCost(engine) / 1000;
    report.load = loadavg()[0];
    report.slot256Usable = upperHalfSlot256Usable(engine);
    report.ok = report.transports.some((t) => t.usable);
  } finally {
    engine.close();
  }
  return report;
}

export function formatDoctor(r: DoctorReport): string {
  const lines: string[] = [];
  const row = (k: string, v: string) => lines.push(`${k.padEnd(22)}${v}`);
  row('KVM device', r.device.exists ? (r.device.openable ? `${r.device.path}: present, opened read/write` : `${r.device.path}: present, NOT usable`) : `${r.device.path}: missing`);
  if (r.device.problem) row('problem', r.device.problem);
  if (r.apiVersion !== undefined) row('KVM API version', String(r.apiVersion));
  if (r.runMode) row('engine', `kvm, KVM_RUN on ${r.runMode === 'thread' ? 'one CPU thread for all vCPUs' : 'the core thread'} (${r.cpus} CPUs)`);
  if (r.capabilities) {
    lines.push('capabilities');
    for (const [k, v] of Object.entries(r.capabilities)) lines.push(`  ${k.padEnd(34)}${v}`);
  }
  if (r.transports) {
    lines.push('hypercall transports (probed)');
    for (const t of r.transports) lines.push(`  ${t.usable ? 'yes' : 'no '}  ${t.name}: ${t.behaviour}`);
  }
  if (r.slot256Usable !== undefined) {
    row('M2P address', r.slot256Usable
      ? 'Xen\'s (0xffff800000000000): guests can use L4 slot 256'
      : 'guests cannot use L4 slot 256 here; XENMEM_machphys_mapping reports 0xffff810000000000 instead (guests that hard-code Xen\'s address cannot read the M2P)');
  }
  if (r.exitCostUs !== undefined) row('exit cost', `${r.exitCostUs.toFixed(1)} us median round trip (port I/O exit, 2000 samples)`);
  const warning = exitCostWarning(r);
  if (warning) row('warning', warning);
  if (r.software) {
    lines.push('software engine (probed)');
    for (const t of r.software.transports) lines.push(`  ${t.usable ? 'yes' : 'no '}  ${t.name}: ${t.behaviour}`);
  }
  row('verdict', r.ok ? 'this host can run paravane guests on KVM'
    : r.software?.ok ? 'this host cannot run paravane guests on KVM; the software engine runs them, hundreds of times slower (paravane run picks it where the device does not exist; --engine soft otherwise)'
      : 'this host cannot run paravane guests');
  return lines.join('\n') + '\n';
}

/** An exit this slow makes guests slow; above this, doctor says so. */
export const SLOW_EXIT_US = 100;

/**
 * What a slow exit (or a busy host) means for the verdict: guests run, but
 * every hypercall and trap costs that much, timing-sensitive guests lose
 * ticks, and figures measured now are not the host's.
 */
export function exitCostWarning(r: Pick<DoctorReport, 'exitCostUs' | 'load' | 'cpus'>): string | undefined {
  if (r.exitCostUs === undefined) return undefined;
  const busy = r.load !== undefined && r.load >= r.cpus;
  if (r.exitCostUs < SLOW_EXIT_US && !busy) return undefined;
  const why = busy ? `the host is busy (load average ${r.load!.toFixed(1)} on ${r.cpus} CPUs)` : 'the host or its KVM is slow';
  return `an exit costs ${r.exitCostUs.toFixed(0)} us (KVM hosts measured here took 18-58 us): ${why}. Guests run, but every hypercall and trap costs that much, `
    + 'a guest counting timer ticks loses some, and benchmarks taken now measure the load; run doctor again when the host is quiet';
}
