// The page-type system, rule by rule (PT-n in src/hv/mm/page-types.ts), on
// plain memory (no KVM), with the audit run after every operation, and
// property-based tests driving it with random operation sequences.

import { beforeEach, describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { createPlainMemory } from '../../../src/engine/plain-memory.js';
import { FrameTable, PageType } from '../../../src/hv/mm/frames.js';
import { entryFrame, NOT_STALE, PageTypeError, PageTypes, PINNED, takesAway, VALIDATED } from '../../../src/hv/mm/page-types.js';
import { auditPageTypes } from '../../../src/hv/mm/page-audit.js';

const MIB = 1 << 20;
const P = 1n, RW = 2n, US = 4n, PWT = 8n, PCD = 0x10n, PSE = 0x80n, G = 0x100n;
const ME = 1, OTHER = 2;

let ft: FrameTable;
let pt: PageTypes;
let mine: number[];
let theirs: number[];
let roots: number[];

function entry(table: number, i: number, target: number, flags: bigint): void {
  ft.words(table)[i] = (BigInt(target) << 12n) | flags;
}
function audit(): void {
  expect(auditPageTypes(ft, [{ domid: ME, roots }, { domid: OTHER, roots: [] }])).toEqual([]);
}
function refused(f: () => void, rule: string, errno?: number): void {
  const before = snapshot();
  let err: unknown;
  try { f(); } catch (e) { err = e; }
  expect(err, `expected ${rule}`).toBeInstanceOf(PageTypeError);
  expect((err as PageTypeError).rule).toBe(rule);
  if (errno !== undefined) expect((err as PageTypeError).errno).toBe(errno);
  expect(snapshot()).toEqual(before); // a refusal changes nothing
  audit();
}
function snapshot(): string {
  return [ft.type, ft.typeCount, ft.refCount, ft.flags].map((a) => Array.from(a).join(',')).join('|');
}
const filled: number[] = [];

beforeEach(() => {
  ft = new FrameTable(createPlainMemory(2 * MIB));
  filled.length = 0;
  pt = new PageTypes(ft, (mfn) => { filled.push(mfn); ft.words(mfn)[256] = 0xabc000n | P; });
  mine = ft.allocate(ME, 16);
  theirs = ft.allocate(OTHER, 2);
  roots = [];
});

describe('page-type rules', () => {
  it('PT-1: a frame changes type only when its type count is zero', () => {
    const [l1, data] = mine as [number, number];
    entry(l1, 0, data, P | RW | US);
    pt.pin(l1, 1, ME);                                       // data: writable x1
    expect(ft.type[data]).toBe(PageType.writable);
    refused(() => pt.getPageType(data, PageType.l2, ME), 'PT-4');
    pt.unpin(l1, ME);                                        // devalidates: data untyped again
    expect(ft.type[data]).toBe(PageType.none);
    pt.getPageAndType(data, PageType.l2, ME);                // an empty L2 now
    expect(ft.type[data]).toBe(PageType.l2);
    pt.putPageAndType(data);
    audit();
  });

  it('PT-2: a table is typed only if every present entry validates; a failure takes nothing', () => {
    const [l2, l1a, l1b, data] = mine as [number, number, number, number];
    entry(l1a, 0, data, P | RW | US);
    entry(l1b, 0, theirs[0]!, P | US);                       // a foreign frame
    entry(l2, 0, l1a, P | RW | US);
    entry(l2, 1, l1b, P | RW | US);
    refused(() => pt.pin(l2, 2, ME), 'PT-5');
    expect([ft.type[l2], ft.type[l1a], ft.type[data]]).toEqual([PageType.none, PageType.none, PageType.none]);
    entry(l1b, 0, data, P | US);
    pt.pin(l2, 2, ME);
    expect([ft.type[l2], ft.type[l1a], ft.type[l1b]]).toEqual([PageType.l2, PageType.l1, PageType.l1]);
    expect(ft.flags[l1a]! & VALIDATED).toBe(VALIDATED);
    audit();
  });

  it('PT-3: a page-table frame cannot be mapped writable, not even by itself', () => {
    const [l1, other] = mine as [number, number];
    entry(l1, 0, l1, P | RW | US);
    refused(() => pt.pin(l1, 1, ME), 'PT-3');
    entry(l1, 0, l1, P | US);                                // read-only: allowed
    pt.pin(l1, 1, ME);
    entry(other, 5, l1, P | RW | US);
    refused(() => pt.pin(other, 1, ME), 'PT-3', 16);
    audit();
  });

  it('PT-4: a frame mapped writable cannot become a page table', () => {
    const [l1, data] = mine as [number, number];
    entry(l1, 3, data, P | RW | US);
    pt.pin(l1, 1, ME);
    refused(() => pt.pin(data, 1, ME), 'PT-4');
    audit();
  });

  it('PT-5: entries map only the domain\'s own frames, and nothing outside machine memory', () => {
    const [l1] = mine as [number];
    entry(l1, 0, theirs[0]!, P | US);
    refused(() => pt.pin(l1, 1, ME), 'PT-5', 16);
    entry(l1, 0, ft.count + 10, P | US);
    refused(() => pt.pin(l1, 1, ME), 'PT-5', 1);
    refused(() => pt.pin(theirs[1]!, 1, ME), 'PT-5', 22);      // pins, roots, upper levels: -EINVAL as Xen
  });

  it('PT-6: superpages, cache-control, global and bit 62 are refused', () => {
    const [l1, l2, l3, data] = mine as [number, number, number, number];
    for (const [table, level, bits] of [
      [l2, 2, PSE], [l3, 3, PSE], [l2, 2, PWT], [l3, 3, G], [l1, 1, PCD], [l1, 1, PSE], [l1, 1, 1n << 62n], [l2, 2, 1n << 62n],
    ] as const) {
      ft.words(table).fill(0n);
      entry(table, 7, data, P | US | bits);
      refused(() => pt.pin(table, level, ME), 'PT-6', 22);
      ft.words(table).fill(0n);
    }
    entry(l1, 7, data, P | US | (1n << 63n) | G | (1n << 61n) | (1n << 52n)); // NX, global and bits 52-61 are fine in an L1
    pt.pin(l1, 1, ME);
    audit();
  });

  it('PT-7: the hypervisor\'s L4 slots are skipped by validation and filled by the hypervisor', () => {
    const [l4] = mine as [number];
    for (let slot = 256; slot <= 271; slot++) ft.words(l4)[slot] = 0xdeadbeef000n | P | PSE; // garbage
    pt.pin(l4, 4, ME);
    expect(filled).toEqual([l4]);
    expect(ft.words(l4)[256]).toBe(0xabc000n | P);
    audit();
  });

  it('PT-8: linear page tables are refused', () => {
    const [l4, l3, l3b] = mine as [number, number, number];
    entry(l4, 0, l4, P | US);                                // L4 -> itself
    refused(() => pt.pin(l4, 4, ME), 'PT-8', 22);
    ft.words(l4).fill(0n);
    pt.pin(l3b, 3, ME);
    entry(l3, 0, l3b, P | US);                               // L3 -> an L3
    refused(() => pt.pin(l3, 3, ME), 'PT-8');
    entry(l4, 1, l4, 0n);                                    // not present: fine
    pt.pin(l4, 4, ME);
    audit();
  });

  it('PT-9: the last type reference devalidates a table and drops what its entries held', () => {
    const [l2, l1, d1, d2] = mine as [number, number, number, number];
    entry(l1, 0, d1, P | RW | US);
    entry(l1, 1, d2, P | US);
    entry(l2, 0, l1, P | RW | US);
    pt.pin(l2, 2, ME);
    expect([ft.typeCount[l1], ft.refCount[d1], ft.refCount[d2]]).toEqual([1, 2, 2]);
    pt.unpin(l2, ME);
    expect([ft.type[l1], ft.typeCount[l1], ft.type[d1], ft.refCount[d1], ft.refCount[d2]]).toEqual([PageType.none, 0, PageType.none, 1, 1]);
    audit();
  });

  it('PT-10: one pin per table; unpinning a table in use keeps it valid', () => {
    const [l2, l1] = mine as [number, number];
    entry(l2, 0, l1, P | US);
    pt.pin(l1, 1, ME);
    refused(() => pt.pin(l1, 1, ME), 'PT-10', 22);
    pt.pin(l2, 2, ME);                                       // l1 now also held by l2's entry
    pt.unpin(l1, ME);
    expect(ft.type[l1]).toBe(PageType.l1);
    expect(ft.flags[l1]! & (VALIDATED | PINNED)).toBe(VALIDATED);
    refused(() => pt.unpin(l1, ME), 'PT-10', 22);
    audit();
  });

  it('PT-11: a CR3 holds a type reference on its L4', () => {
    const [l4] = mine as [number];
    pt.pin(l4, 4, ME);
    pt.getPageAndType(l4, PageType.l4, ME);
    roots.push(l4);
    pt.unpin(l4, ME);
    expect(ft.type[l4]).toBe(PageType.l4);                   // still the CR3
    expect(ft.flags[l4]! & VALIDATED).toBe(VALIDATED);
    audit();
    pt.putPageAndType(roots.pop()!);
    expect(ft.type[l4]).toBe(PageType.none);
    audit();
  });

  it('PT-12: hypervisor frames (the M2P) cannot be mapped by a guest', () => {
    const [l1] = mine as [number];
    entry(l1, 0, ft.m2pFirst, P | US);
    refused(() => pt.pin(l1, 1, ME), 'PT-5', 16);
  });

  it('validation sets the user bit of every present entry, as Xen does for 64-bit PV guests', () => {
    const [l2, l1, data] = mine as [number, number, number];
    entry(l1, 0, data, P | RW);                              // no US
    entry(l2, 0, l1, P | RW);
    pt.pin(l2, 2, ME);
    expect(ft.words(l1)[0]! & US).toBe(US);
    expect(ft.words(l2)[0]! & US).toBe(US);
    audit();
  });

  it('PT-13: counts cannot overflow', () => {
    const [data] = mine as [number];
    ft.refCount[data] = 0xfffffff0;
    expect(() => pt.getPage(data, ME)).toThrow(/PT-13/);
    ft.refCount[data] = 1;
  });
});

describe('page-type system under random operations', () => {
  const FLAGS = [0n, P | US, P | RW | US, P | RW | US | PSE, P | US | PCD];
  const op = fc.oneof(
    fc.record({ kind: fc.constant('write' as const), table: fc.nat(11), index: fc.nat(3), target: fc.nat(13), flags: fc.nat(FLAGS.length - 1) }),
    fc.record({ kind: fc.constant('pin' as const), frame: fc.nat(11), level: fc.integer({ min: 1, max: 4 }) }),
    fc.record({ kind: fc.constant('unpin' as const), frame: fc.nat(11) }),
    fc.record({ kind: fc.constant('cr3' as const), frame: fc.nat(11) }),
    fc.record({ kind: fc.constant('drop-cr3' as const) }),
  );

  it('keeps every count equal to what pins, CR3s and validated entries hold, and refusals change nothing', () => {
    fc.assert(fc.property(fc.array(op, { maxLength: 60 }), (ops) => {
      ft = new FrameTable(createPlainMemory(2 * MIB));
      pt = new PageTypes(ft);
      mine = ft.allocate(ME, 12);
      theirs = ft.allocate(OTHER, 2);
      roots = [];
      const frames = [...mine, ...theirs];
      for (const o of ops) {
        const before = snapshot();
        try {
          switch (o.kind) {
            case 'write': {
              const table = mine[o.table]!;
              // Guests change validated tables only by hypercall: raw writes go to untyped or data frames.
              if (ft.typeCount[table]! > 0 && ft.type[table] !== PageType.writable) continue;
              entry(table, o.index === 3 ? 256 : o.index, frames[o.target]!, FLAGS[o.flags]!);
              break;
            }
            case 'pin': pt.pin(mine[o.frame]!, o.level as 1 | 2 | 3 | 4, ME); break;
            case 'unpin': pt.unpin(mine[o.frame]!, ME); break;
            case 'cr3': pt.getPageAndType(mine[o.frame]!, PageType.l4, ME); roots.push(mine[o.frame]!); break;
            case 'drop-cr3': if (roots.length) pt.putPageAndType(roots.pop()!); break;
          }
        } catch (e) {
          if (!(e instanceof PageTypeError)) throw e;
          if (snapshot() !== before) return false;
        }
        const problems = auditPageTypes(ft, [{ domid: ME, roots }, { domid: OTHER, roots: [] }]);
        if (problems.length) throw new Error(problems.join('\n'));
      }
      // Dropping every pin and CR3 leaves nothing typed.
      for (const r of roots.splice(0)) pt.putPageAndType(r);
      for (const m of mine) if (ft.flags[m]! & PINNED) pt.unpin(m, ME);
      return mine.every((m) => ft.typeCount[m] === 0 && ft.refCount[m] === 1);
    }), { numRuns: 300 });
  });
});

describe('the one L1 update path (PageTypes.setL1Entry)', () => {
  // Two identical worlds: one applies each update with setL1Entry (its
  // fast paths: harmless bits only, references taken inline), the other
  // with the reference model, getEntry, a store and putEntry. Frame state,
  // memory and the stale frame reported must stay identical, whatever the
  // entries.
  const FLAGS = [0n, P, P | US, P | RW, P | RW | US | 0x60n, P | RW | PWT, P | PSE, P | (1n << 62n), P | RW | (1n << 63n), P | 0x20n];
  function world() {
    const w = { ft: new FrameTable(createPlainMemory(2 * MIB)) } as { ft: FrameTable; pt: PageTypes; l1: number; data: number[]; foreign: number };
    w.pt = new PageTypes(w.ft);
    const mine = w.ft.allocate(ME, 10);
    w.foreign = w.ft.allocate(OTHER, 1)[0]!;
    w.l1 = mine[0]!;
    w.data = mine.slice(1);
    w.pt.pin(w.l1, 1, ME);
    // Some frames are also mapped writable elsewhere (a held writable reference), some not.
    for (const m of w.data.slice(0, 4)) w.pt.getPageAndType(m, PageType.writable, ME);
    w.pt.pin(w.data[8]!, 1, ME); // a frame that is itself an L1
    return w;
  }
  const state = (w: ReturnType<typeof world>) =>
    [w.ft.type, w.ft.typeCount, w.ft.refCount, w.ft.flags].map((a) => Array.from(a).join(',')).join('|') + '|' + Array.from(w.ft.words32(w.l1)).join(',');

  /** The reference model of an L1 entry update: what setL1Entry must do, without its fast paths. */
  function reference(w: ReturnType<typeof world>, index: number, lo: number, hi: number): number {
    const words = w.ft.words32(w.l1);
    const oldLo = words[2 * index]!, oldHi = words[2 * index + 1]!;
    if (lo & 1) lo = (lo | Number(US)) >>> 0;
    w.pt.getEntry(1, lo, hi, ME);
    words[2 * index] = lo;
    words[2 * index + 1] = hi;
    w.pt.putEntry(1, oldLo, oldHi);
    return oldLo & 1 && takesAway(oldLo, oldHi, lo, hi) ? entryFrame(oldLo, oldHi) : NOT_STALE;
  }

  it('does exactly what getEntry, a store and putEntry do', () => {
    const upd = fc.record({ index: fc.nat(7), target: fc.nat(10), flags: fc.nat(FLAGS.length - 1) });
    fc.assert(fc.property(fc.array(upd, { maxLength: 80 }), (list) => {
      const a = world(), b = world();
      for (const u of list) {
        const target = u.target === 10 ? a.foreign : a.data[u.target % 9]!;
        const v = (BigInt(target) << 12n) | FLAGS[u.flags]!;
        const lo = Number(v & 0xffffffffn) >>> 0, hi = Number(v >> 32n) >>> 0;
        let ra: number | string, rb: number | string;
        try { ra = a.pt.setL1Entry(a.ft.words32(a.l1), u.index, lo, hi, ME); } catch (e) { ra = (e as PageTypeError).rule; }
        try { rb = reference(b, u.index, lo, hi); } catch (e) { rb = (e as PageTypeError).rule; }
        if (ra !== rb || state(a) !== state(b)) return false;
      }
      return auditPageTypes(a.ft, [{ domid: ME, roots: [], held: a.data.slice(0, 4) }, { domid: OTHER, roots: [] }]).length === 0;
    }), { numRuns: 400 });
  });
});
