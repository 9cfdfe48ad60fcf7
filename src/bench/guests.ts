// The guests the benchmarks run, from the build directories `npm run build` fills.

import * as fs from 'node:fs';
import { fileURLToPath } from 'node:url';
import type { Hypervisor } from '../hv/hypervisor.js';

export const MIB = 1 << 20;

const DIRS = {
  /** Test guests written against the ABI directly (test/guests/elf). */
  elf: '../../test/guests/build/elf',
  /** Benchmark guests built with the guest kit (test/guests/bench). */
  bench: '../../test/guests/build/bench',
  /** The guest kit's examples. */
  kit: '../../build/guests',
} as const;

/** The ELF image of guest `name` from one of the build directories; a clear error if it was not built. */
export function builtGuest(dir: keyof typeof DIRS, name: string): Uint8Array {
  const p = fileURLToPath(new URL(`${DIRS[dir]}/${name}.elf`, import.meta.url));
  if (!fs.existsSync(p)) throw new Error(`${p} is missing: run \`npm run build\``);
  return fs.readFileSync(p);
}

/**
 * Runs a benchmark guest (an ELF from builtGuest) as one domain, on vCPU 0
 * directly (no scheduler between its exits), until it ends; `rbx` is the
 * count it reads at entry. Returns what it wrote to its console (its
 * results) and its TSC rate (kHz). Throws unless it powered off.
 */
export function runBenchGuest(hv: Hypervisor, file: Uint8Array, name: string, opts: { memoryBytes: number; rbx?: bigint }): { out: Buffer; khz: number } {
  const out: Uint8Array[] = [];
  const d = hv.createDomain(file, { memoryBytes: opts.memoryBytes, console: (b) => out.push(b.slice()) });
  const v = d.vcpus[0]!;
  if (opts.rbx !== undefined) v.engine.regs.rbx = opts.rbx;
  const khz = v.engine.tscKhz();
  d.start();
  try {
    while (v.handleExit(v.run()) || d.running);
  } finally {
    if (d.state !== 'dead') hv.destroyDomain(d);
  }
  if (d.end?.kind !== 'shutdown' || d.end.reason !== 0) {
    throw new Error(`${name} guest ended badly: ${JSON.stringify(d.end)}: ${Buffer.concat(out).toString('latin1').slice(0, 200)}`);
  }
  return { out: Buffer.concat(out), khz };
}
