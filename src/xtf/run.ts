// Runs one XTF test kernel as a PV domain, as `paravane run` would
// (memory and command line from its config), and reads its verdict: the
// last "Test result: ..." line it printed, or how the domain ended if it
// printed none (a crash, a timeout). Inputs: XTF's kernels (trusted build
// outputs) and their console output (the guest's: parsed, never trusted).

import * as fs from 'node:fs';
import type { Engine } from '../engine/types.js';
import { Hypervisor, machineBytesFor } from '../hv/hypervisor.js';
import type { XtfRun } from './build.js';

export interface XtfResult {
  name: string;
  /** SUCCESS, SKIP, ERROR, FAILURE (from the test), or CRASH / TIMEOUT / NONE (no verdict). */
  verdict: string;
  /** The verdict line's detail, or the domain's end. */
  detail: string;
  console: string;
}

const MIB = 1 << 20;

export async function runXtf(engine: Engine, run: XtfRun, timeoutMs = 30_000): Promise<XtfResult> {
  const hv = new Hypervisor(engine, { memoryBytes: machineBytesFor(run.memoryMib * MIB) });
  let out = '';
  try {
    const d = hv.createDomain(fs.readFileSync(run.kernel), {
      name: run.name, memoryBytes: run.memoryMib * MIB, cmdline: run.cmdline, vcpus: run.vcpus, console: (b) => { out += Buffer.from(b).toString('latin1'); },
    });
    const end = await hv.run(d, { timeoutMs });
    const m = [...out.matchAll(/Test result: (SUCCESS|SKIP|ERROR|FAILURE)(.*)$/gm)].pop();
    if (m) return { name: run.name, verdict: m[1]!, detail: m[2]!.trim(), console: out };
    const verdict = end.kind === 'crashed' ? 'CRASH' : end.kind === 'killed' && /timed out/.test(end.reason) ? 'TIMEOUT' : 'NONE';
    return { name: run.name, verdict, detail: 'reason' in end ? String(end.reason) : end.kind, console: out };
  } finally {
    hv.close();
  }
}
