// Page-table updates as a guest requests them, one entry at a time: the
// path every hypercall that writes an entry (mmu_update, update_va_mapping)
// and the writable-page-table emulation share. Entries go through the
// page-type system (./page-types.ts), which is what keeps the domain inside
// its own frames; what a changed entry may have left stale in an engine's
// translation cache is recorded in the domain's tracker (./tlb.ts).
// Inputs: hostile (frame numbers, entry values, addresses).

import { PageType } from './frames.js';
import { guestRangeOk } from './guest-access.js';
import { entryFrame, isPageTableType, NOT_STALE, PageTypeError, PageTypes, takesAway, UPPER_STALE } from './page-types.js';
import { PTE_LO } from './pte.js';
import type { DomainTranslations } from './tlb.js';
import { hex } from '../format.js';

const { P, US, A } = PTE_LO;

/**
 * Writes entry `index` of table `mfn` (level 1-4, validated) to `lo:hi`,
 * taking the new entry's references before dropping the old one's. Xen's
 * mod_lN_entry: US is forced (the guest kernel runs at CPL 3), the
 * hypervisor's L4 slots cannot be changed (PT-7). Returns what cached
 * translations may now be stale: NOT_STALE, UPPER_STALE, or (a leaf entry)
 * the frame it mapped before. The caller records it (recordStale); nothing
 * is flushed until the guest asks or a frame changes type.
 */
export function modEntry(pt: PageTypes, domid: number, mfn: number, level: number, index: number, newLo: number, newHi: number, preserveAd: boolean): number {
  if (!PageTypes.isGuestSlot(level, index)) throw new PageTypeError('PT-7', 22, `L4 slot ${index} belongs to the hypervisor`);
  const words = pt.ft.words32(mfn);
  if (level === 1) return pt.setL1Entry(words, index, newLo, newHi, domid, preserveAd);
  const oldLo = words[2 * index]!, oldHi = words[2 * index + 1]!;
  if (newLo & P) newLo = (newLo | US | (level === 4 ? A : 0)) >>> 0;
  pt.getEntry(level, newLo, newHi, domid);
  words[2 * index] = newLo;
  words[2 * index + 1] = newHi;
  pt.putEntry(level, oldLo, oldHi);
  return oldLo & P && takesAway(oldLo, oldHi, newLo, newHi) ? UPPER_STALE : NOT_STALE;
}

/** Records what modEntry returned. */
export function recordStale(tlb: DomainTranslations, stale: number): void {
  if (stale >= 0) tlb.leafChanged(stale);
  else if (stale === UPPER_STALE) tlb.upperChanged();
}

/**
 * Reading path 8: one MMU_NORMAL_PT_UPDATE / PRESERVE_AD request: entry `index` of frame
 * `mfn` becomes lo:hi. A live page table of the domain is updated through
 * modEntry; an ordinary data page of the domain gets a plain store (Xen
 * allows it), done under a writable type reference so that the page cannot
 * be a table meanwhile. Returns what modEntry does. (Numbers, not BigInts:
 * this runs once per request of every batch.)
 */
export function ptUpdate(pt: PageTypes, tlb: DomainTranslations, domid: number, mfn: number, index: number, lo: number, hi: number, preserveAd: boolean): number {
  const ft = pt.ft;
  if (!ft.isValid(mfn) || ft.owner[mfn] !== domid) {
    throw new PageTypeError('PT-5', 22, `request names frame ${hex(mfn)}, not one of the domain's`);
  }
  const type = ft.type[mfn]!;
  if (isPageTableType(type) && ft.typeCount[mfn]! > 0) return modEntry(pt, domid, mfn, type, index, lo, hi, preserveAd);
  if (type === PageType.none || type === PageType.writable) {
    pt.getPageType(mfn, PageType.writable, domid);
    const words = ft.words32(mfn);
    words[2 * index] = lo;
    words[2 * index + 1] = hi;
    pt.putPageType(mfn);
    tlb.hostWrote(mfn);
    return NOT_STALE;
  }
  throw new PageTypeError('PT-1', 22, `frame ${hex(mfn)} is typed ${type}, not a page table or data page`);
}

/** The L1 frame mapping `va` in the tables rooted at `cr3`, as update_va_mapping finds it (and writable page tables). */
export function l1For(pt: PageTypes, domid: number, cr3: number, va: bigint): number {
  if (!guestRangeOk(va, 1)) throw new PageTypeError('PT-5', 22, `address ${hex(va)} is not a guest address`);
  let table = cr3;
  for (let level = 4; level > 1; level--) {
    const words = pt.ft.words32(table);
    const i = Number((va >> BigInt(12 + 9 * (level - 1))) & 0x1ffn);
    const lo = words[2 * i]!;
    if (!(lo & P) || (level < 4 && lo & 0x80)) throw new PageTypeError('PT-2', 22, `no level-1 table maps ${hex(va)}`);
    table = entryFrame(lo, words[2 * i + 1]!);
  }
  if (!pt.ft.isValid(table) || pt.ft.owner[table] !== domid || pt.ft.type[table] !== PageType.l1) {
    throw new PageTypeError('PT-2', 22, `the table mapping ${hex(va)} is not one of the domain's L1 tables`);
  }
  return table;
}
