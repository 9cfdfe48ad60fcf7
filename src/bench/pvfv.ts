// `npm run bench -- pvfv`: the guest kit's workloads that build as both a
// PV kernel and a plain one (and, for compute, as a host process: the
// native-speed reference) (compute, nano, ptemod, conio, aspace, ctxsw,
// ticks: docs/guest-kit.md), run in
// every mode this host offers: the PV kernel under paravane (`paravane
// run`, on KVM), and the plain kernel under QEMU's emulator (TCG) and QEMU
// with KVM, where qemu-system-x86_64 is installed. Each workload times
// itself with the TSC and prints its figures; each mode runs each
// workload `runs` times, alternating, and the medians are printed side by
// side with their ratio to PV. A mode that cannot run here says why.

import { execFile } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';
import { median } from './stats.js';

const ROOT = fileURLToPath(new URL('../..', import.meta.url));
const GUESTS = path.join(ROOT, 'build/guests');
const CLI = path.join(ROOT, 'dist/cli/main.js');
const QEMU = 'qemu-system-x86_64';

/** The workloads, by the name of their kit example (PV: <name>.elf; plain: <name>-native.elf). */
export const PVFV_WORKLOADS = ['compute', 'nano', 'ptemod', 'mmap', 'conio', 'aspace', 'ctxsw', 'ticks'] as const;

export interface PvfvOptions {
  runs: number;
  /** The limit for one run, seconds. */
  limitSeconds: number;
  kvm: string;
}

/** One way to run a workload: a command, and the exit status that means it powered off. */
export interface Mode {
  name: string;
  /** What it is, for the table's legend. */
  what: string;
  /** The workload alone, or with `busy` CPU-bound neighbours in the same command (paravane: more domains). */
  command: (workload: string, busy?: number) => [string, string[]];
  /** A CPU-bound neighbour as a process of its own, where neighbours are not domains of the same command (QEMU). */
  neighbour?: () => [string, string[]];
  /** The workloads it can run (default: all). */
  workloads?: readonly string[];
  poweroffStatus: number;
  skipped?: string;
}

/** QEMU's exit status when a plain kernel powers off: isa-debug-exit's 2 * 0x10 + 1 (guest-kit/native/platform.c), never QEMU's own. */
export const NATIVE_POWEROFF_STATUS = 33;

/** The workloads that also build as a Linux process (guest-kit's HOST: <name>-host). */
export const HOST_WORKLOADS = ['compute'] as const;

/** The busy neighbours the ticks workload is also run beside (the issue's "two busy domains"). */
export const BUSY_NEIGHBOURS = 2;

export interface ModeResult {
  name: string;
  what: string;
  skipped?: string;
  /** Why a run failed (the mode's remaining runs are not made). */
  problem?: string;
  /** Median cycles by measure ("compute", "nano divide error", ...). */
  cycles: Record<string, number>;
  runs: number;
}

export interface PvfvResult {
  runs: number;
  modes: ModeResult[];
}

/**
 * The figures a workload printed: "compute: N cycles", "nano: <op> N
 * cycles per op", "ptemod: <how> N cycles per entry", "conio: N cycles
 * per char", "aspace: <what> N cycles per round", "ctxsw: switch N
 * cycles per switch", and the ticks lost ("ticks: ... lost N", a count,
 * not cycles), by measure. Console noise before the workload's own text
 * on a line (firmware output on a serial console) and \r are ignored.
 */
export function parseCycles(out: string): Record<string, number> {
  const found: Record<string, number> = {};
  for (const raw of out.split('\n')) {
    const line = raw.replace(/\r$/, '');
    const at = Math.max(...['compute: ', 'nano: ', 'ptemod: ', 'mmap: ', 'conio: ', 'aspace: ', 'ctxsw: ', 'ticks: '].map((w) => line.indexOf(w)));
    if (at < 0) continue;
    const text = line.slice(at);
    let m = /^compute: (\d+) cycles$/.exec(text);
    if (m) found.compute = Number(m[1]);
    m = /^conio: (\d+) cycles per char/.exec(text);
    if (m) found.conio = Number(m[1]);
    // Not cycles: the ticks a 1 kHz tick lost in 300 ms (a count; the report's charts leave it out).
    m = /^ticks: \d+ of \d+ ticks of \d+ us in \d+ ms, lost (\d+)/.exec(text);
    if (m) found['ticks lost'] = Number(m[1]);
    m = /^(nano|ptemod|mmap|aspace|ctxsw): (.+?) (\d+) cycles per (?:op|entry|round|switch)/.exec(text);
    if (m) found[`${m[1]} ${m[2]}`] = Number(m[3]);
  }
  return found;
}

export function pvfvModes(o: Pick<PvfvOptions, 'kvm'>, haveQemu: boolean): Mode[] {
  const haveKvm = fs.existsSync(o.kvm);
  const noQemu = `${QEMU} is not installed (Debian: qemu-system-x86)`;
  const qemu = (accel: string) => (w: string): [string, string[]] => [QEMU, ['-accel', accel, '-m', '64', '-nographic', '-no-reboot',
    '-kernel', path.join(GUESTS, `${w}-native.elf`), '-device', 'isa-debug-exit,iobase=0xf4,iosize=0x04', ...(accel === 'kvm' ? ['-cpu', 'host'] : [])]];
  const elf = (w: string) => path.join(GUESTS, `${w}.elf`);
  const native = (w: string) => path.join(GUESTS, `${w}-native.elf`);
  return [
    {
      name: 'host', what: 'the workload as a Linux process on the host, compiled as the kernels are (the native-speed reference)',
      command: (w) => [path.join(GUESTS, `${w}-host`), []], poweroffStatus: 0, workloads: HOST_WORKLOADS,
    },
    {
      name: 'pv', what: 'the PV kernel under paravane (KVM, guest kernel at CPL 3, hypercalls)',
      command: (w, busy = 0) => [process.execPath, [CLI, 'run', elf(w), ...Array.from({ length: busy }, () => elf('spin')), '--engine', 'kvm', '--kvm', o.kvm]], poweroffStatus: 0,
      skipped: haveKvm ? undefined : `no ${o.kvm}`,
    },
    {
      // Runs everywhere: the only paravane mode on a host without /dev/kvm.
      name: 'pv-soft', what: 'the PV kernel under paravane\'s software engine (an interpreter; its TSC ticks are nanoseconds, not host cycles)',
      command: (w, busy = 0) => [process.execPath, [CLI, 'run', elf(w), ...Array.from({ length: busy }, () => elf('spin')), '--engine', 'soft']], poweroffStatus: 0,
    },
    {
      // The plain kernel deprivileged under paravane's core: trap-and-emulate with shadow page tables (src/hv/fv/).
      name: 'fv-trap', what: 'the plain kernel under paravane on KVM at CPL 3, every privileged instruction trapped and emulated, its page tables shadowed',
      command: (w, busy = 0) => [process.execPath, [CLI, 'run', '--mode', 'fv-trap', native(w), ...Array.from({ length: busy }, () => native('spin')), '--engine', 'kvm', '--kvm', o.kvm]], poweroffStatus: 0,
      skipped: haveKvm ? undefined : `no ${o.kvm}`,
    },
    {
      name: 'fv-trap-soft', what: 'the same on paravane\'s software engine (compare with pv-soft: the same engine and TSC)',
      command: (w, busy = 0) => [process.execPath, [CLI, 'run', '--mode', 'fv-trap', native(w), ...Array.from({ length: busy }, () => native('spin')), '--engine', 'soft']], poweroffStatus: 0,
    },
    {
      name: 'qemu-tcg', what: 'the plain kernel under QEMU\'s emulator (binary translation)', command: qemu('tcg'), neighbour: () => qemu('tcg')('spin'), poweroffStatus: NATIVE_POWEROFF_STATUS,
      skipped: haveQemu ? undefined : noQemu,
    },
    {
      name: 'qemu-kvm', what: 'the plain kernel under QEMU with KVM (hardware-assisted full virtualization)', command: qemu('kvm'), neighbour: () => qemu('kvm')('spin'), poweroffStatus: NATIVE_POWEROFF_STATUS,
      skipped: !haveQemu ? noQemu : haveKvm ? undefined : `no ${o.kvm}`,
    },
  ];
}

/** Runs one command to its end (killed at the limit); its output and status, or why it failed. */
function runOnce(cmd: string, args: string[], limitMs: number): Promise<{ out: string; status: number | null; error?: string }> {
  return new Promise((resolve) => {
    execFile(cmd, args, { timeout: limitMs, killSignal: 'SIGKILL', encoding: 'latin1', maxBuffer: 16 << 20 }, (e, stdout, stderr) => {
      const err = e as (NodeJS.ErrnoException & { code?: number | string | null; killed?: boolean; signal?: string | null }) | null;
      if (err?.killed) {
        resolve({ out: stdout, status: null, error: `no end within ${limitMs / 1000} s` });
        return;
      }
      if (err?.signal) {
        resolve({ out: stdout, status: null, error: `${path.basename(cmd)} was killed by ${err.signal}` });
        return;
      }
      if (err && typeof err.code !== 'number') {
        resolve({ out: stdout, status: null, error: `${path.basename(cmd)} could not be run: ${err.message}` });
        return;
      }
      resolve({ out: stdout + stderr, status: err ? Number(err.code) : 0 });
    });
  });
}

export async function runPvfvBench(o: PvfvOptions, modes: Mode[]): Promise<PvfvResult> {
  const files = [...PVFV_WORKLOADS, 'spin'].flatMap((w) => [`${w}.elf`, `${w}-native.elf`]).concat(HOST_WORKLOADS.map((w) => `${w}-host`));
  for (const f of files) {
    if (!fs.existsSync(path.join(GUESTS, f))) throw new Error(`${path.join(GUESTS, f)} is missing: run \`npm run build\``);
  }
  const samples = modes.map(() => new Map<string, number[]>());
  const problems: Array<string | undefined> = modes.map(() => undefined);
  for (let run = 0; run < o.runs; run++) {
    for (const [i, mode] of modes.entries()) {
      if (mode.skipped || problems[i]) continue;
      // Each workload alone; then ticks again beside BUSY_NEIGHBOURS spinning neighbours.
      const can = (w: string) => (mode.workloads ?? PVFV_WORKLOADS).includes(w);
      for (const [w, busy] of [...PVFV_WORKLOADS.map((x) => [x, 0] as const), ['ticks', BUSY_NEIGHBOURS] as const]) {
        if (!can(w)) continue;
        const [cmd, args] = mode.command(w, mode.neighbour ? 0 : busy);
        const neighbours = busy && mode.neighbour ? Array.from({ length: busy }, () => runOnce(...mode.neighbour!(), o.limitSeconds * 1000)) : [];
        const r = await runOnce(cmd, args, o.limitSeconds * 1000);
        await Promise.all(neighbours);
        const figures = parseCycles(r.out);
        if (r.error || r.status !== mode.poweroffStatus || Object.keys(figures).length === 0) {
          problems[i] = `${w}${busy ? ` beside ${busy} busy` : ''}: ${r.error ?? `ended with status ${r.status}, not a poweroff`}: ${r.out.trim().split('\n').slice(-1)[0] ?? ''}`;
          break;
        }
        for (const [k, v] of Object.entries(figures)) {
          const key = busy ? `${k} beside ${busy} busy` : k;
          samples[i]!.set(key, [...(samples[i]!.get(key) ?? []), v]);
        }
      }
    }
  }
  return {
    runs: o.runs,
    modes: modes.map((m, i) => ({
      name: m.name, what: m.what, skipped: m.skipped, problem: problems[i], runs: o.runs,
      cycles: problems[i] ? {} : Object.fromEntries([...samples[i]!].map(([k, v]) => [k, median(v)])),
    })),
  };
}

export function formatPvfv(r: PvfvResult): string {
  const measures = [...new Set(r.modes.flatMap((m) => Object.keys(m.cycles)))];
  const pv = r.modes.find((m) => m.name === 'pv');
  const pvSoft = r.modes.find((m) => m.name === 'pv-soft');
  const ran = r.modes.filter((m) => !m.skipped && !m.problem);
  const lines = [`PV against full virtualization: the guest kit's workloads, TSC cycles (ticks lost: a count), medians of ${r.runs} runs; x: against pv (fv-trap-soft: against pv-soft, the same engine and TSC)`];
  for (const m of r.modes) lines.push(`  ${m.name.padEnd(9)} ${m.what}${m.skipped ? `: not run (${m.skipped})` : m.problem ? `: failed (${m.problem})` : ''}`);
  const width = Math.max(22, ...measures.map((k) => k.length + 2));
  lines.push(`  ${'measure'.padEnd(width)}${ran.map((m) => m.name.padStart(22)).join('')}`);
  for (const k of measures) {
    const cells = ran.map((m) => {
      const v = m.cycles[k];
      if (v === undefined) return '-'.padStart(22);
      const against = m.name === 'fv-trap-soft' ? pvSoft : pv;
      const base = against?.cycles[k];
      const ratio = m !== against && base ? ` (${(v / base).toFixed(2)}x)` : '';
      return `${v}${ratio}`.padStart(22);
    });
    lines.push(`  ${k.padEnd(width)}${cells.join('')}`);
  }
  if (!measures.length) lines.push('  (no mode ran here)');
  lines.push(...targetLines(r));
  return lines.join('\n') + '\n';
}

/**
 * The issue's yardsticks, where the modes they compare ran in this run:
 * what a page-table update and an address space cost trapped against
 * paravirtualized (on the same engine), PV's compute against the host
 * process, and the ticks each loses beside busy neighbours.
 */
export function targetLines(r: PvfvResult): string[] {
  const get = (name: string) => r.modes.find((m) => m.name === name && !m.skipped && !m.problem);
  const out: string[] = [];
  for (const [fv, pv] of [['fv-trap', 'pv'], ['fv-trap-soft', 'pv-soft']] as const) {
    const f = get(fv), p = get(pv);
    if (!f || !p) continue;
    for (const k of ['ptemod batch', 'ptemod single', 'mmap 512 pages', 'aspace create-enter-destroy']) {
      const a = f.cycles[k], b = p.cycles[k];
      if (a !== undefined && b) out.push(`  ${k}: ${fv} costs ${(a / b).toFixed(2)}x ${pv}${k === 'ptemod batch' || k.startsWith('aspace') ? ' (target >= 20)' : ''}`);
    }
    const lostF = f.cycles['ticks lost beside 2 busy'], lostP = p.cycles['ticks lost beside 2 busy'];
    if (lostF !== undefined && lostP !== undefined) out.push(`  ticks lost beside 2 busy: ${fv} ${lostF}, ${pv} ${lostP} (target: ${pv} 0, ${fv} more)`);
  }
  const host = get('host'), pv = get('pv');
  if (host?.cycles.compute && pv?.cycles.compute !== undefined) out.push(`  compute: pv / host ${(pv.cycles.compute / host.cycles.compute).toFixed(3)} (target <= 1.02)`);
  return out.length ? ['  yardsticks:', ...out] : [];
}
