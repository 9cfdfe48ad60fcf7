// Grant mappings and copies between two domains on the scripted engine (no
// KVM), as Xen makes them for PV domains (PT-18): a mapping of a granted
// frame into the mapper's page tables or for a device, with Xen's statuses
// for what it refuses (a grant not to the mapper, a read-only grant mapped
// writable, a page table mapped writable, a misaligned PTE address:
// XSA-227), unmapping, the implicit unmap that crashes the mapper, the
// revocation of a dying granter's grants, and GNTTABOP_copy; the page-type
// audit holds throughout and every frame comes back.

import { afterEach, describe, expect, it } from 'vitest';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { Hypercall } from '../../../src/abi/generated/xen.js';
import { GnttabOp, GntmapFlags, GrantStatus as S, GtfFlags } from '../../../src/abi/generated/grant-table.js';
import { PageFault, type ScriptedCpu } from '../../../src/engine/scripted/scripted-cpu.js';
import { parseGuestKernel } from '../../../src/hv/domain/elf.js';
import { auditPageTypes } from '../../../src/hv/mm/page-audit.js';
import { PageType } from '../../../src/hv/mm/frames.js';
import { ELF_DIR, scriptedDomain, scriptedGuest, type ScriptedGuest } from '../../support/scripted.js';

let a: ScriptedGuest, b: ScriptedGuest;
afterEach(() => a?.hv.close());
const stop = () => ({ kind: 'interrupted' as const });
const VIRT_BASE = parseGuestKernel(fs.readFileSync(path.join(ELF_DIR, 'minimal.elf'))).virtBase;
const PERMIT = 1;

/** A hypercall from `g`: its result. */
function hc(g: ScriptedGuest, nr: number, args: bigint[], before?: (c: ScriptedCpu) => void): bigint {
  let rc = 0n;
  g.play((c) => { before?.(c); return c.hypercall(nr, args); }, (c) => { rc = BigInt.asIntN(64, c.regs.rax); return stop(); });
  return rc;
}
const ARG = (g: ScriptedGuest) => g.d.layout.stackTop - 0x800n;
const page = (g: ScriptedGuest, pfn: number) => ({ mfn: g.d.memory.mfnOf(pfn), va: VIRT_BASE + (BigInt(pfn) << 12n) });
const dataPfn = (g: ScriptedGuest, k: number) => g.d.layout.pfn.stack + 4 + k;

/** Gives `g` a one-frame grant table and writes v1 entry `ref`. */
function grant(g: ScriptedGuest, ref: number, flags: number, domid: number, frame: number): void {
  if (!g.d.grants.frames.length) expect(g.d.grants.grow(1)).toBe(true);
  const p = g.hv.frames.bytes(g.d.grants.frames[0]!);
  const v = new DataView(p.buffer, p.byteOffset + 8 * ref, 8);
  v.setUint16(2, domid, true);
  v.setUint32(4, frame, true);
  v.setUint16(0, flags, true);
}
const entryFlags = (g: ScriptedGuest, ref: number) => new DataView(g.hv.frames.bytes(g.d.grants.frames[0]!).buffer, g.hv.frames.bytes(g.d.grants.frames[0]!).byteOffset).getUint16(8 * ref, true);

/** map_grant_ref from `g`: status, handle, dev_bus_addr. */
function map(g: ScriptedGuest, hostAddr: bigint, flags: number, ref: number, dom: number) {
  let out = new DataView(new ArrayBuffer(32)) as DataView<ArrayBufferLike>;
  g.play(
    (c) => {
      const s = new Uint8Array(32), v = new DataView(s.buffer);
      v.setBigUint64(0, hostAddr, true); v.setUint32(8, flags, true); v.setUint32(12, ref, true); v.setUint16(16, dom, true);
      c.write(ARG(g), s);
      return c.hypercall(Hypercall.HYPERVISOR_grant_table_op, [BigInt(GnttabOp.GNTTABOP_map_grant_ref), ARG(g), 1n]);
    },
    (c) => { out = new DataView(c.read(ARG(g), 32).buffer); return stop(); },
  );
  return { status: out.getInt16(18, true), handle: out.getUint32(20, true), dev: out.getBigUint64(24, true) };
}
function unmap(g: ScriptedGuest, hostAddr: bigint, handle: number, dev = 0n): number {
  let st = 0;
  g.play(
    (c) => {
      const s = new Uint8Array(24), v = new DataView(s.buffer);
      v.setBigUint64(0, hostAddr, true); v.setBigUint64(8, dev, true); v.setUint32(16, handle, true);
      c.write(ARG(g), s);
      return c.hypercall(Hypercall.HYPERVISOR_grant_table_op, [BigInt(GnttabOp.GNTTABOP_unmap_grant_ref), ARG(g), 1n]);
    },
    (c) => { st = new DataView(c.read(ARG(g), 24).buffer).getInt16(20, true); return stop(); },
  );
  return st;
}
/** What `g`'s CPU reads at `va` (8 bytes), or the #PF error code. */
function peek(g: ScriptedGuest, va: bigint, write = false): bigint | string {
  try {
    g.cpu.translate(va, write);
    return g.cpu.readU64(va);
  } catch (e) {
    if (e instanceof PageFault) return `#PF ${e.errorCode}`;
    throw e;
  }
}
const audit = () => auditPageTypes(a.hv.frames, [a.d, b.d].filter((d) => d.state !== 'dead').map((d) => d.auditView()));

function pair() {
  a = scriptedGuest();
  b = scriptedDomain(a.engine, a.hv);
}

describe('grant mappings', () => {
  it('maps a granted frame into the mapper\'s address space, writable, and unmaps it, the counts back as before', () => {
    pair();
    const f = page(a, dataPfn(a, 0));
    a.hv.frames.words(f.mfn)[0] = 0x1122334455667788n;
    grant(a, 8, PERMIT, b.d.id, f.mfn);
    const at = page(b, dataPfn(b, 1));
    const before = [a.hv.frames.refCount[f.mfn], a.hv.frames.typeCount[f.mfn]];
    const m = map(b, at.va, GntmapFlags.GNTMAP_host_map, 8, a.d.id);
    expect(m.status).toBe(S.GNTST_okay);
    expect(peek(b, at.va)).toBe(0x1122334455667788n);
    expect(peek(b, at.va, true)).toBe(0x1122334455667788n); // writable
    // Rule: the mapping holds a general and a writable type reference; the entry is busy (reading, writing).
    expect([a.hv.frames.refCount[f.mfn], a.hv.frames.typeCount[f.mfn]]).toEqual([before[0]! + 1, before[1]! + 1]);
    expect(entryFlags(a, 8) & (GtfFlags.GTF_reading | GtfFlags.GTF_writing)).toBe(GtfFlags.GTF_reading | GtfFlags.GTF_writing);
    expect(audit()).toEqual([]);
    // A version change while a grant is in use is -EBUSY.
    expect(hc(a, Hypercall.HYPERVISOR_grant_table_op, [8n, ARG(a), 1n], (c) => c.write(ARG(a), Uint8Array.of(2, 0, 0, 0)))).toBe(-16n);
    expect(unmap(b, at.va, m.handle + 1)).toBe(S.GNTST_bad_handle);
    expect(unmap(b, at.va + 0x1000n, m.handle)).toBe(S.GNTST_general_error);
    expect(unmap(b, at.va, m.handle)).toBe(S.GNTST_okay);
    expect(peek(b, at.va)).toMatch(/#PF/);
    expect([a.hv.frames.refCount[f.mfn], a.hv.frames.typeCount[f.mfn]]).toEqual(before);
    expect(entryFlags(a, 8)).toBe(PERMIT);
    expect(unmap(b, at.va, m.handle)).toBe(S.GNTST_bad_handle); // use after unmap
    expect(audit()).toEqual([]);
  });

  it('refuses what Xen refuses, changing nothing', () => {
    pair();
    const f = page(a, dataPfn(a, 0)), l1 = a.d.memory.mfnOf(a.d.layout.pfn.ptBase + 3);
    expect(a.hv.frames.type[l1]).toBe(PageType.l1);
    grant(a, 1, PERMIT | GtfFlags.GTF_readonly, b.d.id, f.mfn);
    grant(a, 2, PERMIT, b.d.id + 7, f.mfn);
    grant(a, 3, 0, b.d.id, f.mfn);
    grant(a, 4, PERMIT, b.d.id, b.d.memory.mfnOf(dataPfn(b, 0))); // not the granter's frame
    grant(a, 5, PERMIT, b.d.id, l1);
    const at = page(b, dataPfn(b, 1));
    const H = GntmapFlags.GNTMAP_host_map, RO = GntmapFlags.GNTMAP_readonly, PTE = GntmapFlags.GNTMAP_contains_pte;
    expect(map(b, at.va, H, 1, a.d.id).status).toBe(S.GNTST_general_error);        // read-only grant, writable map
    expect(map(b, at.va, H, 2, a.d.id).status).toBe(S.GNTST_general_error);        // granted to another domain
    expect(map(b, at.va, H, 3, a.d.id).status).toBe(S.GNTST_general_error);        // not a grant
    expect(map(b, at.va, H, 4, a.d.id).status).toBe(S.GNTST_bad_page);             // a frame the granter does not own
    expect(map(b, at.va, H, 5, a.d.id).status).toBe(S.GNTST_general_error);        // a page table, writable (PT-3)
    expect(map(b, at.va, H, 9999, a.d.id).status).toBe(S.GNTST_bad_gntref);
    expect(map(b, at.va, H, 1, 0x1234).status).toBe(S.GNTST_bad_domain);
    // As Xen, the granter is named by its id: DOMID_SELF names no domain, even for the mapper's own grant.
    grant(b, 6, PERMIT, b.d.id, page(b, dataPfn(b, 3)).mfn);
    expect(map(b, at.va, H, 6, 0x7ff0).status).toBe(S.GNTST_bad_domain);
    // Domain 0, the control domain (paravane itself), exists and grants nothing (XTF's xsa-316).
    expect(map(b, at.va, H, 8, 0).status).toBe(S.GNTST_general_error);
    expect(map(b, at.va, H, 512, 0).status).toBe(S.GNTST_bad_gntref);
    expect(map(b, at.va, 0, 1, a.d.id).status).toBe(S.GNTST_bad_gntref);           // neither host nor device
    // XSA-227: a PTE address not 8-byte aligned.
    const bl1 = b.d.memory.mfnOf(b.d.layout.pfn.ptBase + 3);
    expect(map(b, (BigInt(bl1) << 12n) + 8n * 5n - 2n, H | PTE | RO, 1, a.d.id).status).toBe(S.GNTST_general_error);
    expect(b.d.grantMaps.entries()).toEqual([]);
    expect(audit()).toEqual([]);
    // A read-only map of a read-only grant, and of a page table, is allowed.
    expect(map(b, at.va, H | RO, 1, a.d.id).status).toBe(S.GNTST_okay);
    expect(peek(b, at.va, true)).toMatch(/#PF/);
    expect(map(b, page(b, dataPfn(b, 2)).va, H | RO, 5, a.d.id).status).toBe(S.GNTST_okay);
    expect(audit()).toEqual([]);
  });

  it('maps into an L1 entry named by its machine address (GNTMAP_contains_pte) and for a device', () => {
    pair();
    const f = page(a, dataPfn(a, 0));
    grant(a, 8, PERMIT, b.d.id, f.mfn);
    const slotPfn = dataPfn(b, 1);
    const bl1 = b.d.memory.mfnOf(b.d.layout.pfn.ptBase + 3);
    const index = Number(((VIRT_BASE + (BigInt(slotPfn) << 12n)) >> 12n) & 0x1ffn);
    const m = map(b, (BigInt(bl1) << 12n) + BigInt(8 * index), GntmapFlags.GNTMAP_host_map | GntmapFlags.GNTMAP_contains_pte, 8, a.d.id);
    expect(m.status).toBe(S.GNTST_okay);
    expect(b.cpu.translate(VIRT_BASE + (BigInt(slotPfn) << 12n), false) >> 12n).toBe(BigInt(f.mfn));
    // Its unmap names the entry the same way: the virtual address is not it.
    expect(unmap(b, VIRT_BASE + (BigInt(slotPfn) << 12n), m.handle)).toBe(S.GNTST_general_error);
    const d = map(b, 0n, GntmapFlags.GNTMAP_device_map, 8, a.d.id);
    expect([d.status, d.dev]).toEqual([S.GNTST_okay, BigInt(f.mfn) << 12n]);
    expect(unmap(b, 0n, d.handle, 0x1000n)).toBe(S.GNTST_bad_dev_addr);
    expect(unmap(b, 0n, d.handle, d.dev)).toBe(S.GNTST_okay);
    expect(unmap(b, (BigInt(bl1) << 12n) + BigInt(8 * index), m.handle)).toBe(S.GNTST_okay);
    expect(audit()).toEqual([]);
  });

  it('crashes the mapper that overwrites a grant mapping (an implicit unmap), and lets its references go when it dies', () => {
    pair();
    const f = page(a, dataPfn(a, 0));
    grant(a, 8, PERMIT, b.d.id, f.mfn);
    const at = page(b, dataPfn(b, 1));
    const refs = a.hv.frames.refCount[f.mfn];
    expect(map(b, at.va, GntmapFlags.GNTMAP_host_map, 8, a.d.id).status).toBe(S.GNTST_okay);
    hc(b, Hypercall.HYPERVISOR_update_va_mapping, [at.va, 0n, 0n]);
    expect(b.d.end).toEqual({ kind: 'crashed', reason: expect.stringMatching(/grant mapping was overwritten/) });
    a.hv.destroyDomain(b.d);
    expect(a.hv.frames.refCount[f.mfn]).toBe(refs);
    expect(entryFlags(a, 8)).toBe(PERMIT);
    expect(auditPageTypes(a.hv.frames, [a.d.auditView()])).toEqual([]);
  });

  it('revokes a dying granter\'s grants: the mapper loses the mapping, goes on, and every frame of the granter comes back', () => {
    pair();
    const f = page(a, dataPfn(a, 0));
    grant(a, 8, PERMIT, b.d.id, f.mfn);
    const at = page(b, dataPfn(b, 1));
    const m = map(b, at.va, GntmapFlags.GNTMAP_host_map, 8, a.d.id);
    expect(m.status).toBe(S.GNTST_okay);
    a.hv.destroyDomain(a.d);
    expect(Array.from(a.hv.frames.owner).filter((o) => o === a.d.id)).toEqual([]);
    expect(peek(b, at.va)).toMatch(/#PF/);
    expect(unmap(b, at.va, m.handle)).toBe(S.GNTST_bad_handle); // use after revoke
    expect(b.d.running).toBe(true);
    expect(auditPageTypes(a.hv.frames, [b.d.auditView()])).toEqual([]);
  });
  it('replaces a host mapping with another address\'s entry (unmap_and_replace), tracking a grant mapping it moves (XTF\'s xsa-234)', () => {
    pair();
    const replace = (g: ScriptedGuest, hostAddr: bigint, newAddr: bigint, handle: number): number => {
      let st = 0;
      g.play(
        (c) => {
          const s = new Uint8Array(24), v = new DataView(s.buffer);
          v.setBigUint64(0, hostAddr, true); v.setBigUint64(8, newAddr, true); v.setUint32(16, handle, true);
          c.write(ARG(g), s);
          return c.hypercall(Hypercall.HYPERVISOR_grant_table_op, [BigInt(GnttabOp.GNTTABOP_unmap_and_replace), ARG(g), 1n]);
        },
        (c) => { st = new DataView(c.read(ARG(g), 24).buffer).getInt16(20, true); return stop(); },
      );
      return st;
    };
    // As xsa-234: the domain grants itself frame1 (mapped read-only, so it holds no writable reference) and frame2.
    const f1 = page(a, dataPfn(a, 0)), f2 = page(a, dataPfn(a, 1));
    expect(hc(a, Hypercall.HYPERVISOR_update_va_mapping, [f1.va, (BigInt(f1.mfn) << 12n) | 0x65n, 2n])).toBe(0n);
    grant(a, 8, PERMIT, a.d.id, f1.mfn);
    grant(a, 9, PERMIT, a.d.id, f2.mfn);
    const at1 = page(a, dataPfn(a, 2)).va, at2 = page(a, dataPfn(a, 3)).va;
    const H = GntmapFlags.GNTMAP_host_map, RO = GntmapFlags.GNTMAP_readonly;
    const m1 = map(a, at1, H, 8, a.d.id), m2 = map(a, at2, H | RO, 9, a.d.id);
    expect([m1.status, m2.status]).toEqual([S.GNTST_okay, S.GNTST_okay]);
    a.hv.frames.words(f1.mfn)[0] = 0x1234n;
    expect(replace(a, at2, at1, 0x999)).toBe(S.GNTST_bad_handle);
    expect(replace(a, at1, at2, m2.handle)).toBe(S.GNTST_general_error); // at1 is not m2's entry
    // Steal at1's entry (frame1's writable grant mapping) into at2, in place of m2.
    expect(replace(a, at2, at1, m2.handle)).toBe(S.GNTST_okay);
    expect(peek(a, at1)).toMatch(/#PF/);
    expect(peek(a, at2, true)).toBe(0x1234n);
    expect(a.d.running).toBe(true);
    expect(audit()).toEqual([]);
    // at1 mapped again, plainly and read-only: not a grant mapping, so m1 cannot be unmapped there.
    expect(hc(a, Hypercall.HYPERVISOR_update_va_mapping, [at1, (BigInt(f1.mfn) << 12n) | 0x65n, 2n])).toBe(0n);
    expect(unmap(a, at1, m1.handle)).toBe(S.GNTST_general_error);
    // m1 still holds frame1's writable reference: it cannot become a page table.
    const pin = (mfn: number) => hc(a, Hypercall.HYPERVISOR_mmuext_op, [ARG(a) + 0x100n, 1n, 0n, 0x7ff0n], (c) => c.write(ARG(a) + 0x100n, new Uint8Array(new BigUint64Array([0n, BigInt(mfn), 0n]).buffer)));
    expect(pin(f1.mfn)).toBe(-22n);
    expect(audit()).toEqual([]);
    // Unmapped where it now is, frame1 is free of it; replace with no new address is a plain unmap.
    expect(unmap(a, at2, m1.handle)).toBe(S.GNTST_okay);
    expect(a.hv.frames.typeCount[f1.mfn]).toBe(0);
    const m3 = map(a, at2, H, 9, a.d.id);
    expect(replace(a, at2, 0n, m3.handle)).toBe(S.GNTST_okay);
    expect(peek(a, at2)).toMatch(/#PF/);
    expect(a.d.grantMaps.entries()).toEqual([]);
    expect(audit()).toEqual([]);
  });

  it('puts a map\'s GNTMAP_guest_avail bits in the entry\'s available bits (XENFEAT_gnttab_map_avail_bits)', () => {
    pair();
    const f = page(a, dataPfn(a, 0));
    grant(a, 8, PERMIT, b.d.id, f.mfn);
    const at = page(b, dataPfn(b, 1)).va;
    const m = map(b, at, GntmapFlags.GNTMAP_host_map | (5 << 16), 8, a.d.id);
    expect(m.status).toBe(S.GNTST_okay);
    const pte = b.d.grantMaps.get(m.handle)!.pte!;
    const lo = b.hv.frames.words32(pte.l1)[2 * pte.index]!;
    expect((lo >>> 9) & 7).toBe(5);
    expect(unmap(b, at, m.handle)).toBe(S.GNTST_okay);
    expect(audit()).toEqual([]);
  });

  it('checks an unmap\'s device address before undoing anything, and skips a part the mapping does not have', () => {
    pair();
    const f = page(a, dataPfn(a, 0));
    grant(a, 8, PERMIT, b.d.id, f.mfn);
    const at = page(b, dataPfn(b, 1)).va;
    const H = GntmapFlags.GNTMAP_host_map, DEV = GntmapFlags.GNTMAP_device_map;
    const m = map(b, at, H | DEV, 8, a.d.id);
    expect(m.status).toBe(S.GNTST_okay);
    expect(unmap(b, at, m.handle, m.dev + 0x1000n)).toBe(S.GNTST_bad_dev_addr);
    expect(typeof peek(b, at)).toBe('bigint'); // the host part is still there
    expect(unmap(b, at, m.handle)).toBe(S.GNTST_okay); // host part only
    expect(unmap(b, at, m.handle)).toBe(S.GNTST_okay); // no host part left: skipped
    expect(unmap(b, 0n, m.handle, m.dev)).toBe(S.GNTST_okay);
    expect(unmap(b, 0n, m.handle, m.dev)).toBe(S.GNTST_bad_handle);
    expect(audit()).toEqual([]);
  });

});

describe('GNTTABOP_copy', () => {
  function copy(g: ScriptedGuest, src: [bigint, number, number], dst: [bigint, number, number], len: number, flags: number): number {
    let st = 0;
    g.play(
      (c) => {
        const s = new Uint8Array(40), v = new DataView(s.buffer);
        v.setBigUint64(0, src[0], true); v.setUint16(8, src[1], true); v.setUint16(10, src[2], true);
        v.setBigUint64(16, dst[0], true); v.setUint16(24, dst[1], true); v.setUint16(26, dst[2], true);
        v.setUint16(32, len, true); v.setUint16(34, flags, true);
        c.write(ARG(g), s);
        return c.hypercall(Hypercall.HYPERVISOR_grant_table_op, [BigInt(GnttabOp.GNTTABOP_copy), ARG(g), 1n]);
      },
      (c) => { st = new DataView(c.read(ARG(g), 40).buffer).getInt16(36, true); return stop(); },
    );
    return st;
  }

  it('copies between a grant and the caller\'s own frame, refusing what Xen refuses', () => {
    pair();
    const f = page(a, dataPfn(a, 0)), mine = page(b, dataPfn(b, 1));
    a.hv.frames.bytes(f.mfn).set([9, 8, 7, 6], 100);
    grant(a, 8, PERMIT, b.d.id, f.mfn);
    grant(a, 9, PERMIT | GtfFlags.GTF_readonly, b.d.id, f.mfn);
    const SELF = 0x7ff0, SRC_GREF = 1, DST_GREF = 2;
    expect(copy(b, [8n, a.d.id, 100], [BigInt(mine.mfn), SELF, 0], 4, SRC_GREF)).toBe(S.GNTST_okay);
    expect(Array.from(a.hv.frames.bytes(mine.mfn).subarray(0, 4))).toEqual([9, 8, 7, 6]);
    expect(copy(b, [BigInt(mine.mfn), SELF, 0], [8n, a.d.id, 200], 4, DST_GREF)).toBe(S.GNTST_okay);
    expect(Array.from(a.hv.frames.bytes(f.mfn).subarray(200, 204))).toEqual([9, 8, 7, 6]);
    expect(copy(b, [BigInt(mine.mfn), SELF, 0], [9n, a.d.id, 0], 4, DST_GREF)).toBe(S.GNTST_general_error);   // read-only grant
    expect(copy(b, [8n, a.d.id, 4000], [BigInt(mine.mfn), SELF, 0], 200, SRC_GREF)).toBe(S.GNTST_bad_copy_arg); // crosses the page
    expect(copy(b, [BigInt(f.mfn), a.d.id, 0], [BigInt(mine.mfn), SELF, 0], 4, 0)).toBe(S.GNTST_permission_denied); // another's frame
    expect(copy(b, [BigInt(mine.mfn), b.d.id, 0], [8n, a.d.id, 0], 4, DST_GREF)).toBe(S.GNTST_permission_denied); // its own, not as DOMID_SELF
    const table = b.d.memory.mfnOf(b.d.layout.pfn.ptBase);
    expect(copy(b, [8n, a.d.id, 0], [BigInt(table), SELF, 0], 4, SRC_GREF)).toBe(S.GNTST_general_error);       // into a page table
    expect(audit()).toEqual([]);
  });
});
