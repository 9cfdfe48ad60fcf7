// `paravane run --mode fv-trap`: the kernels are plain ones (written for a
// PC: the guest kit's `-native` builds), run deprivileged and trapped
// (src/hv/fv/). They have no start_info, so the PV-only options are
// refused; their serial output is the console; each ends at its
// poweroff, reset or crash, or is killed by a stop or the timeout.

import type { Engine } from '../engine/types.js';
import { GuestElfError } from '../hv/domain/elf.js';
import type { DomainEnd } from '../hv/domain/domain.js';
import { runFvDomains, type FvDomain, type FvEnd } from '../hv/fv/fv-domain.js';
import { Hypervisor } from '../hv/hypervisor.js';
import { endMessage, EXIT, outcomeOf, runStatus, type Outcome } from './exit-status.js';
import type { RunPlan } from './run-plan.js';
import { ConsoleOutput } from './consoles.js';
import { RunStop } from './stop.js';
import { UsageError } from './usage-error.js';

export const RUN_MODES = ['pv', 'fv-trap'] as const;
export type RunMode = (typeof RUN_MODES)[number];

/** Shadow page-table frames each fv-trap domain may hold (FvDomainOptions.shadowFrames). */
const SHADOW_FRAMES = 2048;

/** What a plan needs to run in fv-trap mode; throws UsageError naming what a plain kernel cannot take. */
export function checkFvPlan(plan: RunPlan, opts: { log?: string }): RunPlan {
  for (const x of plan.domains) {
    const where = x.spec.entry ? `${x.spec.entry}: ` : '';
    if (x.cmdline !== undefined) throw new UsageError(`${where}--mode fv-trap: a plain kernel has no start_info to carry a command line`);
    if (x.initrd !== undefined) throw new UsageError(`${where}--mode fv-trap: a plain kernel has no start_info to find an initrd by`);
    if ((x.spec.vcpus ?? 1) !== 1) throw new UsageError(`${where}--mode fv-trap runs one vCPU per domain`);
    if (x.spec.weight !== undefined || x.spec.cap !== undefined) throw new UsageError(`${where}--mode fv-trap shares the CPU round-robin: --weight and --cap are for PV domains`);
  }
  if (opts.log !== undefined) throw new UsageError('--mode fv-trap: --log records console_io output, which plain kernels do not make');
  // Room for each domain's shadow tables beside its memory.
  return { ...plan, machineBytes: plan.machineBytes + plan.domains.length * (SHADOW_FRAMES * 4096 + (1 << 20)) };
}

/** An fv-trap domain's end as a PV domain's end reads (the exit status and messages are shared). */
function asDomainEnd(end: FvEnd): DomainEnd {
  switch (end.kind) {
    case 'poweroff': return { kind: 'shutdown', reason: 0, reasonName: 'poweroff' };
    case 'reboot': return { kind: 'shutdown', reason: 1, reasonName: 'reboot' };
    case 'crash': return { kind: 'crashed', reason: end.reason };
    case 'killed': return { kind: 'killed', reason: end.reason };
  }
}

/** The --stats report of an fv-trap domain: where its exits went. */
export function formatFvStats(d: FvDomain, ranNs: bigint): string {
  const c = d.counts, s = d.shadow.counts;
  const lines = [
    `paravane: domain ${d.id} (${d.name}) ran ${(Number(ranNs) / 1e9).toFixed(3)} s in fv-trap mode`,
    `  exits: ${c.exits}`,
    `  page faults: ${c.pageFaults} (hidden, a shadow entry built: ${c.hiddenFaults}; page-table writes emulated: ${c.ptWrites})`,
    `  shadow tables: ${s.fills} entries built, ${s.invalidations} cleared, ${s.flushes} flushes`,
    `  faults delivered to the guest: ${c.guestFaults}; interrupts: ${c.interrupts}; timer ticks lost: ${d.pc.ticksLost}`,
    `  privileged instructions emulated: ${c.privileged}`,
  ];
  for (const [name, n] of [...d.cpu.emulated].sort((a, b) => b[1] - a[1])) lines.push(`    ${name.toLowerCase().padEnd(10)} ${String(n).padStart(10)}`);
  lines.push(`  port I/O: ${d.pc.portCounts.reads} reads, ${d.pc.portCounts.writes} writes`);
  if (d.instructionsRetired !== undefined) lines.push(`  instructions retired: ${d.instructionsRetired}`);
  return lines.join('\n') + '\n';
}

/** Where an fv-trap run writes (RunIo's part it uses). */
export interface FvRunIo {
  out: (b: Uint8Array) => void;
  err: (s: string) => void;
  onOutError: (cb: (e: NodeJS.ErrnoException) => void) => () => void;
}

export async function runFvPlan(engine: Engine, plan: RunPlan, opts: { stats?: boolean }, io: FvRunIo, parent: number | null): Promise<number> {
  const hv = new Hypervisor(engine, { memoryBytes: plan.machineBytes });
  const cleanups: Array<() => void> = [];
  try {
    const output = plan.domains.length > 1 ? new ConsoleOutput(io.out) : undefined;
    const domains: FvDomain[] = [];
    const consoles = new Map<FvDomain, ReturnType<ConsoleOutput['source']> | undefined>();
    for (const x of plan.domains) {
      const con = output?.source(`[${x.spec.name}] `);
      let d: FvDomain;
      try {
        d = hv.createFvDomain(x.kernelFile, { name: x.spec.name, memoryBytes: x.memoryBytes, console: con ? con.write : io.out });
      } catch (e) {
        if (e instanceof GuestElfError || e instanceof RangeError) throw new UsageError(`${x.spec.entry ?? x.spec.kernel}: ${e.message}`);
        throw e;
      }
      consoles.set(d, con);
      domains.push(d);
    }
    const stops = new RunStop(parent, io.onOutError);
    cleanups.push(() => stops.dispose());
    const t0 = hv.now();
    const outcomes: Outcome[] = [];
    await runFvDomains(domains, hv.now, {
      signal: stops.signal,
      deadline: plan.timeoutSeconds === undefined ? undefined : t0 + BigInt(Math.round(plan.timeoutSeconds * 1e9)),
      onEnd: (d) => {
        consoles.get(d)?.flush();
        output?.breakLine();
        const end = asDomainEnd(d.end!);
        const outcome = outcomeOf(end, stops.stop);
        outcomes.push(outcome);
        if (opts.stats) io.err(formatFvStats(d, hv.now() - t0));
        const message = endMessage(d, end, outcome);
        if (message) io.err(`paravane: ${message}\n`);
        hv.destroyFvDomain(d);
      },
    });
    const stop = stops.stop;
    return runStatus(stop ? [...outcomes, { kind: 'stopped', stop }] : outcomes);
  } catch (e) {
    if (e instanceof UsageError) {
      io.err(`paravane: ${e.message}\n`);
      return EXIT.USAGE;
    }
    throw e;
  } finally {
    for (const c of cleanups) c();
    hv.close();
  }
}
