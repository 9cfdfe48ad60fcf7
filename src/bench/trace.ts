// `npm run bench -- trace`: what `paravane run --trace` costs a guest that
// does nothing but hypercalls: the pvbench guest's null-hypercall loops
// (the hypercall bench's guest) run untraced and traced to a file, in
// alternating rounds, on this host's engine (KVM, else the software
// engine); per entry path the medians and their ratio, traced against
// untraced (target <= 1.10: issue 18). Every call is recorded with its
// exit, so this is the worst case: a guest that computes between calls
// pays a smaller share.

import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { selectEngine } from '../engine/select.js';
import { Hypervisor } from '../hv/hypervisor.js';
import { TraceWriter } from '../toolstack/trace-file.js';
import { builtGuest, MIB } from './guests.js';
import { PATHS, pvbenchRound, type Path } from './hypercall.js';
import { median } from './stats.js';

export interface TraceBenchResult {
  engine: string;
  calls: number;
  rounds: number;
  /** Host ns per hypercall, per path, untraced and traced, per round. */
  off: Record<Path, number[]>;
  on: Record<Path, number[]>;
  /** Records written per traced round. */
  records: number;
  ratio: Record<Path, number>;
}

export async function runTraceBench(opts: { calls: number; rounds: number }): Promise<TraceBenchResult> {
  const engine = selectEngine('auto');
  const hv = new Hypervisor(engine, { memoryBytes: 64 * MIB });
  const file = builtGuest('elf', 'pvbench');
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'paravane-trace-bench-'));
  const off = { page: [], vmcall: [], syscall: [] } as Record<Path, number[]>;
  const on = { page: [], vmcall: [], syscall: [] } as Record<Path, number[]>;
  let records = 0;
  try {
    for (let r = 0; r < opts.rounds; r++) {
      const plain = pvbenchRound(hv, file, opts.calls);
      const fd = fs.openSync(path.join(dir, `round-${r}.trace`), 'w');
      const writer = new TraceWriter(fd, { paravane: 'bench', engine: engine.name, startHostNs: process.hrtime.bigint(), domains: [] });
      let traced;
      try {
        traced = pvbenchRound(hv, file, opts.calls, (id) => writer.sink(id, () => hv.clock.now()));
      } finally {
        writer.close();
        fs.closeSync(fd);
      }
      records = writer.records;
      for (const p of PATHS) {
        off[p].push(plain.host[p]);
        on[p].push(traced.host[p]);
      }
    }
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
    hv.close();
    engine.close();
  }
  const ratio = {} as Record<Path, number>;
  for (const p of PATHS) ratio[p] = median(on[p]) / median(off[p]);
  return { engine: engine.name, calls: opts.calls, rounds: opts.rounds, off, on, records, ratio };
}

export function formatTraceBench(r: TraceBenchResult): string {
  const us = (ns: number) => (ns / 1000).toFixed(2);
  const lines = [`tracing's cost: the null-hypercall loops of the pvbench guest, ${r.rounds} alternating rounds of ${r.calls} calls per path, on the ${r.engine} engine; ${r.records} records per traced round`];
  for (const p of PATHS) {
    lines.push(`  ${`${p} path`.padEnd(14)} untraced ${us(median(r.off[p]))} us, traced ${us(median(r.on[p]))} us per call: ratio ${r.ratio[p].toFixed(3)} (target <= 1.10)`);
  }
  return lines.join('\n') + '\n';
}
