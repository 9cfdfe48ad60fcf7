// The page-type system: what keeps every domain inside its own frames.
// Xen's model (Xen's public headers; docs/abi.md): each frame has an owner, a
// general reference count, a type (none, writable, L1-L4, segment
// descriptors), a type count and validated/pinned bits. Page tables are
// typed only after every present entry is validated, which takes the
// references those entries hold (recursively typing lower tables); the last
// type reference devalidates the table and drops them.
//
// The rules, each with an id used in docs/page-types.md and by the test
// named after it:
//
//   PT-1  A frame changes type only when its type count is zero.
//   PT-2  A page-table type is taken only after every present entry is
//         validated; a failed validation takes no reference and leaves the
//         frame untyped.
//   PT-3  A writable mapping takes a `writable` type reference, so a frame
//         typed as a page table (or descriptor page) cannot be mapped
//         writable, itself included.
//   PT-4  A frame mapped writable anywhere cannot become a page table.
//   PT-5  An entry may map only a frame the domain owns (-EBUSY); a frame
//         outside machine memory is refused (-EPERM: no I/O memory access).
//   PT-6  Reserved and forbidden bits are refused (-EINVAL): superpages
//         (PSE at L2/L3/L4), cache-control bits (PWT, PCD, PAT), global at
//         L2-L4, and bit 62 (bits 52-61 are left to the guest, as on Xen).
//   PT-7  The hypervisor's L4 slots (256-271) are skipped when an L4 is
//         validated and filled by the hypervisor; they cannot be updated.
//   PT-8  Linear page tables (an entry naming a table of its own level or
//         above, itself included) are refused.
//   PT-9  The last type reference of a page table devalidates it: every
//         reference its entries held is dropped, recursively.
//   PT-10 Pinning validates and holds a type reference; a second pin is
//         -EINVAL; unpinning a table still in use (CR3, a parent entry)
//         leaves it validated.
//   PT-11 A vCPU's CR3 (kernel and user) holds a type reference on its L4.
//   PT-12 The M2P and every other hypervisor frame belong to the
//         hypervisor: no guest entry can map them (PT-5), so the M2P is only
//         ever the read-only mapping the hypervisor puts in slot 256.
//   PT-13 Counts cannot overflow (-EINVAL).
//   PT-18 A grant mapping is an L1 entry only the hypervisor writes (bit
//         62 set, which guests cannot: PT-6), mapping a frame of the
//         granting domain. Its references are the mapping's: they go when
//         the grant is unmapped or revoked, never with the entry; an
//         entry overwritten or a table let go while it holds one crashes
//         the domain (Xen's implicit-unmap rule).
//   PT-17 A frame takes the segment-descriptor type (a GDT or LDT page) only
//         if each of its 512 descriptors passes Xen's check_descriptor
//         (./descriptors.ts): code and data get DPL 3, call gates DPL 0
//         and a target the guest may name, other system descriptors are
//         refused (-EINVAL). Like a table, it can then not be mapped
//         writable (PT-3), nor become one while it is (PT-4).
//
// And three about translations an engine cached (src/hv/mm/tlb.ts, which
// enforces them through the TypeHooks below):
//
//   PT-14 A page-table update flushes nothing (Xen's TLB model); a flush
//         request, or loading a root, forgets every translation the
//         domain's updates took away.
//   PT-15 Before a frame takes a page-table or descriptor type, no stale
//         translation can write it; before a former table becomes
//         writable data, no stale link can reach it.
//   PT-16 A former table the hypervisor rewrote as data is not reused from
//         the engine's cache when it becomes a table again.
//
// Inputs: entries written by guests (hostile) and frame numbers from them
// (checked with isValid before any use).

import { FrameTable, PAGE_SIZE, PageType } from './frames.js';
import { FIRST_RESERVED_SLOT, LAST_RESERVED_SLOT } from './xen-space.js';
import { entryFrame, PTE_HI, PTE_LO } from './pte.js';
import { hex } from '../format.js';
import { checkDescriptorPage } from './descriptors.js';
import { XenErrno } from '../../abi/generated/errno.js';

/** Flags bits (FrameTable.flags). */
export const VALIDATED = 1;
export const PINNED = 2;

/**
 * What an engine's translation cache (src/hv/mm/tlb.ts) needs to hear from
 * the page-type system.
 */
export interface TypeHooks {
  /** `mfn` takes its first type reference of `type` (it may be changing type): called before validation. */
  typeTaken(mfn: number, type: PageType): void;
  /** `mfn` has been validated as a page table. */
  tableValidated(mfn: number): void;
  /**
   * An L1 entry of `domid`'s that held a grant mapping (PT-18) was
   * overwritten or its table let go, other than by unmapping the grant:
   * Xen crashes the domain for such an implicit unmap.
   */
  grantPteLost?(domid: number): void;
}

const NO_HOOKS: TypeHooks = { typeTaken() {}, tableValidated() {} };

/** Whether an L1 entry (its high word) is a grant mapping the hypervisor wrote (Xen's _PAGE_GNTTAB, bit 62). */
export const isGrantPte = (hi: number): boolean => (hi & PTE_HI.GNTTAB) !== 0;

/** A refused page-table operation, with the rule and Xen's errno. */
export class PageTypeError extends Error {
  constructor(readonly rule: string, readonly errno: number, readonly detail: string) {
    super(`${rule}: ${detail}`);
    this.name = 'PageTypeError';
  }
}

// Entry bits, as 32-bit halves: lo = bits 0-31, hi = bits 32-63.
const { P, RW, US, PWT, PCD, PSE: PSE_PAT, G, A, D } = PTE_LO;
const HI_RESERVED = PTE_HI.GNTTAB;
/** Low-half bits a leaf (L1) entry may not set (PT-6). */
const L1_BAD_LO = PWT | PCD | PSE_PAT;
/** Low-half bits an upper-level entry may not set (PT-6). */
const UPPER_BAD_LO = PWT | PCD | PSE_PAT | G;
const MAX_COUNT = 0xfffffff0;

const LEVEL_TYPE = [PageType.none, PageType.l1, PageType.l2, PageType.l3, PageType.l4] as const;

/** setL1Entry and modEntry: no cached translation can be stale. */
export const NOT_STALE = -1;
/** modEntry: an upper-level entry lost access; a cached subtree may be stale. */
export const UPPER_STALE = -2;
/** Low-half bits an L1 update may change without revalidation (Xen's fast path): US, A, D, G, AVAIL. */
const L1_FAST_LO = US | A | D | G | PTE_LO.AVAIL;

export { entryFrame };

/**
 * Whether changing a present entry from old to new takes access away, so
 * that a translation cached from the old one is stale: it goes absent,
 * names another frame, loses RW, A or D (the guest wants to see them set
 * again), or gains NX. Gaining access needs no flush: a fault through the
 * cached entry makes the engine read the entry afresh.
 */
export function takesAway(oldLo: number, oldHi: number, newLo: number, newHi: number): boolean {
  if (!(newLo & P)) return true;
  if (entryFrame(oldLo, oldHi) !== entryFrame(newLo, newHi)) return true;
  return (oldLo & ~newLo & (RW | A | D)) !== 0 || (newHi & ~oldHi & PTE_HI.NX) !== 0;
}

export function isPageTableType(t: number): boolean {
  return t >= PageType.l1 && t <= PageType.l4;
}

/**
 * The page-type system over a frame table. Methods throw PageTypeError for
 * a refused operation and leave every count as it was before the call.
 */
export class PageTypes {
  /**
   * Entries visited by validation and devalidation so far: the work that
   * batch hypercalls budget (a guest must not be able to hold the
   * hypervisor in one call).
   */
  work = 0;

  /**
   * `fillReservedL4(mfn, domid)` writes the hypervisor's entries into
   * slots 256-271 of an L4 of `domid` that has just been validated (PT-7).
   */
  constructor(
    readonly ft: FrameTable,
    private readonly fillReservedL4: (mfn: number, domid: number) => void = () => {},
    private readonly hooks: TypeHooks = NO_HOOKS,
  ) {}

  // --- General references.

  /**
   * Takes a general reference on a frame `domid` owns (PT-5). Xen's errors:
   * for an L1 entry -EPERM outside RAM (no I/O memory) and -EBUSY for a
   * frame of another owner; -EINVAL everywhere else (upper levels, pins,
   * roots, page copies).
   */
  getPage(mfn: number, domid: number, forL1 = false): void {
    const ft = this.ft;
    if (!ft.isValid(mfn)) throw new PageTypeError('PT-5', forL1 ? XenErrno.XEN_EPERM : XenErrno.XEN_EINVAL, `frame ${hex(mfn)} is outside machine memory`);
    if (ft.owner[mfn] !== domid) throw new PageTypeError('PT-5', forL1 ? XenErrno.XEN_EBUSY : XenErrno.XEN_EINVAL, `frame ${hex(mfn)} belongs to domain ${ft.owner[mfn]}, not ${domid}`);
    if (ft.refCount[mfn]! >= MAX_COUNT) throw new PageTypeError('PT-13', XenErrno.XEN_EINVAL, `frame ${hex(mfn)} has too many references`);
    ft.refCount[mfn]! += 1;
  }

  putPage(mfn: number): void {
    if (this.ft.refCount[mfn]! <= 1) throw new Error(`page-types: general reference underflow on frame ${hex(mfn)}`);
    this.ft.refCount[mfn]! -= 1;
  }

  // --- Type references.

  /**
   * Takes a type reference of `type` (PT-1); the first reference of a
   * page-table type validates the table (PT-2), typing what it maps.
   */
  getPageType(mfn: number, type: PageType, domid: number): void {
    const ft = this.ft;
    const count = ft.typeCount[mfn]!;
    if (count > 0) {
      const now = ft.type[mfn]!;
      if (now !== type) {
        const rule = type === PageType.writable ? 'PT-3' : now === PageType.writable ? 'PT-4' : 'PT-1';
        throw new PageTypeError(rule, XenErrno.XEN_EINVAL, `frame ${hex(mfn)} is in use as ${typeName(now)}, not ${typeName(type)}`);
      }
      if (count >= MAX_COUNT) throw new PageTypeError('PT-13', XenErrno.XEN_EINVAL, `frame ${hex(mfn)} has too many type references`);
      if (isPageTableType(type) && !(ft.flags[mfn]! & VALIDATED)) {
        // Typed but not validated: it is being validated further up this
        // call chain, so this entry names a table that contains it (PT-8).
        throw new PageTypeError('PT-8', XenErrno.XEN_EINVAL, `frame ${hex(mfn)} would be a linear page table`);
      }
      ft.typeCount[mfn] = count + 1;
      return;
    }
    this.hooks.typeTaken(mfn, type);
    ft.type[mfn] = type;
    ft.flags[mfn]! &= ~VALIDATED;
    ft.typeCount[mfn] = 1;
    if (isPageTableType(type)) {
      try {
        this.validate(mfn, type, domid);
      } catch (e) {
        ft.typeCount[mfn] = 0;
        ft.type[mfn] = PageType.none;
        throw e;
      }
      if (type === PageType.l4) this.fillReservedL4(mfn, domid);
      this.hooks.tableValidated(mfn);
    } else if (type === PageType.segDesc) {
      // PT-17: every descriptor of the page passes Xen's check (fixed up in place), or the type is refused.
      const bad = checkDescriptorPage(ft.words32(mfn));
      if (bad >= 0) {
        ft.typeCount[mfn] = 0;
        ft.type[mfn] = PageType.none;
        throw new PageTypeError('PT-17', XenErrno.XEN_EINVAL, `frame ${hex(mfn)}: descriptor ${bad} is refused (a TSS, LDT or interrupt gate, or a call gate to a selector the guest may not name)`);
      }
    }
    ft.flags[mfn]! |= VALIDATED;
  }

  /** Drops a type reference; the last one of a page table devalidates it (PT-9). */
  putPageType(mfn: number): void {
    const ft = this.ft;
    const count = ft.typeCount[mfn]!;
    if (count === 0) throw new Error(`page-types: type reference underflow on frame ${hex(mfn)}`);
    if (count > 1) {
      ft.typeCount[mfn] = count - 1;
      return;
    }
    const type = ft.type[mfn]! as PageType;
    if (isPageTableType(type) && ft.flags[mfn]! & VALIDATED) this.devalidate(mfn, type);
    ft.typeCount[mfn] = 0;
    ft.type[mfn] = PageType.none;
    ft.flags[mfn]! &= ~(VALIDATED | PINNED);
  }

  getPageAndType(mfn: number, type: PageType, domid: number): void {
    this.getPage(mfn, domid);
    try {
      this.getPageType(mfn, type, domid);
    } catch (e) {
      this.putPage(mfn);
      throw e;
    }
  }

  putPageAndType(mfn: number): void {
    this.putPageType(mfn);
    this.putPage(mfn);
  }

  // --- Entries.

  /** Checks an entry's bits for `level` (PT-6). */
  checkEntryBits(level: number, lo: number, hi: number): void {
    if (hi & HI_RESERVED) throw new PageTypeError('PT-6', XenErrno.XEN_EINVAL, `level-${level} entry sets bit 62`);
    if (level === 1) {
      if (lo & L1_BAD_LO) throw new PageTypeError('PT-6', XenErrno.XEN_EINVAL, 'level-1 entry sets a cache-control bit (PWT, PCD or PAT)');
    } else if (lo & UPPER_BAD_LO) {
      throw new PageTypeError('PT-6', XenErrno.XEN_EINVAL, lo & PSE_PAT
        ? `level-${level} entry maps a superpage (PSE), which paravane does not offer`
        : `level-${level} entry sets a forbidden bit (PWT, PCD or global)`);
    }
  }

  /** Takes the references a present entry at `level` holds (its target's general and type refs). */
  getEntry(level: number, lo: number, hi: number, domid: number): void {
    if (!(lo & P)) return;
    this.checkEntryBits(level, lo, hi);
    const target = entryFrame(lo, hi);
    if (level === 1) {
      this.getPage(target, domid, true);
      if (lo & RW) {
        try {
          this.getPageType(target, PageType.writable, domid);
        } catch (e) {
          this.putPage(target);
          if (e instanceof PageTypeError) throw new PageTypeError('PT-3', XenErrno.XEN_EBUSY, `frame ${hex(target)} cannot be mapped writable: ${e.detail}`);
          throw e;
        }
      }
      return;
    }
    try {
      this.getPageAndType(target, LEVEL_TYPE[level - 1]!, domid);
    } catch (e) {
      // A table of this level or above where a lower table belongs: a linear page table.
      const t = this.ft.isValid(target) ? this.ft.type[target]! : PageType.none;
      if (e instanceof PageTypeError && e.rule === 'PT-1' && isPageTableType(t) && t >= level) {
        throw new PageTypeError('PT-8', XenErrno.XEN_EINVAL, `level-${level} entry names frame ${hex(target)}, itself a level-${t} table (linear page tables are refused)`);
      }
      throw e;
    }
  }

  /** Drops what getEntry took. */
  putEntry(level: number, lo: number, hi: number): void {
    if (!(lo & P)) return;
    const target = entryFrame(lo, hi);
    if (level === 1) {
      if (lo & RW) this.putPageType(target);
      this.putPage(target);
      return;
    }
    this.putPageAndType(target);
  }

  /**
   * Reading path 9: the one L1 update (mmu_update, update_va_mapping, writable page
   * tables): entry `index` of the validated L1 whose words are `words`
   * becomes newLo:newHi, as Xen's mod_l1_entry. A present entry gets US
   * (the guest kernel runs at CPL 3) and, with `preserveAd`, keeps the old
   * A and D bits. An entry that keeps its frame and RW bit and changes only
   * harmless bits (L1_FAST_LO) is stored as is; otherwise the new entry's
   * references are taken (the common case, a frame of the domain that
   * needs no type change, inline: this is every batch's hot path; anything
   * else through getEntry, which also throws the refusals, nothing changed
   * then), the entry written and the old entry's references dropped.
   * Returns the frame the old entry mapped when a translation cached from
   * it is now stale (takesAway), else NOT_STALE.
   */
  setL1Entry(words: Uint32Array, index: number, newLo: number, newHi: number, domid: number, preserveAd = false): number {
    const oldLo = words[2 * index]!, oldHi = words[2 * index + 1]!;
    if (newLo & P) {
      newLo = (newLo | US) >>> 0;
      if (preserveAd) newLo = (newLo | (oldLo & (A | D))) >>> 0;
      // No bit check on the fast path: the old entry passed it, the high word
      // is the same and L1_FAST_LO shares no bit with the refused ones.
      if (oldLo & P && newHi === oldHi && ((newLo ^ oldLo) & ~L1_FAST_LO) === 0) {
        words[2 * index] = newLo;
        return oldLo & ~newLo & (A | D) ? entryFrame(oldLo, oldHi) : NOT_STALE;
      }
      if (!this.takeL1Quick(newLo, newHi, domid)) this.getEntry(1, newLo, newHi, domid);
    }
    words[2 * index] = newLo;
    words[2 * index + 1] = newHi;
    if (!(oldLo & P)) return NOT_STALE;
    // A grant mapping's references are its own (grant-map.ts): overwriting it is an implicit unmap (PT-18).
    if (isGrantPte(oldHi)) this.hooks.grantPteLost?.(domid);
    else this.dropL1(oldLo, oldHi);
    return takesAway(oldLo, oldHi, newLo, newHi) ? entryFrame(oldLo, oldHi) : NOT_STALE;
  }

  /**
   * Writes a grant mapping (PT-18) into entry `index` of the domain's
   * validated L1 `l1`: the entry's old references are dropped as any
   * overwrite drops them (an old grant mapping there is an implicit unmap).
   * The new entry takes no reference: the grant mapping holds them.
   * Returns what a cached translation of the old entry may now be stale
   * for (setL1Entry's answer).
   */
  writeGrantPte(l1: number, index: number, lo: number, hi: number, domid: number): number {
    const words = this.ft.words32(l1);
    const oldLo = words[2 * index]!, oldHi = words[2 * index + 1]!;
    words[2 * index] = lo;
    words[2 * index + 1] = hi;
    if (!(oldLo & P)) return NOT_STALE;
    if (isGrantPte(oldHi)) this.hooks.grantPteLost?.(domid);
    else this.dropL1(oldLo, oldHi);
    return entryFrame(oldLo, oldHi);
  }

  /**
   * getEntry(1, lo, hi) for a present entry in the common case: a frame of
   * the domain, no refused bit, no type change (read-only, or writable to a
   * frame typed writable already). Takes its references and returns true;
   * returns false with nothing taken when getEntry must decide.
   */
  private takeL1Quick(lo: number, hi: number, domid: number): boolean {
    const ft = this.ft;
    const t = entryFrame(lo, hi);
    if (t >= ft.count || hi & HI_RESERVED || lo & L1_BAD_LO || ft.owner[t] !== domid || ft.refCount[t]! >= MAX_COUNT) return false;
    if (lo & RW) {
      const c = ft.typeCount[t]!;
      if (c === 0 || c >= MAX_COUNT || ft.type[t] !== PageType.writable) return false;
      ft.typeCount[t] = c + 1;
    }
    ft.refCount[t]! += 1;
    return true;
  }

  /** putEntry(1, lo, hi) for a present entry: its references dropped, the last ones through putPageType and putPage. */
  private dropL1(lo: number, hi: number): void {
    const ft = this.ft;
    const t = entryFrame(lo, hi);
    if (lo & RW) {
      const c = ft.typeCount[t]!;
      if (c > 1) ft.typeCount[t] = c - 1;
      else this.putPageType(t);
    }
    const refs = ft.refCount[t]!;
    if (refs > 1) ft.refCount[t] = refs - 1;
    else this.putPage(t);
  }

  /** Entry indices validation looks at: all but the hypervisor's L4 slots (PT-7). */
  static isGuestSlot(level: number, index: number): boolean {
    return level !== 4 || index < FIRST_RESERVED_SLOT || index > LAST_RESERVED_SLOT;
  }

  private validate(mfn: number, type: PageType, domid: number): void {
    const level = type as number; // l1..l4 are 1..4
    const words = this.ft.words32(mfn);
    this.work += 512;
    let i = 0;
    try {
      for (; i < 512; i++) {
        if (!PageTypes.isGuestSlot(level, i)) continue;
        const lo = words[2 * i]!;
        this.getEntry(level, lo, words[2 * i + 1]!, domid);
        // As Xen's adjust_guest_lNe: the guest kernel runs at CPL 3, so every
        // present entry of a 64-bit PV guest's tables gets the user bit.
        if (lo & P && !(lo & US)) words[2 * i] = (lo | US) >>> 0;
      }
    } catch (e) {
      for (let j = i - 1; j >= 0; j--) {
        if (PageTypes.isGuestSlot(level, j)) this.putEntry(level, words[2 * j]!, words[2 * j + 1]!);
      }
      throw e;
    }
  }

  private devalidate(mfn: number, type: PageType): void {
    const level = type as number;
    const words = this.ft.words32(mfn);
    this.work += 512;
    for (let i = 0; i < 512; i++) {
      if (!PageTypes.isGuestSlot(level, i)) continue;
      const lo = words[2 * i]!, hi = words[2 * i + 1]!;
      if (level === 1 && lo & P && isGrantPte(hi)) this.hooks.grantPteLost?.(this.ft.owner[mfn]!); // PT-18
      else this.putEntry(level, lo, hi);
    }
    this.ft.flags[mfn]! &= ~VALIDATED;
  }

  // --- Pins.

  /** MMUEXT_PIN_Ln_TABLE (PT-10). */
  pin(mfn: number, level: 1 | 2 | 3 | 4, domid: number): void {
    const ft = this.ft;
    if (ft.isValid(mfn) && ft.owner[mfn] === domid && ft.flags[mfn]! & PINNED) {
      throw new PageTypeError('PT-10', XenErrno.XEN_EINVAL, `frame ${hex(mfn)} is already pinned`);
    }
    this.getPageAndType(mfn, LEVEL_TYPE[level]!, domid);
    ft.flags[mfn]! |= PINNED;
  }

  /** MMUEXT_UNPIN_TABLE (PT-10). */
  unpin(mfn: number, domid: number): void {
    const ft = this.ft;
    if (!ft.isValid(mfn) || ft.owner[mfn] !== domid) throw new PageTypeError('PT-5', XenErrno.XEN_EINVAL, `frame ${hex(mfn)} is not the domain's`);
    if (!(ft.flags[mfn]! & PINNED)) throw new PageTypeError('PT-10', XenErrno.XEN_EINVAL, `frame ${hex(mfn)} is not pinned`);
    ft.flags[mfn]! &= ~PINNED;
    this.putPageAndType(mfn);
  }
}

export function typeName(t: number): string {
  return ['none', 'L1', 'L2', 'L3', 'L4', 'segment descriptors', 'writable'][t] ?? `type ${t}`;
}

/** Bytes per page-table entry. */
export const ENTRY_SIZE = 8;
export const ENTRIES = PAGE_SIZE / ENTRY_SIZE;
