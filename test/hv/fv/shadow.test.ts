// fv-trap's shadow page tables on plain memory: the walk answers as the
// CPU would (permissions, large pages, the fault codes, accessed and dirty
// bits), the shadow entry built maps the machine frame with the guest's
// rights, a page the walker read as a table becomes read-only in every
// shadow, a written guest entry clears what was built from it, and every
// shadow frame goes back.

import { beforeEach, describe, expect, it } from 'vitest';
import { createPlainMemory } from '../../../src/engine/plain-memory.js';
import { FrameTable, OWNER_XEN } from '../../../src/hv/mm/frames.js';
import { XenSpace } from '../../../src/hv/mm/xen-space.js';
import { GuestRam, PF, ShadowTables, type Translation, type WalkMode } from '../../../src/hv/fv/shadow.js';

const MIB = 1 << 20;
const P = 1n, RW = 2n, US = 4n, A = 0x20n, D = 0x40n, PS = 0x80n, NX = 1n << 63n;

describe('fv-trap shadow page tables', () => {
  let ft: FrameTable;
  let ram: GuestRam;
  let shadow: ShadowTables;
  let changed: number;
  let mode: WalkMode;
  const e = (gpfn: number, flags: bigint) => (BigInt(gpfn) << 12n) | flags;
  // Guest tables: L4 at gpfn 1, L3 at 2, L2 at 3, L1 at 4; data pages from 16.
  beforeEach(() => {
    ft = new FrameTable(createPlainMemory(16 * MIB));
    const xen = new XenSpace(ft, true);
    ram = new GuestRam(ft, ft.allocateArray(7, 64));
    shadow = new ShadowTables(ram, xen.buildPerDomain(1), () => { changed++; }, 64);
    changed = 0;
    ram.write64(1, 0, e(2, P | RW | US));
    ram.write64(2, 0, e(3, P | RW | US));
    ram.write64(3, 0, e(4, P | RW | US));
    ram.write64(3, 1, e(512, P | RW | PS)); // 2 MiB at 0x200000, supervisor: guest-physical 2 MiB (beyond its 64 pages)
    ram.write64(4, 0, e(16, P | RW | US)); // 0x0: user, writable
    ram.write64(4, 1, e(17, P | US)); // 0x1000: user, read-only
    ram.write64(4, 2, e(18, P | RW)); // 0x2000: supervisor
    ram.write64(4, 3, e(19, P | RW | US | NX)); // 0x3000: no-execute
    ram.write64(4, 4, e(3, P | RW | US)); // 0x4000: the L2 table itself, writable by the guest
    mode = { cr3: 0x1000n, wp: true, nxe: true };
  });

  const user = { write: false, user: true, fetch: false };
  const walk = (va: number, access = user) => shadow.walk(BigInt(va), access, mode);

  it('translates as the CPU would, and sets accessed and dirty bits in the guest\'s entries', () => {
    const t = walk(0x10, { write: true, user: true, fetch: false }) as Translation;
    expect(t).toMatchObject({ gpfn: 16, writable: true, user: true, nx: false, dirty: true, path: [[1, 0], [2, 0], [3, 0], [4, 0]] });
    expect(ram.read64(4, 0) & (A | D)).toBe(A | D);
    expect(ram.read64(1, 0) & A).toBe(A);
  });

  it('gives the page-fault error code the CPU would', () => {
    expect(walk(0x5000)).toEqual({ fault: PF.U }); // not present
    expect(walk(0x2000)).toEqual({ fault: PF.P | PF.U }); // supervisor page from user mode
    expect(walk(0x1000, { write: true, user: true, fetch: false })).toEqual({ fault: PF.P | PF.W | PF.U }); // read-only
    expect(walk(0x3000, { write: false, user: true, fetch: true })).toEqual({ fault: PF.P | PF.U | PF.I }); // no-execute
    // The kernel writes a read-only page only with CR0.WP clear.
    expect(walk(0x1000, { write: true, user: false, fetch: false })).toEqual({ fault: PF.P | PF.W });
    mode = { ...mode, wp: false };
    expect(walk(0x1000, { write: true, user: false, fetch: false })).toMatchObject({ gpfn: 17, writable: true });
  });

  it('follows a large page to the 4 KiB frame inside it, and says when a table lies outside the guest', () => {
    expect(walk(0x203000, { write: false, user: false, fetch: false })).toMatchObject({ gpfn: 512 + 3, path: [[1, 0], [2, 0], [3, 1]] });
    ram.write64(2, 1, e(4096, P | RW | US)); // an L2 beyond the guest's 64 pages
    expect(walk(0x40000000)).toEqual({ outside: 4096n << 12n });
  });

  it('builds a shadow entry mapping the machine frame with the guest\'s rights, and refuses a frame outside the guest', () => {
    const va = 0x10n;
    const t = shadow.walk(va, { write: true, user: true, fetch: false }, mode) as Translation;
    expect(shadow.fill(va, t, mode, true)).toBeUndefined();
    // Walk the shadow itself: 4 levels down to the leaf.
    let table = shadow.root(mode.cr3, true);
    for (let level = 4; level > 1; level--) table = Number((ft.words(table)[0]! >> 12n) & 0xffffffffffn);
    const leaf = ft.words(table)[0]!;
    expect(Number((leaf >> 12n) & 0xffffffffffn)).toBe(ram.mfn(16));
    expect(leaf & (P | RW | US)).toBe(P | RW | US);
    // The guest's 2 MiB page points past its memory: no shadow entry, the frame is named.
    const big = shadow.walk(0x200000n, { write: false, user: false, fetch: false }, mode) as Translation;
    expect(shadow.fill(0x200000n, big, mode, false)).toBe(512);
  });

  it('makes a page it read as a table read-only in every shadow, even one mapped writable before', () => {
    // The guest maps its own L2 (gpfn 3) at 0x4000, writable: filled before the L2 is known as a table...
    ram.write64(4, 4, e(20, P | RW | US));
    const first = shadow.walk(0x4000n, { write: true, user: true, fetch: false }, mode) as Translation;
    shadow.fill(0x4000n, first, mode, true);
    expect(shadow.isTable(3)).toBe(true); // walked
    // ...and a mapping of the table frame itself comes out read-only.
    ram.write64(4, 4, e(3, P | RW | US));
    shadow.entryWritten(4, 4);
    const t = shadow.walk(0x4000n, { write: true, user: true, fetch: false }, mode) as Translation;
    expect(t.gpfn).toBe(3);
    shadow.fill(0x4000n, t, mode, true);
    let table = shadow.root(mode.cr3, true);
    for (let level = 4; level > 1; level--) table = Number((ft.words(table)[0]! >> 12n) & 0xffffffffffn);
    expect(ft.words(table)[4]! & RW).toBe(0n);
  });

  it('clears the shadow entries built from a guest entry when the guest writes it', () => {
    for (const va of [0x0n, 0x1000n]) {
      const t = shadow.walk(va, user, mode) as Translation;
      shadow.fill(va, t, mode, true);
    }
    let table = shadow.root(mode.cr3, true);
    for (let level = 4; level > 1; level--) table = Number((ft.words(table)[0]! >> 12n) & 0xffffffffffn);
    expect(ft.words(table)[1]! & P).toBe(P);
    const before = changed;
    shadow.entryWritten(4, 1);
    expect(ft.words(table)[1]).toBe(0n);
    expect(ft.words(table)[0]! & P).toBe(P); // only what came from that entry
    expect(changed).toBeGreaterThan(before);
    expect(shadow.counts.invalidations).toBe(1);
  });

  it('keeps a shadow per CR3 and mode, drops them all when its pool runs out, and gives every frame back', () => {
    const free = ft.free;
    const k = shadow.root(0x1000n, false), u = shadow.root(0x1000n, true);
    expect(k).not.toBe(u);
    expect(shadow.root(0x1000n, false)).toBe(k);
    expect(ft.owner[k]).toBe(OWNER_XEN);
    for (let i = 0; i < 70; i++) shadow.root(BigInt(0x10000 + i * 0x1000), false); // past the 64-frame pool
    expect(shadow.counts.flushes).toBeGreaterThan(0);
    expect(shadow.frameCount).toBeLessThanOrEqual(64);
    shadow.release();
    expect(ft.free).toBe(free);
  });
});
