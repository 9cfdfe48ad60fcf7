// `npm run bench -- exit`: the cost of one guest exit handled by the
// TypeScript engine against a C program doing the same loop, measured side
// by side in one run, plus kick latency.
//
// Includes: KVM_RUN entry and exit, the sync-regs copy, decoding the exit
// (TypeScript) and the loop around it. Excludes: any hypercall or device
// work (the handler only resumes), process start-up (the C program times its
// own loop after a 10% warm-up, as the TypeScript side does).

import { spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { selectEngine } from '../engine/select.js';
import { kickLatency } from '../engine/kvm/kick-latency.js';
import { bootTestGuest, GUEST_DIR } from '../engine/probe-guest.js';
import type { Engine } from '../engine/types.js';
import { median, summarize } from './stats.js';

const REF = fileURLToPath(new URL('../../native/build/bench/exit-ref', import.meta.url));

export interface ExitBenchResult {
  exitsPerRound: number;
  rounds: number;
  cNsPerExit: number[];
  /** The engine in its default mode: KVM_RUN on the CPU thread. */
  tsNsPerExit: number[];
  ratio: number;
  /** The engine issuing KVM_RUN from the calling thread. */
  directNsPerExit: number[];
  directRatio: number;
  deadlineLatencyUs: ReturnType<typeof summarize>;
  kickLatencyUs: ReturnType<typeof summarize>;
}

/** Runs the exitloop guest for `exits` exits after a 10% warm-up; returns ns per exit. */
export function engineExitLoop(engine: Engine, exits: number): number {
  const g = bootTestGuest(engine, 'exitloop');
  try {
    const warm = Math.floor(exits / 10) + 1;
    let t0 = 0n;
    for (let i = 0; i < warm + exits; i++) {
      if (i === warm) t0 = process.hrtime.bigint();
      const e = g.vcpu.run();
      if (e.kind !== 'io' || e.port !== 0x10) throw new Error(`exit benchmark: unexpected exit ${e.kind}`);
    }
    return Number(process.hrtime.bigint() - t0) / exits;
  } finally {
    g.destroy();
  }
}

export function referenceExitLoop(exits: number): number {
  const r = spawnSync(REF, [GUEST_DIR, String(exits)], { encoding: 'utf8' });
  if (r.status !== 0) throw new Error(`${REF} failed: ${r.stderr || r.error?.message}`);
  return (JSON.parse(r.stdout) as { ns_per_exit: number }).ns_per_exit;
}

/** Lateness of deadline kicks: from the deadline to run() returning, in µs. */
export function deadlineLatency(engine: Engine, samples: number): number[] {
  const g = bootTestGuest(engine, 'spin');
  const out: number[] = [];
  try {
    for (let i = 0; i < samples; i++) {
      const deadline = process.hrtime.bigint() + 200_000n;
      g.vcpu.setDeadline(deadline);
      if (g.vcpu.run().kind !== 'interrupted') throw new Error('spin guest exited');
      out.push(Number(process.hrtime.bigint() - deadline) / 1000);
    }
  } finally {
    g.destroy();
  }
  return out;
}

export async function runExitBench(opts: { exits?: number; rounds?: number } = {}): Promise<ExitBenchResult> {
  const exits = opts.exits ?? 20000;
  const rounds = opts.rounds ?? 5;
  const engine = selectEngine('kvm', { runMode: 'thread' });
  const direct = selectEngine('kvm', { runMode: 'direct' });
  try {
    const c: number[] = [];
    const ts: number[] = [];
    const d: number[] = [];
    // Alternate them so that machine noise hits all alike.
    for (let r = 0; r < rounds; r++) {
      c.push(referenceExitLoop(exits));
      ts.push(engineExitLoop(engine, exits));
      d.push(engineExitLoop(direct, exits));
    }
    return {
      exitsPerRound: exits, rounds, cNsPerExit: c, tsNsPerExit: ts, ratio: median(ts) / median(c),
      directNsPerExit: d, directRatio: median(d) / median(c),
      deadlineLatencyUs: summarize(deadlineLatency(engine, 500)),
      kickLatencyUs: summarize(await kickLatency(engine, 500)),
    };
  } finally {
    engine.close();
    direct.close();
  }
}

export function formatExitBench(r: ExitBenchResult): string {
  const us = (ns: number) => (ns / 1000).toFixed(2);
  const lines = [
    `exit round trip (port I/O exit, sync regs, handler only resumes): ${r.rounds} alternating rounds of ${r.exitsPerRound} exits`,
    `  C reference (native/bench/exit-ref.c)    median ${us(median(r.cNsPerExit))} us/exit   rounds: ${r.cNsPerExit.map(us).join(' ')}`,
    `  TypeScript engine, CPU thread (default) median ${us(median(r.tsNsPerExit))} us/exit   rounds: ${r.tsNsPerExit.map(us).join(' ')}`,
    `  TypeScript engine, direct KVM_RUN        median ${us(median(r.directNsPerExit))} us/exit   rounds: ${r.directNsPerExit.map(us).join(' ')}`,
    `  ratio TypeScript / C: ${r.ratio.toFixed(3)} (default, target <= 1.10); direct mode ${r.directRatio.toFixed(3)}`,
    `deadline kick lateness (POSIX timer -> run() returns), n=${r.deadlineLatencyUs.n}: median ${r.deadlineLatencyUs.median.toFixed(1)} us, p99 ${r.deadlineLatencyUs.p99.toFixed(1)} us`,
    `kick() from another thread -> run() returns, n=${r.kickLatencyUs.n}: median ${r.kickLatencyUs.median.toFixed(1)} us, p99 ${r.kickLatencyUs.p99.toFixed(1)} us`,
  ];
  return lines.join('\n') + '\n';
}
