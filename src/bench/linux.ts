// `npm run bench -- linux`: Debian's stock kernel and the test initramfs
// (scripts/fetch-linux.sh), booted as a user boots them: under paravane
// (`paravane run`, a PV domU on hvc0), and where qemu-system-x86_64 is
// installed under QEMU's emulator (TCG) and QEMU with KVM (a full-
// virtualization guest on ttyS0), each with a time limit. Each run is
// timed from the spawn of its process to the first line of /init (the
// banner) and to the process's exit: at the banner `exit` is typed into
// the shell, after which /init powers off. Printed side by side, with the
// ratio paravane / QEMU TCG to the banner (target <= 1.0), and paravane's
// hypercalls and exits by kind (its --stats). Each system boots `runs`
// times, alternating, and the medians are reported.

import { spawn, spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';
import { INIT_BANNER } from '../linux/initramfs.js';
import { median } from './stats.js';

const ROOT = fileURLToPath(new URL('../..', import.meta.url));
const LINUX_DIR = path.join(ROOT, 'build/linux');
const CLI = path.join(ROOT, 'dist/cli/main.js');

export interface LinuxBenchOptions {
  kernel?: string;
  initrd?: string;
  memoryMiB: number;
  runs: number;
  /** The limit for one boot, seconds. */
  limitSeconds: number;
  /** Where KVM is looked for (paravane and QEMU KVM run only where it exists). */
  kvm: string;
}

/** One boot of one system. */
export interface BootTiming {
  /** Spawn to /init's first line, ms (undefined: not reached). */
  firstLineMs?: number;
  /** Spawn to the process's exit after poweroff, ms (undefined: did not power off in time). */
  poweroffMs?: number;
  /** Why the boot did not complete: the time limit, or the process's own end. */
  problem?: string;
  /** What the process wrote to stderr (paravane's --stats). */
  stderr: string;
}

export interface SystemResult {
  system: string;
  command: string;
  /** Why the system was not run here. */
  skipped?: string;
  boots: BootTiming[];
  firstLineMs?: number;
  poweroffMs?: number;
}

export interface LinuxBenchResult {
  kernel: string;
  initrd: string;
  memoryMiB: number;
  limitSeconds: number;
  systems: SystemResult[];
  /** paravane's median to the first line over QEMU TCG's (target <= 1.0). */
  ratioToTcg?: number;
  /** paravane's --stats of its last completed boot. */
  paravaneStats?: string;
}

/** The kernel and initramfs fetch-linux.sh leaves in build/linux/, or the ones given. */
export function linuxInputs(o: Pick<LinuxBenchOptions, 'kernel' | 'initrd'>): { kernel: string; initrd: string } {
  const kernel = o.kernel ?? (fs.existsSync(LINUX_DIR) ? fs.readdirSync(LINUX_DIR).filter((f) => f.startsWith('vmlinuz-')).map((f) => path.join(LINUX_DIR, f))[0] : undefined);
  const initrd = o.initrd ?? path.join(LINUX_DIR, 'initramfs.cpio.gz');
  if (!kernel || !fs.existsSync(kernel) || !fs.existsSync(initrd)) {
    throw new Error(`the kernel or initramfs is missing (${kernel ?? `${LINUX_DIR}/vmlinuz-*`}, ${initrd}): run scripts/fetch-linux.sh`);
  }
  return { kernel, initrd };
}

/**
 * Spawns `cmd`, waits for the banner on its stdout, types `exit` into the
 * shell, and waits for the process to end; kills it at the time limit.
 */
export function timeBoot(cmd: string, args: readonly string[], limitMs: number): Promise<BootTiming> {
  return new Promise((resolve) => {
    const t0 = process.hrtime.bigint();
    const ms = () => Number(process.hrtime.bigint() - t0) / 1e6;
    const child = spawn(cmd, args, { stdio: ['pipe', 'pipe', 'pipe'] });
    let out = '';
    let stderr = '';
    const timing: BootTiming = { stderr: '' };
    let problem: string | undefined;
    const timer = setTimeout(() => {
      problem = `${timing.firstLineMs === undefined ? 'no first line of /init' : 'no poweroff'} within ${limitMs / 1000} s`;
      child.kill('SIGKILL');
    }, limitMs);
    child.stdout.on('data', (b: Buffer) => {
      if (timing.firstLineMs !== undefined) return;
      out += b.toString('latin1');
      if (out.includes(INIT_BANNER)) {
        timing.firstLineMs = ms();
        // The shell is next: ending it makes /init power off. (Written twice over a moment in case the
        // shell is not yet reading: a second `exit` after the first has ended the shell goes nowhere.)
        child.stdin.write('exit\n');
        setTimeout(() => child.stdin.writable && child.stdin.write('exit\n'), 2000).unref();
      }
      // Only the end of the output is needed for the banner.
      if (out.length > 65536) out = out.slice(-4096);
    });
    child.stderr.on('data', (b: Buffer) => { stderr += b.toString('utf8'); });
    child.stdin.on('error', () => { /* the process ended first */ });
    child.on('error', (e) => {
      problem = `${cmd} could not be started: ${e.message}`;
    });
    child.on('close', (code, signal) => {
      clearTimeout(timer);
      const how = signal ?? `status ${code}`;
      const lastWords = stderr.trim().split('\n').slice(-2).join(' / ');
      // A poweroff is the process ending by itself with status 0 (paravane: every domain powered off;
      // QEMU: the guest powered the machine off); anything else after the first line is a failure too.
      if (!problem && timing.firstLineMs !== undefined && code === 0) timing.poweroffMs = ms();
      else if (timing.firstLineMs !== undefined) problem ??= `${path.basename(cmd)} ended (${how}) after /init's first line, not by poweroff: ${lastWords}`;
      else problem ??= `${path.basename(cmd)} ended (${how}) before /init's first line: ${lastWords}`;
      resolve({ ...timing, problem, stderr });
    });
  });
}

function commandExists(cmd: string): boolean {
  return spawnSync('sh', ['-c', `command -v ${cmd}`]).status === 0;
}

interface SystemSpec {
  system: string;
  cmd: string;
  args: string[];
  skipped?: string;
}

function systems(o: LinuxBenchOptions, kernel: string, initrd: string): SystemSpec[] {
  const mem = String(o.memoryMiB);
  const qemu = 'qemu-system-x86_64';
  const haveQemu = commandExists(qemu);
  const haveKvm = fs.existsSync(o.kvm);
  // QEMU: the same kernel as a plain (full-virtualization) guest, its console on the first serial port.
  const qemuArgs = (accel: string) => ['-accel', accel, '-m', mem, '-nographic', '-no-reboot', '-kernel', kernel, '-initrd', initrd,
    '-append', 'console=ttyS0 panic=-1 quiet'];
  return [
    {
      system: 'paravane (PV domU)', cmd: process.execPath,
      args: [CLI, 'run', kernel, '--initrd', initrd, '--memory', mem, '--cmdline', 'console=hvc0 quiet', '--stats', '--kvm', o.kvm],
      skipped: haveKvm ? undefined : `no ${o.kvm}`,
    },
    { system: 'QEMU TCG', cmd: qemu, args: qemuArgs('tcg'), skipped: haveQemu ? undefined : `${qemu} is not installed (Debian: qemu-system-x86)` },
    {
      system: 'QEMU KVM', cmd: qemu, args: [...qemuArgs('kvm'), '-cpu', 'host'],
      skipped: !haveQemu ? `${qemu} is not installed (Debian: qemu-system-x86)` : haveKvm ? undefined : `no ${o.kvm}`,
    },
  ];
}

export async function runLinuxBench(o: LinuxBenchOptions): Promise<LinuxBenchResult> {
  const { kernel, initrd } = linuxInputs(o);
  const specs = systems(o, kernel, initrd);
  const results: SystemResult[] = specs.map((s) => ({ system: s.system, command: [s.cmd, ...s.args].join(' '), skipped: s.skipped, boots: [] }));
  for (let run = 0; run < o.runs; run++) {
    for (const [i, s] of specs.entries()) {
      if (s.skipped) continue;
      // A system that missed the limit once is not booted again (each miss costs the whole limit).
      if (results[i]!.boots.some((b) => b.problem)) continue;
      results[i]!.boots.push(await timeBoot(s.cmd, s.args, o.limitSeconds * 1000));
    }
  }
  for (const r of results) {
    const first = r.boots.map((b) => b.firstLineMs).filter((x): x is number => x !== undefined);
    const off = r.boots.map((b) => b.poweroffMs).filter((x): x is number => x !== undefined);
    if (first.length === r.boots.length && first.length) r.firstLineMs = median(first);
    if (off.length === r.boots.length && off.length) r.poweroffMs = median(off);
  }
  const pv = results[0]!, tcg = results[1]!;
  const last = [...pv.boots].reverse().find((b) => b.poweroffMs !== undefined);
  return {
    kernel, initrd, memoryMiB: o.memoryMiB, limitSeconds: o.limitSeconds, systems: results,
    ratioToTcg: pv.firstLineMs !== undefined && tcg.firstLineMs !== undefined ? pv.firstLineMs / tcg.firstLineMs : undefined,
    paravaneStats: last?.stderr.trim() || undefined,
  };
}

const secs = (ms: number | undefined): string => (ms === undefined ? '-' : `${(ms / 1000).toFixed(2)} s`);

export function formatLinuxBench(r: LinuxBenchResult): string {
  const lines = [
    `Linux boot: ${path.basename(r.kernel)} with ${path.basename(r.initrd)}, ${r.memoryMiB} MiB; at /init's first line \`exit\` is typed, then /init powers off`,
    `  ${'system'.padEnd(20)} ${'to init\'s first line'.padStart(22)} ${'to poweroff'.padStart(12)}  boots`,
  ];
  for (const s of r.systems) {
    if (s.skipped) {
      lines.push(`  ${s.system.padEnd(20)} not run: ${s.skipped}`);
      continue;
    }
    const problem = s.boots.find((b) => b.problem)?.problem;
    lines.push(`  ${s.system.padEnd(20)} ${secs(s.firstLineMs).padStart(22)} ${secs(s.poweroffMs).padStart(12)}  ${s.boots.length}${problem ? `  (${problem})` : ''}`);
  }
  lines.push(`  paravane / QEMU TCG, to init's first line: ${r.ratioToTcg === undefined ? 'not measured (both must complete)' : r.ratioToTcg.toFixed(2)} (target <= 1.0)`);
  if (r.paravaneStats) {
    lines.push('paravane\'s hypercalls and exits, boot to poweroff (its --stats):');
    for (const l of r.paravaneStats.split('\n')) lines.push(`  ${l}`);
  }
  return lines.join('\n') + '\n';
}
