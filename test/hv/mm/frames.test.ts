// Machine frames: the free pool, ownership, the M2P table and domain
// memory. Every frame a domain had returns to the pool when it dies, and
// the pool never hands out a frame twice.

import { describe, expect, it } from 'vitest';
import { createPlainMemory } from '../../../src/engine/plain-memory.js';
import { FrameError, FrameTable, INVALID_PFN, OWNER_FREE, OWNER_XEN, PAGE_SIZE } from '../../../src/hv/mm/frames.js';
import { DomainMemory } from '../../../src/hv/mm/domain-memory.js';

const MIB = 1 << 20;

describe('frame table', () => {
  it('reserves the M2P table for the hypervisor and marks every frame unowned in it', () => {
    const ft = new FrameTable(createPlainMemory(16 * MIB));
    expect(ft.count).toBe(4096);
    expect(ft.m2pFrames).toBe(8); // 4096 frames x 8 bytes
    for (let i = 0; i < ft.m2pFrames; i++) expect(ft.owner[ft.m2pFirst + i]).toBe(OWNER_XEN);
    expect(ft.free).toBe(4096 - 8);
    expect(ft.m2p(100)).toBe(INVALID_PFN);
  });

  it('hands out each frame once, and refuses to over-allocate', () => {
    const ft = new FrameTable(createPlainMemory(4 * MIB));
    const a = ft.allocate(1, 100);
    const b = ft.allocate(2, 100);
    expect(new Set([...a, ...b]).size).toBe(200);
    expect(() => ft.allocate(3, ft.free + 1)).toThrow(FrameError);
    expect(() => ft.allocate(3, ft.free + 1)).toThrow(/frames requested/);
  });

  it('refuses to free a frame twice or a frame still referenced', () => {
    const ft = new FrameTable(createPlainMemory(4 * MIB));
    const [mfn] = ft.allocate(1, 1);
    ft.refCount[mfn!] = 2;
    expect(() => ft.release(mfn!)).toThrow(/still referenced/);
    ft.refCount[mfn!] = 1;
    ft.release(mfn!);
    expect(() => ft.release(mfn!)).toThrow(/already free/);
    expect(() => ft.release(1 << 30)).toThrow(/does not exist/);
  });
});

describe('domain memory', () => {
  it('maps pseudo-physical frames to machine frames and records them in the M2P', () => {
    const ft = new FrameTable(createPlainMemory(16 * MIB));
    const d = DomainMemory.create(ft, 1, 2 * MIB);
    expect(d.nrPages).toBe(512);
    for (let pfn = 0; pfn < d.nrPages; pfn++) {
      const mfn = d.mfnOf(pfn);
      expect(ft.owner[mfn]).toBe(1);
      expect(ft.m2p(mfn)).toBe(BigInt(pfn));
    }
    expect(() => d.mfnOf(512)).toThrow(/outside/);
  });

  it('returns every frame to the pool when destroyed, zeroed, and leaves other domains alone', () => {
    const ft = new FrameTable(createPlainMemory(16 * MIB));
    const before = ft.free;
    const a = DomainMemory.create(ft, 1, 4 * MIB);
    const b = DomainMemory.create(ft, 2, 1 * MIB);
    a.page(7).fill(0xaa);
    b.page(3).fill(0xbb);
    ft.typeCount[a.mfnOf(0)] = 3; // references held by a's own page tables die with it
    ft.refCount[a.mfnOf(0)] = 5;
    expect(a.destroy()).toBe(1024);
    expect(ft.free).toBe(before - 256);
    expect(ft.framesOf(1)).toEqual([]);
    expect(ft.framesOf(OWNER_FREE).length).toBe(ft.free);
    expect(b.page(3).every((x) => x === 0xbb)).toBe(true);
    // Recycled frames carry nothing of their last owner.
    const c = DomainMemory.create(ft, 3, ft.free * PAGE_SIZE);
    for (let pfn = 0; pfn < c.nrPages; pfn++) expect(c.page(pfn).some((x) => x !== 0)).toBe(false);
    expect(b.destroy() + c.destroy()).toBe(256 + c.nrPages);
    expect(ft.free).toBe(before);
  });
});
