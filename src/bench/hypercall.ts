// `npm run bench -- hypercall`: the null-hypercall round trip through each
// entry path (hypercall page, vmcall, syscall), beside the raw exit cost of
// the C reference (native/bench/exit-ref.c), measured the same way: host
// time between exits, in alternating rounds. The guest is
// test/guests/elf/pvbench.S; each of its calls is a full hypercall
// (exit, decode, dispatch through the table, pvbench_op nop, result in rax,
// re-entry). The guest's own rdtsc timing is printed beside it.
//
// Excludes: domain creation and teardown (see `-- boot`).

import { performance } from 'node:perf_hooks';
import { selectEngine } from '../engine/select.js';
import { Hypervisor } from '../hv/hypervisor.js';
import { median } from './stats.js';
import { builtGuest, MIB } from './guests.js';
import { referenceExitLoop } from './exit.js';
import type { TraceSink } from '../hv/cpu/trace-sink.js';

export const PATHS = ['page', 'vmcall', 'syscall'] as const;
export type Path = (typeof PATHS)[number];

export interface HypercallBenchResult {
  callsPerRound: number;
  rounds: number;
  cNsPerExit: number[];
  /** Host-measured ns per hypercall, per path, per round. */
  ns: Record<Path, number[]>;
  /** The guest's own rdtsc measurement, ns per hypercall (median over rounds). */
  guestNs: Record<Path, number>;
  ratio: Record<Path, number>;
}

/**
 * One run of the pvbench guest; returns host ns per call per path and the
 * guest's TSC deltas. `trace`: where its hypercalls, exits and upcalls are
 * recorded (the trace bench), else none.
 */
export function pvbenchRound(hv: Hypervisor, file: Uint8Array, calls: number, trace?: (domid: number) => TraceSink): { host: Record<Path, number>; guest: Record<Path, number> } {
  const out: Uint8Array[] = [];
  const d = hv.createDomain(file, { memoryBytes: 8 * MIB, console: (b) => out.push(b.slice()) });
  if (trace) d.trace = trace(d.id);
  const v = d.vcpus[0]!;
  v.engine.regs.rbx = BigInt(calls);
  const warm = (calls >> 3) + 1;
  const per = warm + calls;
  const stamps = new Float64Array(3 * per);
  let n = 0;
  const khz = v.engine.tscKhz();
  d.start();
  try {
    for (;;) {
      const exit = v.engine.run();
      if (n < stamps.length) stamps[n] = performance.now();
      n++;
      if (!v.handleExit(exit) && !d.running) break;
    }
  } finally {
    hv.destroyDomain(d);
  }
  const end = d.end;
  if (end?.kind !== 'shutdown' || end.reason !== 0) throw new Error(`pvbench guest ended badly: ${JSON.stringify(end)}`);
  const host = {} as Record<Path, number>;
  PATHS.forEach((p, i) => {
    const first = i * per + warm - 1;
    host[p] = ((stamps[first + calls]! - stamps[first]!) * 1e6) / calls;
  });
  const words = Buffer.concat(out);
  const guest = {} as Record<Path, number>;
  PATHS.forEach((p, i) => { guest[p] = (Number(words.readBigUInt64LE(i * 8)) / khz) * 1e6 / calls; });
  return { host, guest };
}

export async function runHypercallBench(opts: { calls?: number; rounds?: number } = {}): Promise<HypercallBenchResult> {
  const calls = opts.calls ?? 20000;
  const rounds = opts.rounds ?? 5;
  const engine = selectEngine('kvm');
  const hv = new Hypervisor(engine, { memoryBytes: 64 * MIB });
  const file = builtGuest('elf', 'pvbench');
  try {
    const c: number[] = [];
    const ns: Record<Path, number[]> = { page: [], vmcall: [], syscall: [] };
    const g: Record<Path, number[]> = { page: [], vmcall: [], syscall: [] };
    for (let r = 0; r < rounds; r++) {
      c.push(referenceExitLoop(calls));
      const res = pvbenchRound(hv, file, calls);
      for (const p of PATHS) {
        ns[p].push(res.host[p]);
        g[p].push(res.guest[p]);
      }
    }
    const ratio = {} as Record<Path, number>;
    const guestNs = {} as Record<Path, number>;
    for (const p of PATHS) {
      ratio[p] = median(ns[p]) / median(c);
      guestNs[p] = median(g[p]);
    }
    return { callsPerRound: calls, rounds, cNsPerExit: c, ns, guestNs, ratio };
  } finally {
    hv.close();
    engine.close();
  }
}

export function formatHypercallBench(r: HypercallBenchResult): string {
  const us = (ns: number) => (ns / 1000).toFixed(2);
  const lines = [
    `null hypercall round trip (pvbench_op nop), ${r.rounds} alternating rounds of ${r.callsPerRound} calls per path`,
    `  C reference raw exit (native/bench/exit-ref.c)  median ${us(median(r.cNsPerExit))} us   rounds: ${r.cNsPerExit.map(us).join(' ')}`,
  ];
  for (const p of PATHS) {
    const target = p === 'page' ? ' (target <= 1.15)' : '';
    lines.push(`  ${`${p} path`.padEnd(14)} median ${us(median(r.ns[p]))} us, ratio ${r.ratio[p].toFixed(3)}${target}   guest-measured ${us(r.guestNs[p])} us   rounds: ${r.ns[p].map(us).join(' ')}`);
  }
  return lines.join('\n') + '\n';
}
