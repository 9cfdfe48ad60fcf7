// Hostile calls on the scripted engine (no KVM), one attacker, one victim
// and one bystander domain on one machine: mapping a victim's frame with no
// grant (mmu_update, update_va_mapping, map_grant_ref with a ref not
// granted, past the table, of no domain, naming a frame not the granter's),
// a grant of a page table mapped writable and a grant-mapped frame made a
// page table, unmap twice and after the granter's death (revocation),
// set_gdt and update_descriptor with writable, foreign and refused frames
// or descriptors (Xen's check_descriptor: DPL fixed up, call gates checked,
// bases not), and breakpoints in the hypervisor's area (set_debugreg and
// VCPUOP_initialise). Each is refused with Xen's errno or GNTST status; the
// victim keeps every frame, byte and reference, the page-type audit stays
// clean, the bystander's hypercalls still work, and destroying the domains
// gives back every frame the machine had free.

import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { createHash } from 'node:crypto';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { DomidSpecial, Hypercall, MmuextCmd } from '../../../src/abi/generated/xen.js';
import { GnttabOp, GntmapFlags, GrantStatus as S, GtfFlags, GtfType } from '../../../src/abi/generated/grant-table.js';
import { VcpuOp } from '../../../src/abi/generated/vcpu.js';
import { VcpuGuestContext } from '../../../src/abi/generated/arch-x86.js';
import { PageFault, type ScriptedCpu } from '../../../src/engine/scripted/scripted-cpu.js';
import type { Hypervisor } from '../../../src/hv/hypervisor.js';
import { parseGuestKernel } from '../../../src/hv/domain/elf.js';
import { PageType } from '../../../src/hv/mm/frames.js';
import { auditPageTypes } from '../../../src/hv/mm/page-audit.js';
import { PerDomainSpace } from '../../../src/hv/mm/xen-space.js';
import { ELF_DIR, scriptedDomain, scriptedMachine, type ScriptedGuest } from '../../support/scripted.js';

const EPERM = -1n, EBUSY = -16n, EINVAL = -22n;
const PERMIT = GtfType.GTF_permit_access, SELF = DomidSpecial.DOMID_SELF;
const H = GntmapFlags.GNTMAP_host_map, RO = GntmapFlags.GNTMAP_readonly;
const VIRT_BASE = parseGuestKernel(fs.readFileSync(path.join(ELF_DIR, 'minimal.elf'))).virtBase;
const stop = () => ({ kind: 'interrupted' as const });

let hv: Hypervisor, atk: ScriptedGuest, vic: ScriptedGuest, by: ScriptedGuest, doms: ScriptedGuest[], free0: number;
beforeEach(() => {
  const m = scriptedMachine();
  hv = m.hv;
  free0 = hv.frames.free;
  atk = scriptedDomain(m.engine, hv, 'minimal', { vcpus: 2 });
  vic = scriptedDomain(m.engine, hv);
  by = scriptedDomain(m.engine, hv);
  doms = [atk, vic, by];
});
afterEach(() => hv?.close());

/** A hypercall from `g`: its result. */
function hc(g: ScriptedGuest, nr: number, args: bigint[], before?: (c: ScriptedCpu) => void): bigint {
  let rc = 0n;
  g.play((c) => { before?.(c); return c.hypercall(nr, args); }, (c) => { rc = BigInt.asIntN(64, c.regs.rax); return stop(); });
  return rc;
}
const u64s = (...v: bigint[]) => new Uint8Array(BigUint64Array.from(v).buffer);
const ARG = (g: ScriptedGuest) => g.d.layout.stackTop - 0x800n;
/** Data page `k` of `g` (mapped read-write at boot). */
const page = (g: ScriptedGuest, k: number) => {
  const pfn = g.d.layout.pfn.stack + 4 + k;
  return { mfn: g.d.memory.mfnOf(pfn), va: VIRT_BASE + (BigInt(pfn) << 12n) };
};
const ma = (mfn: number, i = 0) => (BigInt(mfn) << 12n) + BigInt(8 * i);
/** The machine address of the entry mapping `va` in `g`'s table of `level` (1-4). */
function entryAt(g: ScriptedGuest, va: bigint, level = 1): bigint {
  let t = g.vcpu.space.cr3Mfn;
  for (let l = 4; l > level; l--) t = Number((hv.frames.words(t)[Number((va >> BigInt(12 + 9 * (l - 1))) & 511n)]! >> 12n) & 0xff_ffff_ffffn);
  return ma(t, Number((va >> BigInt(12 + 9 * (level - 1))) & 511n));
}
const word = (addr: bigint) => hv.frames.words(Number(addr >> 12n))[Number((addr & 0xfffn) >> 3n)]!;
const uvm = (g: ScriptedGuest, va: bigint, pte: bigint) => hc(g, Hypercall.HYPERVISOR_update_va_mapping, [va, pte, 0n]);
const mmu = (g: ScriptedGuest, ptr: bigint, val: bigint, fd: number = SELF) =>
  hc(g, Hypercall.HYPERVISOR_mmu_update, [ARG(g), 1n, 0n, BigInt(fd)], (c) => c.write(ARG(g), u64s(ptr, val)));
const mmuext = (g: ScriptedGuest, cmd: number, mfn: number) =>
  hc(g, Hypercall.HYPERVISOR_mmuext_op, [ARG(g), 1n, 0n, BigInt(SELF)], (c) => c.write(ARG(g), u64s(BigInt(cmd), BigInt(mfn), 0n)));
const setGdt = (g: ScriptedGuest, frames: number[], entries: number) =>
  hc(g, Hypercall.HYPERVISOR_set_gdt, [ARG(g), BigInt(entries)], (c) => c.write(ARG(g), u64s(...frames.map(BigInt))));
const updDesc = (g: ScriptedGuest, maddr: bigint, d: bigint) => hc(g, Hypercall.HYPERVISOR_update_descriptor, [maddr, d]);
const gdtFrame = (g: ScriptedGuest) => Number(g.cpu.translate(PerDomainSpace.vcpuLayout(0).gdt, false, false) >> 12n);

/** Gives `g` a one-frame grant table (once) and writes v1 entry `ref`. */
function grant(g: ScriptedGuest, ref: number, flags: number, domid: number, frame: number): void {
  if (!g.d.grants.frames.length) expect(g.d.grants.grow(1)).toBe(true);
  const p = hv.frames.bytes(g.d.grants.frames[0]!), v = new DataView(p.buffer, p.byteOffset + 8 * ref, 8);
  v.setUint16(2, domid, true); v.setUint32(4, frame, true); v.setUint16(0, flags, true);
}
/** One grant_table_op request `op` of `size` bytes (`fill` writes it) from `g`: the request as it comes back. */
function gntop(g: ScriptedGuest, op: number, size: number, fill: (v: DataView) => void): DataView {
  const s = new Uint8Array(size);
  fill(new DataView(s.buffer));
  let out = new DataView(s.buffer) as DataView<ArrayBufferLike>;
  g.play((c) => { c.write(ARG(g), s); return c.hypercall(Hypercall.HYPERVISOR_grant_table_op, [BigInt(op), ARG(g), 1n]); },
    (c) => { out = new DataView(c.read(ARG(g), size).buffer); return stop(); });
  return out;
}
function map(g: ScriptedGuest, hostAddr: bigint, flags: number, ref: number, dom: number) {
  const o = gntop(g, GnttabOp.GNTTABOP_map_grant_ref, 32, (v) => {
    v.setBigUint64(0, hostAddr, true); v.setUint32(8, flags, true); v.setUint32(12, ref, true); v.setUint16(16, dom, true);
  });
  return { status: o.getInt16(18, true), handle: o.getUint32(20, true) };
}
const unmap = (g: ScriptedGuest, hostAddr: bigint, handle: number) =>
  gntop(g, GnttabOp.GNTTABOP_unmap_grant_ref, 24, (v) => { v.setBigUint64(0, hostAddr, true); v.setUint32(16, handle, true); }).getInt16(20, true);
/** What `g`'s CPU reads at `va`, or the #PF. */
function peek(g: ScriptedGuest, va: bigint, write = false): bigint | string {
  try { g.cpu.translate(va, write); return g.cpu.readU64(va); } catch (e) { if (e instanceof PageFault) return `#PF ${e.errorCode}`; throw e; }
}

/** Every frame of `g`: its type, counts and contents. */
const snapshot = (g: ScriptedGuest) => hv.frames.framesOf(g.d.id).map((m) =>
  `${m} ${hv.frames.type[m]}/${hv.frames.typeCount[m]}/${hv.frames.refCount[m]} ${createHash('sha256').update(hv.frames.bytes(m)).digest('hex')}`);
const live = () => doms.filter((g) => g.d.state !== 'dead');
const audit = () => auditPageTypes(hv.frames, live().map((g) => g.d.auditView()));
/** The hypervisor goes on: the bystander and the attacker still run and make hypercalls. */
function alive(): void {
  for (const g of [by, atk]) {
    expect(g.d.running).toBe(true);
    expect(hc(g, Hypercall.HYPERVISOR_xen_version, [0n, 0n])).toBeGreaterThan(0n);
  }
}
/** Runs the refused calls of `attack`: afterwards the victim is as it was, the audit clean, the others alive. */
function refused(attack: () => void): void {
  const before = snapshot(vic);
  attack();
  expect(snapshot(vic)).toEqual(before);
  expect(audit()).toEqual([]);
  alive();
}
/** Destroys every domain: the machine gets back every frame it had free. */
function finish(): void {
  for (const g of live()) hv.destroyDomain(g.d);
  expect(hv.frames.free).toBe(free0);
}

describe('mapping a frame of another domain without a grant', () => {
  it('refuses a victim\'s frame in an L1 entry (-EBUSY, as get_page_from_l1e), at an upper level and in the victim\'s tables (-EINVAL), for the victim (-EPERM)', () => {
    const mine = page(atk, 0), v = page(vic, 0), vl1 = Number(entryAt(vic, v.va) >> 12n);
    const pte = entryAt(atk, mine.va), old = word(pte);
    refused(() => {
      for (const mfn of [v.mfn, vl1, vic.d.layout.l4Mfn, vic.d.layout.sharedInfoMfn]) {
        expect(uvm(atk, mine.va, (BigInt(mfn) << 12n) | 7n), `uvm rw ${mfn}`).toBe(EBUSY);
        expect(uvm(atk, mine.va, (BigInt(mfn) << 12n) | 5n), `uvm ro ${mfn}`).toBe(EBUSY);
        expect(mmu(atk, pte, (BigInt(mfn) << 12n) | 5n), `mmu ${mfn}`).toBe(EBUSY);
      }
      // The victim's L1 hooked into the attacker's L2 (a free slot past the mapping).
      expect(mmu(atk, (entryAt(atk, mine.va, 2) & ~0xfffn) | (8n * 511n), (BigInt(vl1) << 12n) | 0x67n)).toBe(EINVAL);
      // Stores into the victim's L1, and on its behalf.
      expect(mmu(atk, entryAt(vic, v.va), (BigInt(mine.mfn) << 12n) | 7n)).toBe(EINVAL);
      expect(mmu(atk, pte, (BigInt(v.mfn) << 12n) | 7n, vic.d.id)).toBe(EPERM);
      expect(word(pte)).toBe(old);
      expect(peek(atk, mine.va)).toBe(hv.frames.words(mine.mfn)[0]);
    });
    // The same calls on the attacker's own frames work.
    expect(mmu(atk, pte, old)).toBe(0n);
    expect(uvm(atk, mine.va, (BigInt(page(atk, 3).mfn) << 12n) | 7n)).toBe(0n);
    finish();
  });

  it('refuses map_grant_ref of a ref not granted to the mapper, past the table, of no domain, or naming a frame not the granter\'s', () => {
    const f = page(vic, 0), at = page(atk, 1);
    hv.frames.words(f.mfn)[0] = 0x5ec2e7n;
    grant(vic, 1, 0, atk.d.id, f.mfn);                              // no GTF_permit_access
    grant(vic, 2, PERMIT, by.d.id, f.mfn);                          // granted to the bystander
    grant(vic, 3, GtfType.GTF_accept_transfer, atk.d.id, f.mfn);    // not an access grant
    grant(vic, 4, PERMIT | GtfFlags.GTF_sub_page, atk.d.id, f.mfn); // sub-page grants are for copies only
    grant(vic, 5, PERMIT | GtfFlags.GTF_readonly, atk.d.id, f.mfn);
    grant(atk, 6, PERMIT, atk.d.id, f.mfn);                         // the attacker "grants" the victim's frame
    refused(() => {
      // Xen's _set_status: a grant not for this mapper is GNTST_general_error (permission_denied is XSM's).
      for (const ref of [1, 2, 3, 4]) for (const fl of [H, H | RO]) expect(map(atk, at.va, fl, ref, vic.d.id).status, `ref ${ref}`).toBe(S.GNTST_general_error);
      expect(map(atk, at.va, H, 5, vic.d.id).status).toBe(S.GNTST_general_error); // read-only grant, writable map
      for (const ref of [512, 0x7fffffff, 0xffffffff]) expect(map(atk, at.va, H | RO, ref, vic.d.id).status, `ref ${ref}`).toBe(S.GNTST_bad_gntref);
      for (const dom of [0x1234, DomidSpecial.DOMID_XEN, DomidSpecial.DOMID_IO, 0x7fff]) expect(map(atk, at.va, H | RO, 5, dom).status, `dom ${dom}`).toBe(S.GNTST_bad_domain);
      expect(map(atk, at.va, H | RO, 6, atk.d.id).status).toBe(S.GNTST_bad_page);
      expect(atk.d.grantMaps.entries()).toEqual([]);
      expect(peek(atk, at.va)).toBe(hv.frames.words(at.mfn)[0]); // its own page, still
    });
    // The bystander, whose grant it is, maps it.
    expect(map(by, page(by, 1).va, H, 2, vic.d.id).status).toBe(S.GNTST_okay);
    expect(peek(by, page(by, 1).va)).toBe(0x5ec2e7n);
    finish();
  });

  // Xen's map_grant_ref finds the granter with rcu_lock_domain_by_id, which knows no DOMID_SELF.
  it('answers GNTST_bad_domain for DOMID_SELF as the granter of map_grant_ref', () => {
    const mine = page(atk, 0);
    grant(atk, 1, PERMIT, atk.d.id, mine.mfn);
    expect(map(atk, page(atk, 1).va, H | RO, 1, SELF).status).toBe(S.GNTST_bad_domain);
    expect(audit()).toEqual([]);
    finish();
  });
});

describe('grants and page tables', () => {
  it('refuses a writable map of a granted page table (GNTST_general_error), allows a read-only one', () => {
    const l4 = vic.d.layout.l4Mfn, l1 = Number(entryAt(vic, page(vic, 0).va) >> 12n);
    grant(vic, 1, PERMIT, atk.d.id, l4);
    grant(vic, 2, PERMIT, atk.d.id, l1);
    const at = page(atk, 1);
    refused(() => {
      for (const ref of [1, 2]) expect(map(atk, at.va, H, ref, vic.d.id).status, `ref ${ref}`).toBe(S.GNTST_general_error);
      expect(atk.d.grantMaps.entries()).toEqual([]);
    });
    const m = map(atk, at.va, H | RO, 1, vic.d.id);
    expect(m.status).toBe(S.GNTST_okay);
    expect(peek(atk, at.va)).toBe(hv.frames.words(l4)[0]);
    expect(peek(atk, at.va, true)).toMatch(/#PF/);
    expect(hv.frames.type[l4]).toBe(PageType.l4);
    expect(audit()).toEqual([]);
    expect(unmap(atk, at.va, m.handle)).toBe(S.GNTST_okay);
    finish();
  });

  it('keeps a frame mapped writable through a grant from becoming the granter\'s page table or GDT (-EINVAL)', () => {
    const f = page(vic, 2), at = page(atk, 1);
    hv.frames.bytes(f.mfn).fill(0);
    expect(uvm(vic, f.va, (BigInt(f.mfn) << 12n) | 5n)).toBe(0n); // the victim keeps only a read-only mapping
    expect(hv.frames.typeCount[f.mfn]).toBe(0);
    grant(vic, 1, PERMIT, atk.d.id, f.mfn);
    const m = map(atk, at.va, H, 1, vic.d.id);
    expect(m.status).toBe(S.GNTST_okay);
    expect([hv.frames.type[f.mfn], hv.frames.typeCount[f.mfn]]).toEqual([PageType.writable, 1]);
    for (const cmd of [MmuextCmd.MMUEXT_PIN_L1_TABLE, MmuextCmd.MMUEXT_PIN_L2_TABLE, MmuextCmd.MMUEXT_PIN_L3_TABLE, MmuextCmd.MMUEXT_PIN_L4_TABLE]) expect(mmuext(vic, cmd, f.mfn), `pin ${cmd}`).toBe(EINVAL);
    expect(mmu(vic, (entryAt(vic, f.va, 2) & ~0xfffn) | (8n * 511n), (BigInt(f.mfn) << 12n) | 0x67n)).toBe(EINVAL);
    expect(setGdt(vic, [f.mfn], 16)).toBe(EINVAL);
    expect([hv.frames.type[f.mfn], hv.frames.typeCount[f.mfn]]).toEqual([PageType.writable, 1]);
    expect(peek(atk, at.va, true)).toBe(0n); // the attacker's writable mapping stands
    expect(audit()).toEqual([]);
    alive();
    // Once the grant mapping goes, it may.
    expect(unmap(atk, at.va, m.handle)).toBe(S.GNTST_okay);
    expect(mmuext(vic, MmuextCmd.MMUEXT_PIN_L1_TABLE, f.mfn)).toBe(0n);
    expect(map(atk, at.va, H, 1, vic.d.id).status).toBe(S.GNTST_general_error);
    expect(audit()).toEqual([]);
    finish();
  });
});

describe('use after unmap or revocation', () => {
  it('answers GNTST_bad_handle for an unmapped handle, and the old address no longer reaches the frame', () => {
    const f = page(vic, 0), at = page(atk, 1);
    grant(vic, 1, PERMIT, atk.d.id, f.mfn);
    const m = map(atk, at.va, H, 1, vic.d.id);
    expect(m.status).toBe(S.GNTST_okay);
    expect(unmap(atk, at.va, m.handle)).toBe(S.GNTST_okay);
    refused(() => {
      expect(unmap(atk, at.va, m.handle)).toBe(S.GNTST_bad_handle);
      for (const h of [m.handle + 1, 0xffff, 0xffffffff]) expect(unmap(atk, at.va, h), `handle ${h}`).toBe(S.GNTST_bad_handle);
      expect(peek(atk, at.va)).toMatch(/#PF/);
      expect(word(entryAt(atk, at.va))).toBe(0n);
    });
    finish();
  });

  it('revokes the mapping when the granter dies: entry cleared, handle gone, frame back in the pool and out of reach', () => {
    const f = page(vic, 0), at = page(atk, 1);
    hv.frames.words(f.mfn)[0] = 0x5ec2e7n;
    grant(vic, 1, PERMIT, atk.d.id, f.mfn);
    const m = map(atk, at.va, H, 1, vic.d.id);
    expect(m.status).toBe(S.GNTST_okay);
    expect(peek(atk, at.va)).toBe(0x5ec2e7n);
    const free = hv.frames.free;
    const n = hv.destroyDomain(vic.d);
    expect(hv.frames.free).toBe(free + n);
    expect(hv.frames.framesOf(vic.d.id)).toEqual([]);
    expect([hv.frames.refCount[f.mfn], hv.frames.typeCount[f.mfn]]).toEqual([0, 0]);
    expect(word(entryAt(atk, at.va))).toBe(0n);
    expect(peek(atk, at.va)).toMatch(/#PF/);
    expect(unmap(atk, at.va, m.handle)).toBe(S.GNTST_bad_handle);
    expect(atk.d.grantMaps.entries()).toEqual([]);
    expect(audit()).toEqual([]);
    alive();
    // A domain built on the freed frames is out of the attacker's reach too.
    doms.push(scriptedDomain(atk.engine, hv));
    expect(peek(atk, at.va)).toMatch(/#PF/);
    expect(audit()).toEqual([]);
    finish();
  });
});

describe('descriptor tables', () => {
  /** The victim's GDT: its page 3, read-only, with set_gdt. */
  function victimGdt(): number {
    const p = page(vic, 3);
    expect(uvm(vic, p.va, (BigInt(p.mfn) << 12n) | 5n)).toBe(0n);
    expect(setGdt(vic, [p.mfn], 16)).toBe(0n);
    return p.mfn;
  }

  it('set_gdt refuses a frame mapped writable, the victim\'s frames, and a list with one bad frame, changing nothing (-EINVAL)', () => {
    const vgdt = victimGdt();
    const w = page(atk, 0), ok = page(atk, 1);
    expect(uvm(atk, ok.va, (BigInt(ok.mfn) << 12n) | 5n)).toBe(0n);
    refused(() => {
      expect(setGdt(atk, [w.mfn], 16)).toBe(EINVAL);
      expect(hv.frames.typeCount[w.mfn]).toBe(1); // only its writable mapping
      for (const mfn of [vgdt, page(vic, 0).mfn, vic.d.layout.l4Mfn]) expect(setGdt(atk, [mfn], 16), `frame ${mfn}`).toBe(EINVAL);
      expect(setGdt(atk, [ok.mfn, w.mfn], 1024)).toBe(EINVAL);
      expect(setGdt(atk, [ok.mfn, vgdt], 1024)).toBe(EINVAL);
      expect(hv.frames.typeCount[ok.mfn]).toBe(0); // the good frame let go
      expect(gdtFrame(atk)).toBe(hv.xen.zero);
    });
    finish();
  });

  // [descriptor, what Xen's check_descriptor makes of it for a 64-bit PV guest]
  const ACCEPTED: Array<[string, bigint, bigint]> = [
    ['64-bit code, DPL 0', 0x00af9a00_0000ffffn, 0x00affa00_0000ffffn],
    ['data, DPL 0', 0x00cf9200_0000ffffn, 0x00cff200_0000ffffn],
    ['code with base 0xfffff000 (bases are not checked)', 0xffaf9aff_f000ffffn, 0xffaffaff_f000ffffn],
    ['a call gate to the guest\'s code, offset in the hypervisor\'s area: DPL 0', 0x0000ec00_00081000n, 0x00008c00_000b1000n],
    ['the gate\'s upper half (type 0)', 0x00000000_ffff8000n, 0x00000000_ffff8000n],
    ['not present, whatever else', 0x0000_0900_0000_0067n, 0x0000_0900_0000_0067n],
  ];
  const REFUSED: Array<[string, bigint]> = [
    ['a call gate to the hypervisor\'s code selector', 0x0000ec00_e0080000n],
    ['a call gate to the flat kernel code selector at RPL 0', 0x0000ec00_e0300000n],
    ['a call gate with reserved bits', 0x0000ec01_00080000n],
    ['a 16-bit call gate', 0x0000e400_00080000n],
    ['a 64-bit TSS', 0x00008900_00000067n],
    ['an LDT', 0x00008200_00000fffn],
    ['an interrupt gate', 0x00008e00_00080000n],
    ['a trap gate', 0x0000ef00_00080000n],
  ];

  it('set_gdt refuses a page with a TSS, LDT, interrupt or trap gate, or a call gate to the hypervisor; fixes DPL 0 up to 3', () => {
    const p = page(atk, 0), words = hv.frames.words(p.mfn);
    expect(uvm(atk, p.va, (BigInt(p.mfn) << 12n) | 5n)).toBe(0n);
    ACCEPTED.forEach(([, d], i) => { words[1 + i] = d; });
    refused(() => {
      for (const [what, d] of REFUSED) {
        words[10] = d;
        const before = Array.from(words);
        expect(setGdt(atk, [p.mfn], 16), what).toBe(EINVAL);
        expect(Array.from(words), what).toEqual(before); // nothing written back
        expect(hv.frames.typeCount[p.mfn], what).toBe(0);
        expect(gdtFrame(atk)).toBe(hv.xen.zero);
      }
    });
    words[10] = 0n;
    expect(setGdt(atk, [p.mfn], 16)).toBe(0n);
    ACCEPTED.forEach(([what, , fixed], i) => expect(words[1 + i], what).toBe(fixed));
    expect(gdtFrame(atk)).toBe(p.mfn);
    expect(audit()).toEqual([]);
    finish();
  });

  it('update_descriptor checks the descriptor as set_gdt does, and refuses the victim\'s frames and its own tables (-EINVAL)', () => {
    const vgdt = victimGdt();
    const gdt = page(atk, 0), data = page(atk, 1);
    expect(uvm(atk, gdt.va, (BigInt(gdt.mfn) << 12n) | 5n)).toBe(0n);
    expect(setGdt(atk, [gdt.mfn], 16)).toBe(0n);
    refused(() => {
      for (const [what, d] of REFUSED) {
        expect(updDesc(atk, ma(gdt.mfn, 10), d), what).toBe(EINVAL);
        expect(updDesc(atk, ma(data.mfn, 10), d), what).toBe(EINVAL);
      }
      expect(hv.frames.words(gdt.mfn)[10]).toBe(0n);
      expect(hv.frames.words(data.mfn)[10]).toBe(0n);
      // A harmless descriptor into a frame not the attacker's, or one of its page tables.
      const d = 0x00cff200_0000ffffn;
      for (const mfn of [vgdt, page(vic, 0).mfn, vic.d.layout.l4Mfn, vic.d.layout.sharedInfoMfn, atk.d.layout.l4Mfn, hv.xen.zero]) expect(updDesc(atk, ma(mfn, 3), d), `frame ${mfn}`).toBe(EINVAL);
      expect(updDesc(atk, ma(hv.frames.count), d)).toBe(EINVAL);
    });
    ACCEPTED.forEach(([what, d, fixed], i) => {
      expect(updDesc(atk, ma(gdt.mfn, 1 + i), d), what).toBe(0n);
      expect(hv.frames.words(gdt.mfn)[1 + i], what).toBe(fixed);
    });
    expect(audit()).toEqual([]);
    finish();
  });
});

describe('breakpoints in the hypervisor\'s area', () => {
  const XEN_AREA = [0xffff800000000000n, 0xffff800000001000n, 0xffff840000000000n, 0xffff87fffffffff8n, 0xffff87ffffffffffn];
  const dr = (g: ScriptedGuest, reg: number) => BigInt.asUintN(64, hc(g, Hypercall.HYPERVISOR_get_debugreg, [BigInt(reg)]));

  it('set_debugreg refuses them for DR0-DR3 (-EPERM), keeping the old value', () => {
    expect(hc(atk, Hypercall.HYPERVISOR_set_debugreg, [2n, 0x400000n])).toBe(0n);
    refused(() => {
      for (let reg = 0; reg < 4; reg++) for (const a of XEN_AREA) expect(hc(atk, Hypercall.HYPERVISOR_set_debugreg, [BigInt(reg), a]), `DR${reg} ${a.toString(16)}`).toBe(EPERM);
      expect([0, 1, 2, 3].map((r) => dr(atk, r))).toEqual([0n, 0n, 0x400000n, 0n]);
      expect(atk.ev.getDebugRegisters().db).toEqual([0n, 0n, 0x400000n, 0n]);
    });
    // Just above the area is the guest's.
    expect(hc(atk, Hypercall.HYPERVISOR_set_debugreg, [0n, 0xffff880000000000n])).toBe(0n);
    finish();
  });

  // Xen's breakpoint_addr_ok is __addr_ok(a): any address below 1 << 47 (no length), as VCPUOP_initialise checks here too.
  it('set_debugreg takes the last addresses of the lower half', () => {
    for (const a of [0x7ffffffffff8n, 0x7ffffffffffcn, 0x7fffffffffffn, 0xffffffffffffffffn]) {
      expect(hc(atk, Hypercall.HYPERVISOR_set_debugreg, [0n, a]), a.toString(16)).toBe(0n);
      expect(dr(atk, 0)).toBe(a);
    }
    finish();
  });

  it('VCPUOP_initialise refuses them in the context\'s DR0-DR3 (-EINVAL), leaving the vCPU uninitialised', () => {
    // XTF's xsa-296 context: an L4 (slot 3 to an empty L3), both read-only.
    const t1 = page(atk, 0), t2 = page(atk, 1), at = page(atk, 2);
    hv.frames.words(t2.mfn)[3] = (BigInt(t1.mfn) << 12n) | 1n;
    expect(uvm(atk, t1.va, (BigInt(t1.mfn) << 12n) | 5n)).toBe(0n);
    expect(uvm(atk, t2.va, (BigInt(t2.mfn) << 12n) | 5n)).toBe(0n);
    const ctx = VcpuGuestContext.over(new ArrayBuffer(VcpuGuestContext.SIZE));
    ctx.flags = 4n; // VGCF_in_kernel
    ctx.set_ctrlreg_at(3, BigInt(t2.mfn) << 12n);
    const init = (c: VcpuGuestContext) => hc(atk, Hypercall.HYPERVISOR_vcpu_op, [BigInt(VcpuOp.VCPUOP_initialise), 1n, at.va], (cpu) => cpu.write(at.va, new Uint8Array(c.view.buffer)));
    const v1 = atk.d.vcpus[1]!;
    refused(() => {
      for (let reg = 0; reg < 4; reg++) for (const a of XEN_AREA) {
        const c = VcpuGuestContext.over(ctx.view.buffer.slice(0));
        c.set_debugreg_at(reg, a);
        expect(init(c), `DR${reg} ${a.toString(16)}`).toBe(EINVAL);
        expect(v1.initialised).toBe(false);
        expect(hv.frames.typeCount[t2.mfn]).toBe(0);
      }
    });
    ctx.set_debugreg_at(0, 0xffff880000000000n);
    expect(init(ctx)).toBe(0n);
    expect([v1.initialised, v1.debug.get(0)]).toEqual([true, 0xffff880000000000n]);
    expect(audit()).toEqual([]);
    finish();
  });
});
