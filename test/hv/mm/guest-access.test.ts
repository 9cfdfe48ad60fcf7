// Hypercall arguments are read and written through the guest's own page
// tables; every bad pointer (unmapped, read-only for a write, kernel-only,
// non-canonical, in the hypervisor area, wrapping) is a GuestFault (-EFAULT).

import { beforeEach, describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { createPlainMemory } from '../../../src/engine/plain-memory.js';
import { FrameTable, PAGE_SIZE } from '../../../src/hv/mm/frames.js';
import { GuestFault, GuestMemory, guestRangeOk } from '../../../src/hv/mm/guest-access.js';
import { TableBuilder } from '../../support/page-tables.js';

const MIB = 1 << 20;

describe('guest memory access', () => {
  let ft: FrameTable;
  let tb: TableBuilder;
  let gm: GuestMemory;
  let rw: number;
  let ro: number;

  beforeEach(() => {
    ft = new FrameTable(createPlainMemory(8 * MIB));
    tb = new TableBuilder(ft);
    [rw, ro] = ft.allocate(1, 2) as [number, number];
    tb.map(0x400000n, rw, 7n);          // P|RW|US
    tb.map(0x401000n, ro, 5n);          // P|US, read-only
    tb.map(0x403000n, rw, 3n);          // P|RW, no US: not reachable from ring 3
    tb.map(0xffff880000000000n, ro, 5n); // first guest address above the hole
    gm = new GuestMemory(ft, BigInt(tb.l4) << 12n);
  });

  it('reads and writes through the page tables, across page boundaries', () => {
    gm.writeU64(0x400ff8n, 0x1122334455667788n);
    expect(ft.bytes(rw)[0xff8]).toBe(0x88);
    ft.bytes(ro).set([1, 2, 3, 4], 0);
    expect([...gm.read(0x400ffen, 6)]).toEqual([0x22, 0x11, 1, 2, 3, 4]); // the last two bytes written above, then the next page
    expect(gm.readU32(0xffff880000000000n)).toBe(0x04030201);
  });

  it('reads and writes words within a page and across a page boundary alike', () => {
    expect(() => gm.writeU32(0x400ffen, 0xa1b2c3d4)).toThrow(/read-only/); // crosses into the read-only page: refused whole
    expect(ft.bytes(rw)[0xffe]).toBe(0);
    gm.writeU32(0x400ff0n, 0xa1b2c3d4);
    gm.writeU64(0x400ff8n, 0x0102030405060708n);
    expect(gm.readU32(0x400ff0n)).toBe(0xa1b2c3d4);
    expect(gm.readU64(0x400ff8n)).toBe(0x0102030405060708n);
    ft.bytes(ro).set([9, 9], 0);
    expect(gm.readU32(0x400ffen)).toBe(0x09090102); // two bytes from each page
  });

  it('tells its listener of every frame the hypervisor writes, and of none it only reads', () => {
    const written: number[] = [];
    const heard = new GuestMemory(ft, BigInt(tb.l4) << 12n, (mfn) => written.push(mfn));
    heard.read(0x400000n, 16);
    heard.readU32(0x400000n);
    heard.readU64(0x401000n);
    expect(written).toEqual([]);
    heard.writeU32(0x400000n, 1);
    heard.writeU64(0x400008n, 2n);
    heard.write(0x400010n, new Uint8Array(4));
    expect(written).toEqual([rw, rw, rw]);
  });

  it('faults on unmapped, read-only (for writes) and supervisor-only pages', () => {
    expect(() => gm.read(0x402000n, 1)).toThrow(/not present at level 1/);
    expect(() => gm.read(0x80000000n, 1)).toThrow(/not present at level 3/);
    expect(() => gm.writeU32(0x401000n, 1)).toThrow(/read-only at level 1/);
    expect(() => gm.read(0x403000n, 1)).toThrow(/not accessible from the guest/);
  });

  it('writes nothing when any page of the range faults', () => {
    expect(() => gm.write(0x400ffcn, new Uint8Array(8).fill(9))).toThrow(GuestFault);
    expect(ft.bytes(rw).subarray(0xffc).every((b) => b === 0)).toBe(true);
  });

  it("refuses non-canonical, hypervisor-area and wrapping ranges before walking", () => {
    expect(() => gm.read(0x0000800000000000n, 1)).toThrow(/not a guest address|not entirely guest memory/);
    expect(() => gm.read(0xffff800000000000n, 8)).toThrow(GuestFault);  // M2P / hypervisor area
    expect(() => gm.read(0xffff87fffffffff8n, 8)).toThrow(GuestFault);
    expect(() => gm.read(0x00007ffffffffffcn, 8)).toThrow(/not entirely guest memory/); // crosses into non-canonical
    expect(() => gm.read(0xfffffffffffffffcn, 8)).toThrow(/not entirely guest memory/); // wraps
    expect(guestRangeOk(0xffff880000000000n, PAGE_SIZE)).toBe(true);
    expect(guestRangeOk(0n, 0)).toBe(true);
  });

  it('checks every address alike, within a page (the fast path) or across pages: Xen\'s range rule decides, then the walk', () => {
    const edges = [0n, 0x400000n, 0x00007ffffffff000n, 1n << 47n, 0xffff800000000000n, 0xffff880000000000n, (1n << 64n) - 4096n, 1n << 64n, -4096n];
    const va = fc.oneof(
      fc.bigInt(-(1n << 64n), 1n << 65n),
      fc.tuple(fc.constantFrom(...edges), fc.bigInt(-8200n, 8200n)).map(([e, d]) => e + d),
    );
    // Mapped, but refused by the range rule all the same: the last page below the hypervisor's area.
    tb.map(0xffff87fffffff000n, ro, 5n);
    // Mapped and allowed: the last page of the lower half.
    tb.map(0x00007ffffffff000n, rw, 7n);
    const at0 = new GuestMemory(ft, BigInt(tb.l4) << 12n);
    ft.bytes(rw).forEach((_, i, b) => { b[i] = i * 7; });
    ft.bytes(ro).forEach((_, i, b) => { b[i] = i * 13 + 1; });
    const buf = new Uint8Array(PAGE_SIZE);
    const byteAt = (a: bigint) => { const m = at0.translate(a, false); return ft.bytes(Math.floor(m / PAGE_SIZE))[m % PAGE_SIZE]; };
    fc.assert(fc.property(va, fc.constantFrom(1, 4, 8, 64, 4096), (at, len) => {
      let error: unknown;
      try {
        at0.readInto(at, len, buf);
      } catch (e) {
        error = e;
      }
      if (!guestRangeOk(at, len)) {
        expect(error).toBeInstanceOf(GuestFault);
        expect((error as GuestFault).reason).toMatch(/not entirely guest memory|not a guest address/);
      } else if (error !== undefined) {
        expect(error).toBeInstanceOf(GuestFault);
        expect((error as GuestFault).reason).toMatch(/at level|outside machine memory/); // a walk's answer, not the range rule's
      } else if (len <= 64) {
        // The bytes are those the walk of each byte's own address finds.
        for (let i = 0; i < len; i++) expect(buf[i]).toBe(byteAt(at + BigInt(i)));
        const word = new DataView(buf.buffer);
        if (len === 4) expect(at0.readU32(at)).toBe(word.getUint32(0, true));
        if (len === 8) expect(at0.readU64(at)).toBe(word.getBigUint64(0, true));
      }
    }), { numRuns: 3000 });
  });

  it('refuses page tables or frames outside machine memory', () => {
    tb.map(0x404000n, 1 << 30, 7n);
    expect(() => gm.read(0x404000n, 1)).toThrow(/outside machine memory/);
    const bad = new GuestMemory(ft, BigInt(1 << 30) << 12n);
    expect(() => bad.read(0x400000n, 1)).toThrow(/outside machine memory/);
  });
});
