// The stale-translation tracker (src/hv/mm/tlb.ts) against a fake engine
// cache that records what it was asked to forget, alone and driven by the
// page-type system. The KVM side (that forgetting a frame really makes the
// guest see the new entry) is in test/engine/kvm-engine.test.ts, and the
// attacks through stale translations are the stale-tlb-* hostile guests.

import { beforeEach, describe, expect, it } from 'vitest';
import { createPlainMemory } from '../../../src/engine/plain-memory.js';
import { FrameTable, PageType } from '../../../src/hv/mm/frames.js';
import { PageTypes } from '../../../src/hv/mm/page-types.js';
import { DomainTranslations, MAX_FORGET_RUNS, MAX_STALE_LEAVES, TranslationMarks } from '../../../src/hv/mm/tlb.js';

const MIB = 1 << 20;
let calls: string[];
let marks: TranslationMarks;
let tlb: DomainTranslations;

function tracker(log: string[], m: TranslationMarks): DomainTranslations {
  return new DomainTranslations({ forget: (mfn, n) => log.push(`forget ${mfn}+${n}`), dropAll: () => log.push('drop') }, m);
}

beforeEach(() => {
  calls = [];
  marks = new TranslationMarks(2 * MAX_STALE_LEAVES);
  tlb = tracker(calls, marks);
});

describe('stale translations', () => {
  it('PT-14: an update flushes nothing; a flush forgets the old targets, in runs, once', () => {
    for (const mfn of [7, 5, 6, 5, 10]) tlb.leafChanged(mfn);
    expect(calls).toEqual([]);
    expect(tlb.pending).toBe(true);
    tlb.flush();
    expect(calls).toEqual(['forget 5+3', 'forget 10+1']);
    expect(tlb.pending).toBe(false);
    tlb.flush(); // nothing left
    expect(calls).toHaveLength(2);
    expect(tlb.stats).toMatchObject({ flushRequests: 2, forgetCalls: 2, framesForgotten: 4, drops: 0 });
  });

  it('PT-14: a changed upper-level entry, too many runs or too many frames make the flush drop everything', () => {
    tlb.leafChanged(3);
    tlb.upperChanged();
    tlb.flush();
    expect(calls).toEqual(['drop']);
    calls.length = 0;
    for (let i = 0; i <= MAX_FORGET_RUNS; i++) tlb.leafChanged(2 * i);
    tlb.flush();
    expect(calls).toEqual(['drop']);
    calls.length = 0;
    for (let i = 0; i <= MAX_STALE_LEAVES; i++) tlb.leafChanged(i); // one run, but too many frames to track
    tlb.flush();
    expect(calls).toEqual(['drop']);
  });

  it('PT-15: a stale writable translation to a frame becoming a table is forgotten first, alone', () => {
    tlb.leafChanged(40);
    tlb.leafChanged(41);
    tlb.typeTaken(40, PageType.l1);
    expect(calls).toEqual(['forget 40+1']);
    tlb.typeTaken(12, PageType.l2); // nothing stale about it
    expect(calls).toHaveLength(1);
    tlb.flush();
    expect(calls).toEqual(['forget 40+1', 'forget 41+1']); // 40 is not forgotten twice
    // A descriptor page is protected the same way.
    tlb.leafChanged(50);
    tlb.typeTaken(50, PageType.segDesc);
    expect(calls.at(-1)).toBe('forget 50+1');
  });

  it('PT-15: with a changed upper-level entry pending, a new table or a former table made writable drops everything first', () => {
    tlb.tableValidated(20);
    tlb.upperChanged();
    tlb.typeTaken(30, PageType.writable); // never a table: no stale link can reach it
    expect(calls).toEqual([]);
    tlb.typeTaken(20, PageType.writable); // a former table: a stale link may still reach it
    expect(calls).toEqual(['drop']);
    expect(tlb.pending).toBe(false);
    tlb.upperChanged();
    tlb.typeTaken(31, PageType.l1);
    expect(calls).toEqual(['drop', 'drop']);
    expect(tlb.stats.typeChangeFlushes).toBe(2);
  });

  it('PT-16: a former table the hypervisor rewrote as data is not reused when it becomes a table again', () => {
    tlb.tableValidated(60);
    tlb.hostWrote(61); // never a table: the engine cannot hold it as one
    tlb.typeTaken(61, PageType.l1);
    expect(calls).toEqual([]);
    tlb.hostWrote(60);
    tlb.typeTaken(60, PageType.writable); // data again: fine
    expect(calls).toEqual([]);
    tlb.typeTaken(60, PageType.l1);
    expect(calls).toEqual(['drop']);
    // After the drop the engine holds no table: a rewrite of 60 is harmless until it is validated again.
    tlb.hostWrote(60);
    tlb.typeTaken(60, PageType.l1);
    expect(calls).toEqual(['drop']);
  });

  it('keeps each domain\'s marks apart', () => {
    const other: string[] = [];
    const b = tracker(other, marks);
    tlb.leafChanged(70);
    tlb.tableValidated(71);
    tlb.hostWrote(71);
    b.typeTaken(70, PageType.l1);
    b.typeTaken(71, PageType.l1);
    expect(other).toEqual([]);
    b.flush();
    expect(other).toEqual([]);
  });
});

describe('stale translations through the page-type system', () => {
  it('PT-15: pinning a frame whose writable mapping was just removed forgets that frame', () => {
    const ft = new FrameTable(createPlainMemory(4 * MIB));
    const log: string[] = [];
    const t = tracker(log, new TranslationMarks(ft.count));
    const pt = new PageTypes(ft, () => {}, { typeTaken: (m, ty) => t.typeTaken(m, ty), tableValidated: (m) => t.tableValidated(m) });
    const [l1, x] = ft.allocate(1, 2) as [number, number];
    pt.getPageAndType(x, PageType.writable, 1); // a writable mapping of x
    pt.putPageAndType(x); // ... removed by an update, which the tracker hears of
    t.leafChanged(x);
    pt.pin(x, 1, 1);
    expect(log).toEqual([`forget ${x}+1`]);
    pt.pin(l1, 1, 1);
    expect(log).toHaveLength(1);
  });
});
