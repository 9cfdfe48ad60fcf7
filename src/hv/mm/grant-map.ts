// Grant mappings, as Xen makes them for PV domains: a domain maps a frame
// another domain granted it (map_grant_ref), into its own page tables (an
// L1 entry only the hypervisor writes, PT-18) or for a device, and copies
// through grants (GNTTABOP_copy). A mapping holds a general reference on
// the granted frame, and a writable type reference when writable (so a
// granted page table can never be mapped writable: PT-3); it is let go by
// unmap_grant_ref, by the mapper's death, or by the granter's: a dying
// granter's grants are revoked, each mapping's entry cleared and its
// references dropped, before its frames go back to the pool.
// Inputs: grant operations from the mapper (hostile) and grant entries
// written by the granter (hostile).

import { GntcopyFlags, GntmapFlags, GrantStatus, GtfFlags, GtfType } from '../../abi/generated/grant-table.js';
import { DomidSpecial } from '../../abi/generated/xen.js';
import { PageType } from './frames.js';
import type { GrantTable } from './grant-table.js';
import { isGrantPte, NOT_STALE, PageTypeError, type PageTypes } from './page-types.js';
import { l1For } from './pt-update.js';
import { entryFrame, PTE_HI, PTE_LO } from './pte.js';
import type { DomainTranslations } from './tlb.js';

/** Where a map's GNTMAP_guest_avail bits start (_GNTMAP_guest_avail0). */
const GUEST_AVAIL_SHIFT = 16;

/** The most mappings a domain may hold at once (its maptrack). */
export const MAX_GRANT_MAPPINGS = 4096;

/** One mapping a domain holds (Xen's maptrack entry). */
export interface GrantMapping {
  granter: number;
  ref: number;
  mfn: number;
  writable: boolean;
  /** Where the mapping's L1 entry is (host mappings), and whether it still holds a device mapping. */
  pte?: { l1: number; index: number };
  /** The host address named the entry's machine address (GNTMAP_contains_pte): unmap reads it the same way. */
  byPte: boolean;
  device: boolean;
}

/** A domain's mappings of grants, by handle. */
export class GrantMaps {
  private readonly byHandle: Array<GrantMapping | undefined> = [];
  private free: number[] = [];

  add(m: GrantMapping): number | undefined {
    const h = this.free.pop() ?? (this.byHandle.length < MAX_GRANT_MAPPINGS ? this.byHandle.length : undefined);
    if (h === undefined) return undefined;
    this.byHandle[h] = m;
    return h;
  }

  get(h: number): GrantMapping | undefined {
    return Number.isInteger(h) && h >= 0 ? this.byHandle[h] : undefined;
  }

  remove(h: number): void {
    this.byHandle[h] = undefined;
    this.free.push(h);
  }

  /** Every live mapping with its handle. */
  entries(): Array<[number, GrantMapping]> {
    return this.byHandle.flatMap((m, h) => (m ? [[h, m] as [number, GrantMapping]] : []));
  }
}

/** What grant operations need of the machine: the page types and each domain's table, mappings and translations. */
export interface GrantWorld {
  readonly pt: PageTypes;
  grantsOf(domid: number): GrantTable | undefined;
  mapsOf(domid: number): GrantMaps | undefined;
  tlbOf(domid: number): DomainTranslations | undefined;
  /** Every domain alive on the machine. */
  domainIds(): number[];
}

/** The calling domain, as a mapper: its id and the vCPU's kernel root (a linear host_addr is in its address space). */
export interface Mapper { readonly domid: number; readonly cr3: number }

const { P, RW, US, A, D } = PTE_LO;
const S = GrantStatus;

/** The granter's entry `ref` checked for `mapper` (writable or not): its frame, or the status that refuses it. */
function checkEntry(w: GrantWorld, granter: number, ref: number, mapper: number, writable: boolean): { g: GrantTable; mfn: number } | number {
  const g = w.grantsOf(granter);
  // The control domain (paravane itself, Xen's dom0) exists, and its one frame of grants grants nothing.
  if (!g && granter === CONTROL_DOMID) return ref >= 0 && ref < CONTROL_GRANT_ENTRIES ? S.GNTST_general_error : S.GNTST_bad_gntref;
  if (!g) return S.GNTST_bad_domain;
  const e = g.entry(ref);
  if (!e) return S.GNTST_bad_gntref;
  // As Xen's _set_status: a grant to this domain (flags and domid), and no write through a read-only grant.
  if ((e.flags & GtfType.GTF_type_mask) !== GtfType.GTF_permit_access || e.flags & GtfFlags.GTF_sub_page || e.domid !== mapper) return S.GNTST_general_error;
  if (writable && e.flags & GtfFlags.GTF_readonly) return S.GNTST_general_error;
  const ft = w.pt.ft;
  if (e.frame >= BigInt(ft.count) || ft.owner[Number(e.frame)] !== granter) return S.GNTST_bad_page;
  return { g, mfn: Number(e.frame) };
}

/**
 * Domain 0: on Xen the control domain, where the toolstack and the
 * backends live; here that is paravane itself, which never grants a guest
 * anything. A guest naming it as a granter meets a domain with one v1 frame
 * of grant entries, none of them for it (XTF's xsa-316 maps from it).
 */
const CONTROL_DOMID = 0;
const CONTROL_GRANT_ENTRIES = 4096 / 8;

/** The mapping's references on its frame: general, and writable type if writable; the status that refuses them. */
function takeRefs(w: GrantWorld, granter: number, mfn: number, writable: boolean): number {
  try {
    w.pt.getPage(mfn, granter);
  } catch (e) {
    if (e instanceof PageTypeError) return S.GNTST_bad_page;
    throw e;
  }
  if (!writable) return S.GNTST_okay;
  try {
    w.pt.getPageType(mfn, PageType.writable, granter);
  } catch (e) {
    w.pt.putPage(mfn);
    if (e instanceof PageTypeError) return S.GNTST_general_error; // a page table or descriptor page (PT-3)
    throw e;
  }
  return S.GNTST_okay;
}

function dropRefs(w: GrantWorld, m: GrantMapping): void {
  if (m.writable) w.pt.putPageType(m.mfn);
  w.pt.putPage(m.mfn);
}

/**
 * Where a host mapping's entry goes: `hostAddr` is the machine address of
 * an entry of one of the mapper's L1s (with GNTMAP_contains_pte, which must
 * be 8-byte aligned: XSA-227) or a virtual address in its address space.
 */
function pteSlot(w: GrantWorld, mapper: Mapper, hostAddr: bigint, containsPte: boolean): { l1: number; index: number } | undefined {
  const ft = w.pt.ft;
  if (containsPte) {
    if (hostAddr & 7n || hostAddr >> 12n >= BigInt(ft.count)) return undefined;
    const l1 = Number(hostAddr >> 12n);
    if (ft.owner[l1] !== mapper.domid || ft.type[l1] !== PageType.l1 || !ft.typeCount[l1]) return undefined;
    return { l1, index: Number(hostAddr & 0xfffn) >> 3 };
  }
  try {
    return { l1: l1For(w.pt, mapper.domid, mapper.cr3, hostAddr), index: Number((hostAddr >> 12n) & 0x1ffn) };
  } catch (e) {
    if (e instanceof PageTypeError) return undefined;
    throw e;
  }
}

export interface MapResult { status: number; handle?: number; devBusAddr?: bigint }

/** map_grant_ref for one request, as Xen's map_grant_ref. */
export function mapGrant(w: GrantWorld, mapper: Mapper, op: { hostAddr: bigint; flags: number; ref: number; dom: number }): MapResult {
  const host = (op.flags & GntmapFlags.GNTMAP_host_map) !== 0, device = (op.flags & GntmapFlags.GNTMAP_device_map) !== 0;
  if (!host && !device) return { status: S.GNTST_bad_gntref };
  const writable = !(op.flags & GntmapFlags.GNTMAP_readonly);
  // As Xen (rcu_lock_domain_by_id): the granter is named by its id; DOMID_SELF is no domain here.
  const granter = op.dom;
  const maps = w.mapsOf(mapper.domid)!;
  const checked = checkEntry(w, granter, op.ref, mapper.domid, writable);
  if (typeof checked === 'number') return { status: checked };
  const { g, mfn } = checked;
  let slot: { l1: number; index: number } | undefined;
  if (host) {
    slot = pteSlot(w, mapper, op.hostAddr, (op.flags & GntmapFlags.GNTMAP_contains_pte) !== 0);
    if (!slot) return { status: S.GNTST_general_error };
  }
  const refs = takeRefs(w, granter, mfn, writable);
  if (refs !== S.GNTST_okay) return { status: refs };
  const byPte = (op.flags & GntmapFlags.GNTMAP_contains_pte) !== 0;
  const m: GrantMapping = { granter, ref: op.ref, mfn, writable, pte: slot, device, byPte };
  const handle = maps.add(m);
  if (handle === undefined) {
    dropRefs(w, m);
    return { status: S.GNTST_no_device_space };
  }
  if (host) g.pin(op.ref, mfn, 'host', writable);
  if (device) g.pin(op.ref, mfn, 'dev', writable);
  if (slot) {
    // The entry, as Xen's grant_to_pte_flags: present, user (the kernel is at CPL 3), accessed, dirty,
    // RW if writable, never executable, bit 62, and the map's GNTMAP_guest_avail bits (16-18) in the
    // entry's available bits 9-11 (XENFEAT_gnttab_map_avail_bits).
    const avail = ((op.flags >>> GUEST_AVAIL_SHIFT) & 7) << 9;
    const lo = ((mfn % 0x100000) * 4096 + (P | US | A | D | (writable ? RW : 0) | avail)) >>> 0;
    const hi = (Math.floor(mfn / 0x100000) | PTE_HI.GNTTAB | PTE_HI.NX) >>> 0;
    const stale = w.pt.writeGrantPte(slot.l1, slot.index, lo, hi, mapper.domid);
    if (stale !== NOT_STALE) w.tlbOf(mapper.domid)?.leafChanged(stale);
  }
  return { status: S.GNTST_okay, handle, devBusAddr: device ? BigInt(mfn) << 12n : undefined };
}

/** Clears a host mapping's entry (if it is still the mapping's) and tells the mapper's translations. */
function clearPte(w: GrantWorld, mapperId: number, m: GrantMapping): boolean {
  if (!m.pte) return true;
  const words = w.pt.ft.words32(m.pte.l1);
  const lo = words[2 * m.pte.index]!, hi = words[2 * m.pte.index + 1]!;
  if (!(lo & P) || !isGrantPte(hi) || entryFrame(lo, hi) !== m.mfn) return false;
  words[2 * m.pte.index] = 0;
  words[2 * m.pte.index + 1] = 0;
  const tlb = w.tlbOf(mapperId);
  tlb?.leafChanged(m.mfn);
  tlb?.flush(); // as Xen: no translation of the old mapping survives the unmap
  m.pte = undefined;
  return true;
}

/** Lets a mapping go once neither its host nor its device part is left. */
function release(w: GrantWorld, maps: GrantMaps, handle: number, m: GrantMapping): void {
  if (m.pte || m.device) return;
  dropRefs(w, m);
  maps.remove(handle);
}

/**
 * unmap_grant_ref for one request, as Xen's unmap_common: `hostAddr` 0
 * skips the host part, `devBusAddr` 0 the device part; a part the mapping
 * no longer has is skipped. The device address is checked before anything
 * is undone.
 */
export function unmapGrant(w: GrantWorld, mapper: Mapper, op: { hostAddr: bigint; devBusAddr: bigint; handle: number }): number {
  return unmapCommon(w, mapper, op.handle, op.devBusAddr, op.hostAddr ? (m) => unmapHost(w, mapper, m, op.hostAddr) : undefined);
}

/**
 * GNTTABOP_unmap_and_replace for one request, as Xen's PV
 * replace_grant_host_mapping: the host mapping at `hostAddr` is replaced by
 * the entry that maps `newAddr`, which is taken from there (that address
 * is left unmapped); with `newAddr` 0 it is just unmapped. The entry moves
 * with its references; a grant mapping moved so keeps being tracked where
 * it now is (XTF's xsa-234 moves one).
 */
export function replaceGrant(w: GrantWorld, mapper: Mapper, op: { hostAddr: bigint; newAddr: bigint; handle: number }): number {
  return unmapCommon(w, mapper, op.handle, 0n, op.hostAddr ? (m) => {
    if (!op.newAddr) return unmapHost(w, mapper, m, op.hostAddr);
    if (m.byPte) return S.GNTST_general_error; // new_addr is for mappings made at a linear address
    const here = pteSlot(w, mapper, op.hostAddr, false);
    const from = pteSlot(w, mapper, op.newAddr, false);
    if (!here || !from || !m.pte || here.l1 !== m.pte.l1 || here.index !== m.pte.index) return S.GNTST_general_error;
    if (from.l1 === here.l1 && from.index === here.index) return S.GNTST_general_error;
    const ft = w.pt.ft;
    const hw = ft.words32(here.l1), fw = ft.words32(from.l1);
    const lo = hw[2 * here.index]!, hi = hw[2 * here.index + 1]!;
    if (!(lo & P) || !isGrantPte(hi) || entryFrame(lo, hi) !== m.mfn) return S.GNTST_general_error;
    const newLo = fw[2 * from.index]!, newHi = fw[2 * from.index + 1]!;
    // The taken entry may be another grant mapping of this domain's: it is tracked at its new place.
    if (newLo & P && isGrantPte(newHi)) {
      const moved = w.mapsOf(mapper.domid)!.entries().find(([, o]) => o.pte?.l1 === from.l1 && o.pte.index === from.index)?.[1];
      if (moved) moved.pte = { l1: here.l1, index: here.index };
    }
    fw[2 * from.index] = 0;
    fw[2 * from.index + 1] = 0;
    hw[2 * here.index] = newLo;
    hw[2 * here.index + 1] = newHi;
    m.pte = undefined;
    const tlb = w.tlbOf(mapper.domid);
    tlb?.leafChanged(m.mfn);
    if (newLo & P) tlb?.leafChanged(entryFrame(newLo, newHi));
    tlb?.flush();
    return S.GNTST_okay;
  } : undefined);
}

/** Undoes a host mapping at `hostAddr` (which must name its entry, read as the map read it). */
function unmapHost(w: GrantWorld, mapper: Mapper, m: GrantMapping, hostAddr: bigint): number {
  const here = pteSlot(w, mapper, hostAddr, m.byPte);
  if (!here || here.l1 !== m.pte!.l1 || here.index !== m.pte!.index) return S.GNTST_general_error;
  return clearPte(w, mapper.domid, m) ? S.GNTST_okay : S.GNTST_general_error;
}

/** Xen's unmap_common: the handle, the device address, then the host part (`host`, if asked and still mapped), then the device part. */
function unmapCommon(w: GrantWorld, mapper: Mapper, handle: number, devBusAddr: bigint, host: ((m: GrantMapping) => number) | undefined): number {
  const maps = w.mapsOf(mapper.domid)!;
  const m = maps.get(handle);
  if (!m) return S.GNTST_bad_handle;
  if (devBusAddr && devBusAddr !== BigInt(m.mfn) << 12n) return S.GNTST_bad_dev_addr;
  const g = w.grantsOf(m.granter);
  if (host && m.pte) {
    const st = host(m);
    if (st !== S.GNTST_okay) return st;
    g?.unpin(m.ref, 'host', m.writable);
  }
  if (devBusAddr && m.device) {
    m.device = false;
    g?.unpin(m.ref, 'dev', m.writable);
  }
  release(w, maps, handle, m);
  return S.GNTST_okay;
}

/** One side of a copy: a grant reference of another domain's, or a frame of the caller's. */
export interface CopySide { ref: bigint; domid: number; offset: number }

/** GNTTABOP_copy for one request, as Xen's gnttab_copy. */
export function copyGrant(w: GrantWorld, mapper: Mapper, op: { source: CopySide; dest: CopySide; len: number; flags: number }): number {
  if (op.source.offset + op.len > 4096 || op.dest.offset + op.len > 4096) return S.GNTST_bad_copy_arg;
  const side = (s: CopySide, isGref: boolean, writable: boolean): { mfn: number; owner: number } | number => {
    if (isGref) {
      const granter = s.domid === DomidSpecial.DOMID_SELF ? mapper.domid : s.domid;
      if (s.ref > 0xffffffffn) return S.GNTST_bad_gntref;
      const c = checkEntry(w, granter, Number(s.ref), mapper.domid, writable);
      return typeof c === 'number' ? c : { mfn: c.mfn, owner: granter };
    }
    // A frame side is the caller's own, named DOMID_SELF (as Xen: any other id, its own included, needs privilege).
    if (s.domid !== DomidSpecial.DOMID_SELF) return S.GNTST_permission_denied;
    const ft = w.pt.ft;
    if (s.ref >= BigInt(ft.count) || ft.owner[Number(s.ref)] !== mapper.domid) return S.GNTST_bad_page;
    return { mfn: Number(s.ref), owner: mapper.domid };
  };
  const src = side(op.source, (op.flags & GntcopyFlags.GNTCOPY_source_gref) !== 0, false);
  if (typeof src === 'number') return src;
  const dst = side(op.dest, (op.flags & GntcopyFlags.GNTCOPY_dest_gref) !== 0, true);
  if (typeof dst === 'number') return dst;
  // The destination is written as data: it must be able to take the writable type (not a table, PT-3).
  const refs = takeRefs(w, dst.owner, dst.mfn, true);
  if (refs !== S.GNTST_okay) return refs;
  const ft = w.pt.ft;
  ft.bytes(dst.mfn).set(ft.bytes(src.mfn).subarray(op.source.offset, op.source.offset + op.len), op.dest.offset);
  w.tlbOf(dst.owner)?.hostWrote(dst.mfn);
  w.pt.putPageType(dst.mfn);
  w.pt.putPage(dst.mfn);
  return S.GNTST_okay;
}

/** A dying domain's mappings of others' grants are let go (its own tables die with it). */
export function releaseMappings(w: GrantWorld, domid: number): void {
  const maps = w.mapsOf(domid);
  if (!maps) return;
  for (const [h, m] of maps.entries()) {
    const g = w.grantsOf(m.granter);
    if (m.pte) g?.unpin(m.ref, 'host', m.writable);
    if (m.device) g?.unpin(m.ref, 'dev', m.writable);
    m.pte = undefined;
    m.device = false;
    release(w, maps, h, m);
  }
}

/**
 * A dying granter's grants are revoked: every other domain's mapping of
 * them loses its entry and its references, and its handle goes (a later
 * unmap of it is GNTST_bad_handle). Afterwards no reference of anyone's
 * rests on the granter's frames.
 */
export function revokeGrants(w: GrantWorld, granter: number): void {
  const g = w.grantsOf(granter);
  for (const d of w.domainIds()) {
    if (d === granter) continue;
    const maps = w.mapsOf(d);
    if (!maps) continue;
    for (const [h, m] of maps.entries()) {
      if (m.granter !== granter) continue;
      if (m.pte) {
        clearPte(w, d, m);
        g?.unpin(m.ref, 'host', m.writable);
      }
      if (m.device) g?.unpin(m.ref, 'dev', m.writable);
      m.pte = undefined;
      m.device = false;
      release(w, maps, h, m);
    }
  }
}
