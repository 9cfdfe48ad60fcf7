// `npm run bench -- pingpong`: the kit's pingpong example between two
// domains, its round trip as the client measures it, and with --parts where
// each side's time goes in the core: from the exit that carries the send to
// EVTCHNOP_send waking the peer, from there to the peer's run started
// (wake-up preemption), and the peer's run from start() to its exit taken.
// The parts are timed with performance.now() around PvVcpu's methods,
// which leaves the round trip unchanged within a few tenths of a
// microsecond. The time bench (time.ts) runs the same pair.

import { performance } from 'node:perf_hooks';
import { selectEngine } from '../engine/select.js';
import { Hypervisor } from '../hv/hypervisor.js';
import { PvVcpu } from '../hv/cpu/vcpu.js';
import { builtGuest, MIB } from './guests.js';

export type PingpongWait = 'block' | 'poll';

export interface PingpongResult {
  wait: PingpongWait;
  rounds: number;
  warmup: number;
  /** Client-measured round trip, median (µs). */
  medianUs: number;
  /** Medians (µs) of the parts of a side, over the second half of the samples. */
  parts?: { exitToSendUs: number; sendToStartUs: number; startedRunUs: number; samples: number };
}

/** Runs a server/client pair to its end on `hv`; throws if either did not finish cleanly. */
export async function runPingpong(hv: Hypervisor, opts: { wait: PingpongWait; rounds: number; warmup: number; parts?: boolean }): Promise<PingpongResult> {
  const { wait, rounds, warmup } = opts;
  const outs = ['', ''];
  const next = hv.peekNextDomid();
  const pp = builtGuest('kit', 'pingpong');
  const args = `rounds=${rounds} warmup=${warmup} wait=${wait}`;
  const server = hv.createDomain(pp, { memoryBytes: 16 * MIB, cmdline: `role=server peer=${next + 1} ${args}`, console: (x) => { outs[0] += Buffer.from(x).toString('latin1'); } });
  const client = hv.createDomain(pp, { memoryBytes: 16 * MIB, cmdline: `role=client peer=${server.id} ${args}`, console: (x) => { outs[1] += Buffer.from(x).toString('latin1'); } });
  const probe = opts.parts ? instrument() : undefined;
  try {
    await Promise.all([hv.run(server, { timeoutMs: 60_000 }), hv.run(client, { timeoutMs: 60_000 })]);
  } finally {
    probe?.restore();
  }
  const m = /^pingpong: (\d+) round trips, median (\d+\.\d) us/m.exec(outs[1]!);
  if (!m || !outs.every((o) => /^pingpong: \d+ ok, 0 failed$/m.test(o))) throw new Error(`pingpong failed:\n${outs.join('\n')}`);
  return { wait, rounds: +m[1]!, warmup, medianUs: +m[2]!, parts: probe?.parts() };
}

/** Times PvVcpu's run, eventPending and start (on the prototype, until restore()). */
function instrument() {
  const proto = PvVcpu.prototype;
  const { run, eventPending, start } = proto;
  const exitToSend: number[] = [], sendToStart: number[] = [], startedRun: number[] = [];
  let exitAt = 0, sendAt = 0, startAt = 0;
  let started: PvVcpu | undefined; // one run is started at a time
  proto.run = function (this: PvVcpu) {
    const exit = run.call(this);
    exitAt = performance.now();
    if (started === this) {
      startedRun.push(exitAt - startAt);
      started = undefined;
    }
    return exit;
  };
  proto.eventPending = function (this: PvVcpu) {
    sendAt = performance.now();
    exitToSend.push(sendAt - exitAt);
    eventPending.call(this);
  };
  proto.start = function (this: PvVcpu) {
    start.call(this);
    startAt = performance.now();
    started = this;
    sendToStart.push(startAt - sendAt);
  };
  const median = (v: number[]) => {
    const h = v.slice(v.length >> 1).sort((a, b) => a - b);
    return h.length ? h[h.length >> 1]! * 1000 : NaN;
  };
  return {
    restore() { Object.assign(proto, { run, eventPending, start }); },
    parts: () => ({ exitToSendUs: median(exitToSend), sendToStartUs: median(sendToStart), startedRunUs: median(startedRun), samples: startedRun.length }),
  };
}

export function formatPingpong(r: PingpongResult): string {
  const lines = [`pingpong wait=${r.wait}, ${r.rounds} rounds after ${r.warmup} untimed: round trip median ${r.medianUs.toFixed(1)} us`];
  if (r.parts) {
    const p = r.parts;
    lines.push(`  per side (medians of ${p.samples} runs started at wake-up): exit to EVTCHNOP_send ${p.exitToSendUs.toFixed(2)} us, send to the peer's run started ${p.sendToStartUs.toFixed(2)} us, that run to its exit taken ${p.startedRunUs.toFixed(1)} us`);
  }
  return lines.join('\n') + '\n';
}

/** The command: one pair on a machine of its own. */
export async function runPingpongBench(opts: { wait: PingpongWait; rounds: number; warmup: number; parts: boolean }): Promise<PingpongResult> {
  const engine = selectEngine('kvm');
  const hv = new Hypervisor(engine, { memoryBytes: 64 * MIB });
  try {
    return await runPingpong(hv, opts);
  } finally {
    hv.close();
    engine.close();
  }
}
