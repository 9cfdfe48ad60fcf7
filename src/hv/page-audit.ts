// The invariant checker for the page-type system: recomputes every
// domain frame's general and type reference counts from first principles
// (allocations, pins, CR3s and the entries of validated tables) and
// compares them with the frame table, and checks the isolation properties
// the counts stand for. Used by tests after every operation; too slow for
// production (it reads every validated table).

import { FrameTable, OWNER_FREE, OWNER_XEN, PageType } from './frames.js';
import { entryFrame, isPageTableType, PageTypes, PINNED, typeName, VALIDATED } from './page-types.js';

export interface AuditDomain {
  domid: number;
  /** Frames each vCPU has loaded as CR3 (kernel and user). */
  roots: number[];
}

const hex = (v: number): string => `0x${v.toString(16)}`;

/** Returns every violation found (empty when the frame table is consistent). */
export function auditPageTypes(ft: FrameTable, domains: AuditDomain[]): string[] {
  const problems: string[] = [];
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
  for (const d of domains) {
    for (const root of d.roots) {
      refs[root]! += 1;
      types[root]! += 1;
      if (ft.type[root] !== PageType.l4) problems.push(`domain ${d.domid}: CR3 ${hex(root)} is typed ${typeName(ft.type[root]!)}, not L4`);
    }
  }
  for (let mfn = 0; mfn < ft.count; mfn++) {
    const owner = ft.owner[mfn]!;
    if (!ids.has(owner)) continue;
    const type = ft.type[mfn]!;
    if (ft.typeCount[mfn]! > 0 && isPageTableType(type) && !(ft.flags[mfn]! & VALIDATED)) problems.push(`frame ${hex(mfn)} holds ${typeName(type)} references but is not validated`);
    if (!isPageTableType(type) || !(ft.flags[mfn]! & VALIDATED)) continue;
    const words = ft.words32(mfn);
    for (let i = 0; i < 512; i++) {
      if (!PageTypes.isGuestSlot(type, i)) continue;
      const lo = words[2 * i]!;
      if (!(lo & 1)) continue;
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
