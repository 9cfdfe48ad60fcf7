// `npm run bench -- mmu`: the cost of validated page-table updates.
//
// From a guest (test/guests/bench/mmubench.c): mmu_update batches of 1, 64,
// 512 and 2048 requests, each toggling the RW bit of a page (so each takes
// or drops a writable type reference: the full validation path), and a
// 512-request batch with a TLB flush in one multicall; each call timed by
// the guest with rdtsc, right before a null hypercall timed the same way.
// Rounds interleave everything; the figures are medians of single calls,
// so that the host's hiccups (this two-CPU machine stalls a run now and
// then for ~0.7 ms) do not decide them. An mmu_update flushes nothing (Xen's
// TLB model, src/hv/mm/tlb.ts); the flush column is what forgetting the
// translations the batch took away costs on top.
//
// In process (no guest): the validator alone, pinning and unpinning an L1
// of 512 present entries; and mmu_update's request loop for 2048 requests.

import { performance } from 'node:perf_hooks';
import { selectEngine } from '../engine/select.js';
import { createPlainMemory } from '../engine/plain-memory.js';
import { FrameTable } from '../hv/mm/frames.js';
import { GuestMemory } from '../hv/mm/guest-access.js';
import type { HypercallContext } from '../hv/hypercalls/context.js';
import { createHypercallTable } from '../hv/hypercalls/index.js';
import { Hypervisor } from '../hv/hypervisor.js';
import { DomainTranslations, TranslationMarks } from '../hv/mm/tlb.js';
import { PageTypes } from '../hv/mm/page-types.js';
import { median } from './stats.js';
import { builtGuest, MIB, runBenchGuest } from './guests.js';

const SIZES = [1, 64, 512, 2048] as const;
/** Guest columns per round: the four sizes, then 512 with a flush. */
const COLUMNS = 5;

export interface MmuBenchResult {
  /** Guest-measured µs per mmu_update call, per batch size (median of single calls). */
  callUs: Record<number, number>;
  /** A 512-request batch and MMUEXT_TLB_FLUSH_LOCAL in one multicall. */
  flush512Us: number;
  /** The null hypercalls made right after each call. */
  nullUs: number;
  ratio512: number;
  ratioFlush512: number;
  validatorNsPerEntry: number;
  mmuUpdateNsPerRequest: number;
  runs: number;
}

/** One guest run: per column, the µs of each call, and of the null hypercall after it. */
function guestRun(hv: Hypervisor, file: Uint8Array): { calls: number[][]; nulls: number[] } {
  const { out: words, khz } = runBenchGuest(hv, file, 'mmubench', { memoryBytes: 32 * MIB });
  const rounds = Number(words.readBigUInt64LE(0));
  const columns = Number(words.readBigUInt64LE(8));
  if (columns !== 2 * COLUMNS || words.length !== 16 + rounds * columns * 8) throw new Error(`mmubench wrote ${words.length} bytes for ${rounds} rounds of ${columns}`);
  const us = (at: number) => (Number(words.readBigUInt64LE(at)) / khz) * 1000;
  const calls: number[][] = Array.from({ length: COLUMNS }, () => []);
  const nulls: number[] = [];
  for (let r = 0; r < rounds; r++) {
    for (let c = 0; c < COLUMNS; c++) {
      calls[c]!.push(us(16 + 8 * (r * columns + c)));
      nulls.push(us(16 + 8 * (r * columns + COLUMNS + c)));
    }
  }
  return { calls, nulls };
}

function validatorNs(): number {
  const ft = new FrameTable(createPlainMemory(16 * MIB));
  const pt = new PageTypes(ft);
  const fr = ft.allocate(1, 600);
  const l1 = fr[0]!;
  // Alternate read-only (a general reference) and writable (plus a type reference) entries.
  for (let i = 0; i < 512; i++) ft.words(l1)[i] = (BigInt(fr[1 + i]!) << 12n) | (i & 1 ? 7n : 5n);
  const samples: number[] = [];
  for (let r = 0; r < 7; r++) {
    const n = 2000;
    const t0 = performance.now();
    for (let k = 0; k < n; k++) {
      pt.pin(l1, 1, 1);
      pt.unpin(l1, 1);
    }
    samples.push(((performance.now() - t0) * 1e6) / (n * 512 * 2));
  }
  return median(samples.slice(2));
}

function mmuUpdateNs(): number {
  const ft = new FrameTable(createPlainMemory(32 * MIB));
  const pt = new PageTypes(ft);
  const fr = ft.allocate(1, 1200);
  const [l4, l3, l2, l1, data] = fr as [number, number, number, number, number];
  const pte = (m: number, f: bigint) => (BigInt(m) << 12n) | f;
  ft.words(l4)[0] = pte(l3, 7n);
  ft.words(l3)[0] = pte(l2, 7n);
  ft.words(l2)[0] = pte(l1, 7n);
  ft.words(l2)[1] = pte(data, 7n);
  for (let i = 16; i < 24; i++) ft.words(l1)[i] = pte(fr[i]!, 7n); // the request array at 0x10000
  for (let i = 0; i < 512; i++) ft.words(data)[i] = pte(fr[512 + i]!, 5n);
  pt.pin(l4, 4, 1);
  const noop = () => {};
  const ctx = {
    domid: 1, guest: new GuestMemory(ft, BigInt(l4) << 12n), continueWith: noop,
    mm: { pt, cr3: l4, userCr3: 0, setCr3: noop, setUserCr3: noop, tlb: new DomainTranslations({ forget: noop, dropAll: noop }, new TranslationMarks(ft.count)), setLdt: noop },
  } as unknown as HypercallContext;
  const table = createHypercallTable();
  const n = 2048;
  const buf = new Uint8Array(n * 16);
  const v = new DataView(buf.buffer);
  const samples: number[] = [];
  for (let r = 0; r < 40; r++) {
    for (let i = 0; i < n; i++) {
      const k = i % 512;
      v.setBigUint64(16 * i, (BigInt(data) << 12n) + BigInt(8 * k), true);
      v.setBigUint64(16 * i + 8, pte(fr[512 + k]!, ((i >> 9) + r) & 1 ? 7n : 5n), true);
    }
    ctx.guest.write(0x10000n, buf);
    const t0 = performance.now();
    // Two calls: mmu_update does 1024 requests per call, then continues.
    table.dispatch(ctx, 1n, [0x10000n, 1024n, 0n, 0x7ff0n, 0n]);
    table.dispatch(ctx, 1n, [0x10000n + 1024n * 16n, 1024n, 0n, 0x7ff0n, 0n]);
    samples.push(((performance.now() - t0) * 1e6) / n);
  }
  return median(samples.slice(10));
}

export async function runMmuBench(opts: { runs?: number } = {}): Promise<MmuBenchResult> {
  const runs = opts.runs ?? 5;
  const file = builtGuest('bench', 'mmubench');
  const engine = selectEngine('kvm');
  const hv = new Hypervisor(engine, { memoryBytes: 64 * MIB });
  const calls: number[][] = Array.from({ length: COLUMNS }, () => []);
  const nulls: number[] = [];
  try {
    for (let r = 0; r < runs; r++) {
      const g = guestRun(hv, file);
      g.calls.forEach((c, i) => calls[i]!.push(...c));
      nulls.push(...g.nulls);
    }
  } finally {
    hv.close();
    engine.close();
  }
  const callUs: Record<number, number> = {};
  SIZES.forEach((s, i) => { callUs[s] = median(calls[i]!); });
  const flush512Us = median(calls[4]!);
  const nullUs = median(nulls);
  return {
    callUs, flush512Us, nullUs, ratio512: callUs[512]! / nullUs, ratioFlush512: flush512Us / nullUs,
    validatorNsPerEntry: validatorNs(), mmuUpdateNsPerRequest: mmuUpdateNs(), runs,
  };
}

/** The in-process parts alone (no guest, no engine): medians over `rounds` alternating measurements of each. */
export function runMmuInProcess(rounds = 5): { validatorNsPerEntry: number; mmuUpdateNsPerRequest: number; rounds: number } {
  const v: number[] = [], m: number[] = [];
  for (let i = 0; i < rounds; i++) {
    v.push(validatorNs());
    m.push(mmuUpdateNs());
  }
  return { validatorNsPerEntry: median(v), mmuUpdateNsPerRequest: median(m), rounds };
}

export function formatMmuInProcess(r: ReturnType<typeof runMmuInProcess>): string {
  return `in process (medians of ${r.rounds} rounds): validator ${r.validatorNsPerEntry.toFixed(1)} ns per L1 entry (target <= 50); mmu_update ${r.mmuUpdateNsPerRequest.toFixed(1)} ns per request\n`;
}

export function formatMmuBench(r: MmuBenchResult): string {
  const lines = [`validated page-table updates (mmu_update toggling RW), guest-measured, medians of single calls over ${r.runs} guest runs`];
  for (const s of SIZES) {
    lines.push(`  batch ${String(s).padStart(4)}: ${r.callUs[s]!.toFixed(1).padStart(8)} us per call, ${(r.callUs[s]! / s).toFixed(2).padStart(8)} us per update`);
  }
  lines.push(`  batch  512 + TLB flush (one multicall): ${r.flush512Us.toFixed(1)} us`);
  lines.push(`  null hypercall (same guest, right after each): ${r.nullUs.toFixed(1)} us`);
  lines.push(`  ratio 512-update batch / null hypercall: ${r.ratio512.toFixed(2)} (target <= 1.5); with the flush: ${r.ratioFlush512.toFixed(2)}`);
  lines.push(`in process: validator ${r.validatorNsPerEntry.toFixed(1)} ns per L1 entry (target <= 50); mmu_update ${r.mmuUpdateNsPerRequest.toFixed(0)} ns per request`);
  return lines.join('\n') + '\n';
}
