// `npm run bench -- trap`: the trap path, beside the raw exit cost of the C
// reference (native/bench/exit-ref.c) measured in the same run, in
// alternating rounds. The guest (test/guests/elf/trapbench.S) times with
// rdtsc, which reads the host's TSC here, a batch of each of:
//   - rdmsr of FS_BASE, completed by the privileged-instruction emulator
//     (a #GP, one exit);
//   - Xen's forced-emulation CPUID (a #UD, one exit);
//   - ud2 bounced to the guest's handler, which returns through the iret
//     hypercall (two exits: the exception, the iret);
//   - int3 bounced to the guest's handler, which returns with a plain iretq
//     (one exit).
// Each is printed as a multiple of the raw exit, with the targets
// (emulated instruction <= 1.3 raw exits, bounce and iret <= 2.5).
//
// Excludes: domain creation and teardown.

import { selectEngine } from '../engine/select.js';
import { Hypervisor } from '../hv/hypervisor.js';
import { median } from './stats.js';
import { builtGuest, MIB, runBenchGuest } from './guests.js';
import { referenceExitLoop } from './exit.js';

const KINDS = [
  { key: 'rdmsr', label: 'rdmsr FS_BASE, emulated', target: 1.3 },
  { key: 'cpuid', label: 'forced CPUID, emulated', target: 1.3 },
  { key: 'bounceIret', label: '#UD bounced, iret hypercall back', target: 2.5 },
  { key: 'bounceIretq', label: '#BP bounced, plain iretq back', target: undefined },
] as const;
type Kind = (typeof KINDS)[number]['key'];

export interface TrapBenchResult {
  opsPerRound: number;
  rounds: number;
  /** The C reference's raw exit, ns, per round. */
  cNsPerExit: number[];
  /** Guest-measured ns per operation, per kind, per round. */
  ns: Record<Kind, number[]>;
  /** Median ns per operation over the median raw exit. */
  ratio: Record<Kind, number>;
}

/** One run of the trapbench guest: ns per operation of each kind, from its TSC deltas. */
function trapRound(hv: Hypervisor, file: Uint8Array, ops: number): Record<Kind, number> {
  const { out: words, khz } = runBenchGuest(hv, file, 'trapbench', { memoryBytes: 8 * MIB, rbx: BigInt(ops) });
  if (words.length !== 40 || words.readBigUInt64LE(32) !== BigInt(ops)) throw new Error(`trapbench guest wrote ${words.length} bytes, not its 5 words`);
  const r = {} as Record<Kind, number>;
  KINDS.forEach((k, i) => { r[k.key] = (Number(words.readBigUInt64LE(i * 8)) / khz) * 1e6 / ops; });
  return r;
}

export async function runTrapBench(opts: { ops?: number; rounds?: number } = {}): Promise<TrapBenchResult> {
  const ops = opts.ops ?? 20000;
  const rounds = opts.rounds ?? 5;
  const engine = selectEngine('kvm');
  const hv = new Hypervisor(engine, { memoryBytes: 64 * MIB });
  const file = builtGuest('elf', 'trapbench');
  try {
    const c: number[] = [];
    const ns = Object.fromEntries(KINDS.map((k) => [k.key, [] as number[]])) as Record<Kind, number[]>;
    for (let r = 0; r < rounds; r++) {
      c.push(referenceExitLoop(ops));
      const res = trapRound(hv, file, ops);
      for (const k of KINDS) ns[k.key].push(res[k.key]);
    }
    const ratio = Object.fromEntries(KINDS.map((k) => [k.key, median(ns[k.key]) / median(c)])) as Record<Kind, number>;
    return { opsPerRound: ops, rounds, cNsPerExit: c, ns, ratio };
  } finally {
    hv.close();
    engine.close();
  }
}

export function formatTrapBench(r: TrapBenchResult): string {
  const us = (ns: number) => (ns / 1000).toFixed(2);
  const lines = [
    `trap path, ${r.rounds} alternating rounds of ${r.opsPerRound} operations per kind (guest-measured, host TSC)`,
    `  C reference raw exit (native/bench/exit-ref.c)  median ${us(median(r.cNsPerExit))} us   rounds: ${r.cNsPerExit.map(us).join(' ')}`,
  ];
  for (const k of KINDS) {
    const target = k.target === undefined ? '' : ` (target <= ${k.target})`;
    lines.push(`  ${k.label.padEnd(34)} median ${us(median(r.ns[k.key]))} us, ${r.ratio[k.key].toFixed(2)} raw exits${target}   rounds: ${r.ns[k.key].map(us).join(' ')}`);
  }
  return lines.join('\n') + '\n';
}
