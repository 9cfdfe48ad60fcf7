// The hypercall fuzzer (src/fuzz/): 10^5 fuzzed calls with a fixed seed
// must find no host exception and no invariant violation, leave the victim
// intact and return every frame (what CI runs); the PRNG and the call
// stream are deterministic; planted faults are reported with their seed
// and index. Runs on the scripted engine (no /dev/kvm).

import { describe, expect, it } from 'vitest';
import { Prng } from '../../src/fuzz/prng.js';
import { CallGenerator, type FuzzCall } from '../../src/fuzz/generate.js';
import { runFuzz } from '../../src/fuzz/runner.js';
import { formatReport } from '../../src/fuzz/report.js';
import { FuzzWorld } from '../../src/fuzz/world.js';

const CI_SEED = 20261207;

describe('hypercall fuzzer', () => {
  it('runs 10^5 calls with no host exception or violation, the victim intact and every frame returned', () => {
    const r = runFuzz({ calls: 100_000, seed: CI_SEED });
    expect(r.findings).toEqual([]);
    expect(r.victimIntact).toBe(true);
    expect(r.framesReturned).toBe(true);
    // Rule: the run really exercised the core: every transport, successful page-table updates, audits along the way.
    expect(Object.keys(r.transports).sort()).toEqual(['page', 'syscall', 'vmcall']);
    expect(r.histogram.mmu_update?.['0']).toBeGreaterThan(0);
    expect(r.histogram.mmuext_op?.['0']).toBeGreaterThan(0);
    expect(r.histogram.multicall?.['0']).toBeGreaterThan(0);
    expect(r.audits).toBeGreaterThanOrEqual(100);
    expect(Object.keys(r.histogram).length).toBeGreaterThan(100);
  }, 180_000);

  it('draws the same numbers from the same seed, and others from another', () => {
    const take = (seed: number) => { const p = new Prng(seed); return Array.from({ length: 64 }, () => p.u32()); };
    expect(take(7)).toEqual(take(7));
    expect(take(7)).not.toEqual(take(8));
    expect(take(0)).not.toEqual(take(2 ** 32)); // the seed's high bits count
    const p = new Prng(3);
    for (let i = 0; i < 1000; i++) {
      const n = p.below(10);
      expect(n >= 0 && n < 10 && Number.isInteger(n)).toBe(true);
    }
  });

  it('generates the same call sequence from the same seed', () => {
    const world = new FuzzWorld();
    try {
      const calls = (seed: number): FuzzCall[] => { const g = new CallGenerator(new Prng(seed), world.targets()); return Array.from({ length: 500 }, () => g.next()); };
      expect(calls(11)).toEqual(calls(11));
      expect(calls(11)).not.toEqual(calls(12));
    } finally {
      world.close();
    }
  });

  it('replays: two runs of one seed issue the same calls and get the same results', () => {
    const run = () => {
      const seen: string[] = [];
      const r = runFuzz({ calls: 3000, seed: 5, auditEvery: 500, trace: (i, c) => seen.push(`${i}:${c.nr}:${c.via}:${c.args.join(',')}`) });
      return { seen, histogram: r.histogram, ends: r.domainEnds };
    };
    expect(run()).toEqual(run());
  });

  it('reports a planted page-type corruption with the seed and the index of the audit that saw it', () => {
    const r = runFuzz({
      calls: 1000, seed: 9, auditEvery: 250,
      afterCall: (i, w) => { if (i === 600) w.hv.frames.typeCount[w.victim.layout.l4Mfn]! += 1; },
    });
    const v = r.findings.filter((f) => f.kind === 'violation');
    expect(v.length).toBeGreaterThan(0);
    // Seen by the first audit after it: the scheduled one at call 749, or one a domain's end brought earlier.
    const at = v[0]!.index;
    expect(at >= 600 && at <= 749, `seen at ${at}`).toBe(true);
    expect(v[0]).toMatchObject({ seed: 9, message: expect.stringMatching(/page-type audit/) });
    expect(formatReport(r)).toContain(`npm run fuzz -- --seed 9 --calls ${at + 1} --trace-from ${at}`);
  });

  it('reports a planted change to the victim\'s memory', () => {
    const r = runFuzz({
      calls: 600, seed: 9, auditEvery: 200,
      afterCall: (i, w) => { if (i === 300) w.hv.frames.bytes(w.victim.memory.mfnOf(700))[5]! ^= 1; },
    });
    expect(r.victimIntact).toBe(false);
    const seen = r.findings.find((f) => f.message === 'the victim\'s memory changed');
    expect(seen).toMatchObject({ kind: 'violation', seed: 9 });
    expect(seen!.index >= 300 && seen!.index <= 399, `seen at ${seen!.index}`).toBe(true);
  });

  it('reports a planted host exception at the call that raised it, and goes on with a fresh domain', () => {
    const r = runFuzz({
      calls: 400, seed: 4,
      afterCall: (i, w) => {
        if (i === 123) w.fuzz.vcpu.handleExit = () => { throw new Error('planted'); };
      },
    });
    const h = r.findings.filter((f) => f.kind === 'host-exception');
    expect(h).toHaveLength(1);
    expect(h[0]).toMatchObject({ seed: 4, index: 124, message: expect.stringMatching(/planted/) });
    expect(r.domainEnds['host-exception']).toBe(1);
    expect(r.framesReturned).toBe(true);
  });
});
