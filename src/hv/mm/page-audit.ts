// The invariant checker for the page-type system: recomputes every
// domain frame's general and type reference counts from first principles
// (allocations, pins, CR3s and the entries of validated tables) and
// compares them with the frame table, and checks the isolation properties
// the counts stand for: the entry bits of every validated table (PT-6) and
// the hypervisor's L4 slots (PT-7). Used by tests after every operation;
// too slow for production (it reads every validated table).

import { FrameTable, OWNER_FREE, OWNER_XEN, PageType } from './frames.js';
import { entryFrame, isGrantPte, isPageTableType, PageTypeError, PageTypes, PINNED, typeName, VALIDATED } from './page-types.js';
import { FIRST_RESERVED_SLOT, LAST_RESERVED_SLOT } from './xen-space.js';
import { hex } from '../format.js';

export interface AuditDomain {
  domid: number;
  /** Frames each vCPU has loaded as CR3 (kernel and user). */
  roots: number[];
  /**
   * Frames on which the hypervisor holds one general and one `writable`
   * type reference for the domain's life (its shared_info page).
   */
  held?: readonly number[];
  /** Frames installed as a vCPU's GDT: one general and one segment-descriptor type reference each. */
  descriptorPages?: readonly number[];
  /** Frames of other domains (or its own) the domain maps through grants: a general reference each, and a writable type reference if writable (PT-18). */
  grantMappings?: ReadonlyArray<{ mfn: number; writable: boolean }>;
  /**
   * The 16 entries the hypervisor puts in slots 256-271 of every validated
   * L4 of the domain (PerDomainSpace.reservedL4); not checked when absent.
   */
  reservedL4?: ArrayLike<bigint>;
}


/** Returns every violation found (empty when the frame table is consistent). */
export function auditPageTypes(ft: FrameTable, domains: AuditDomain[]): string[] {
  const problems: string[] = [];
  const checker = new PageTypes(ft); // for its entry-bit rules only
  const ids = new Set(domains.map((d) => d.domid));
  const refs = new Uint32Array(ft.count);
  const types = new Uint32Array(ft.count);
  const mappedWritable = new Uint8Array(ft.count);
  for (let mfn = 0; mfn < ft.count; mfn++) {
    const owner = ft.owner[mfn]!;
    if (owner === OWNER_FREE || owner === OWNER_XEN) continue;
    refs[mfn]! += 1; // the allocation
    if (ft.flags[mfn]! & PINNED) {
      refs[mfn]! += 1;
      types[mfn]! += 1;
      if (!isPageTableType(ft.type[mfn]!)) problems.push(`frame ${hex(mfn)} is pinned but typed ${typeName(ft.type[mfn]!)}`);
    }
  }
  const reservedL4 = new Map<number, ArrayLike<bigint>>();
  for (const d of domains) {
    for (const root of d.roots) {
      refs[root]! += 1;
      types[root]! += 1;
      if (ft.type[root] !== PageType.l4) problems.push(`domain ${d.domid}: CR3 ${hex(root)} is typed ${typeName(ft.type[root]!)}, not L4`);
    }
    for (const mfn of d.held ?? []) {
      refs[mfn]! += 1;
      types[mfn]! += 1;
      if (ft.owner[mfn] !== d.domid) problems.push(`domain ${d.domid}: held frame ${hex(mfn)} belongs to ${ft.owner[mfn]}`);
      if (ft.type[mfn] !== PageType.writable) problems.push(`domain ${d.domid}: held frame ${hex(mfn)} is typed ${typeName(ft.type[mfn]!)}, not writable`);
    }
    for (const mfn of d.descriptorPages ?? []) {
      refs[mfn]! += 1;
      types[mfn]! += 1;
      if (ft.owner[mfn] !== d.domid) problems.push(`domain ${d.domid}: GDT frame ${hex(mfn)} belongs to ${ft.owner[mfn]}`);
      if (ft.type[mfn] !== PageType.segDesc) problems.push(`domain ${d.domid}: GDT frame ${hex(mfn)} is typed ${typeName(ft.type[mfn]!)}, not segment descriptors`);
    }
    for (const g of d.grantMappings ?? []) {
      refs[g.mfn]! += 1;
      if (g.writable) {
        types[g.mfn]! += 1;
        mappedWritable[g.mfn] = 1;
      }
    }
    if (d.reservedL4) reservedL4.set(d.domid, d.reservedL4);
  }
  for (let mfn = 0; mfn < ft.count; mfn++) {
    const owner = ft.owner[mfn]!;
    if (!ids.has(owner)) continue;
    const type = ft.type[mfn]!;
    if (ft.typeCount[mfn]! > 0 && isPageTableType(type) && !(ft.flags[mfn]! & VALIDATED)) problems.push(`frame ${hex(mfn)} holds ${typeName(type)} references but is not validated`);
    if (!isPageTableType(type) || !(ft.flags[mfn]! & VALIDATED)) continue;
    const words = ft.words32(mfn);
    const expected = type === PageType.l4 ? reservedL4.get(owner) : undefined;
    if (expected) checkReservedL4(words, expected, mfn, problems);
    for (let i = 0; i < 512; i++) {
      if (!PageTypes.isGuestSlot(type, i)) continue;
      const lo = words[2 * i]!;
      if (!(lo & 1)) continue;
      if (type === PageType.l1 && isGrantPte(words[2 * i + 1]!)) continue; // a grant mapping: counted from the grants (PT-18)
      const bits = entryBitsProblem(checker, type, lo, words[2 * i + 1]!);
      if (bits) problems.push(`${typeName(type)} ${hex(mfn)}[${i}]: ${bits}`);
      const target = entryFrame(lo, words[2 * i + 1]!);
      if (!ft.isValid(target)) {
        problems.push(`${typeName(type)} ${hex(mfn)}[${i}] maps frame ${hex(target)} outside machine memory`);
        continue;
      }
      if (ft.owner[target] !== owner) problems.push(`${typeName(type)} ${hex(mfn)}[${i}] of domain ${owner} maps frame ${hex(target)} of ${ft.owner[target]}`);
      refs[target]! += 1;
      if (type === PageType.l1) {
        if (lo & 2) {
          types[target]! += 1;
          mappedWritable[target] = 1;
        }
      } else {
        types[target]! += 1;
        if (ft.type[target] !== type - 1) problems.push(`${typeName(type)} ${hex(mfn)}[${i}] names ${hex(target)}, typed ${typeName(ft.type[target]!)}`);
      }
    }
  }
  for (let mfn = 0; mfn < ft.count; mfn++) {
    if (!ids.has(ft.owner[mfn]!)) continue;
    if (ft.refCount[mfn] !== refs[mfn]) problems.push(`frame ${hex(mfn)}: ${ft.refCount[mfn]} general references recorded, ${refs[mfn]} held`);
    if (ft.typeCount[mfn] !== types[mfn]) problems.push(`frame ${hex(mfn)}: ${ft.typeCount[mfn]} type references recorded, ${types[mfn]} held`);
    if (mappedWritable[mfn] && ft.type[mfn] !== PageType.writable) problems.push(`frame ${hex(mfn)} is mapped writable but typed ${typeName(ft.type[mfn]!)}`);
    if (ft.typeCount[mfn] === 0 && ft.type[mfn] !== PageType.none) problems.push(`frame ${hex(mfn)} has no type references but is typed ${typeName(ft.type[mfn]!)}`);
  }
  return problems;
}

/** Why an entry's bits are refused at `level` (PT-6), or undefined. */
function entryBitsProblem(pt: PageTypes, level: number, lo: number, hi: number): string | undefined {
  try {
    pt.checkEntryBits(level, lo, hi);
    return undefined;
  } catch (e) {
    if (e instanceof PageTypeError) return e.message;
    throw e;
  }
}

/** Compares slots 256-271 of a validated L4 with what the hypervisor put there (PT-7). */
function checkReservedL4(words: Uint32Array, expected: ArrayLike<bigint>, mfn: number, problems: string[]): void {
  for (let slot = FIRST_RESERVED_SLOT; slot <= LAST_RESERVED_SLOT; slot++) {
    const want = expected[slot - FIRST_RESERVED_SLOT] ?? 0n;
    const got = (BigInt(words[2 * slot + 1]!) << 32n) | BigInt(words[2 * slot]!);
    if (got !== want) problems.push(`PT-7: L4 ${hex(mfn)}[${slot}] holds ${hex(got)}, not the hypervisor's ${hex(want)}`);
  }
}
