// Stale translations: what an engine may still have cached from a domain's
// page tables after the hypervisor rewrote them, and when it must forget it.
//
// KVM on this host uses shadow paging: it builds its own tables from the
// guest's and write-protects the guest's, so it follows the guest's own
// writes, but not the hypervisor's (mmu_update, update_va_mapping and the
// writable-page-table emulation write through the host mapping). Its
// shadow entries then behave like TLB entries that no context switch
// clears. Xen's TLB model for PV guests applies (Xen's public headers; docs/abi.md):
//
// - An update does not flush. The guest asks (MMUEXT_TLB_FLUSH_*,
//   MMUEXT_INVLPG_*, UVMF_INVLPG/UVMF_TLB_FLUSH, a new CR3), and until it
//   does it may still see the old mapping, as on hardware. Its own frames
//   only: every frame stays the domain's while it runs.
// - The hypervisor flushes by itself where a stale entry would break
//   isolation: before a frame changes type (Xen's type-change flush). A
//   stale writable entry to a frame about to become a page table, or a
//   stale link to a table about to become writable data, must go first.
//
// The cure for a changed leaf (L1) entry is cheap and exact: forgetting the
// old target frame (Memory.forgetTranslations: madvise on the shared
// mapping, whose MMU notifier zaps every cached entry to that frame). A
// changed upper-level entry can leave a whole cached subtree, which only
// dropping everything clears (VirtualMachine.dropCachedTranslations, a
// memory-slot toggle of ~0.2 ms). Changes that only add access (an entry
// made present, RW or US added, NX cleared) need nothing: a fault through a
// cached entry makes KVM read the guest's entry afresh.
//
// One more case: a frame KVM may still shadow as a table (validated since
// this domain's last drop) whose contents the hypervisor rewrote while it
// was data (an mmu_update on a data page, MMUEXT_CLEAR_PAGE/COPY_PAGE).
// KVM would keep its old shadow of it if it becomes a table again, so that
// type change drops everything first.
//
// Inputs: frame numbers from the page-type system (valid, owned).

import { PAGE_SIZE, PageType } from './frames.js';

/** What the engine offers to forget cached translations. */
export interface TranslationCache {
  /** Forgets translations to frames [mfn, mfn+count) in every VM (contents kept). */
  forget(mfn: number, count: number): void;
  /** Forgets everything the domain's VM cached. */
  dropAll(): void;
}

/**
 * Per-frame marks shared by every domain's tracker (a frame has one owner
 * at a time). Marks are generation numbers from one counter, so a mark
 * left by one domain never matches another's generation.
 */
export class TranslationMarks {
  /** Generation in which a frame was last validated as a table (0: never). */
  readonly tableGen: Uint32Array;
  /** Flush epoch in which a frame was recorded as a stale leaf target. */
  readonly staleEpoch: Uint32Array;
  private counter = 0;

  constructor(frames: number) {
    this.tableGen = new Uint32Array(frames);
    this.staleEpoch = new Uint32Array(frames);
  }

  next(): number {
    this.counter = this.counter >= 0xfffffffe ? 1 : this.counter + 1;
    return this.counter;
  }
}

/** More stale leaf targets than this make the next flush drop everything. */
export const MAX_STALE_LEAVES = 4096;
/** A flush forgetting more separate frame runs than this drops everything instead (cheaper). */
export const MAX_FORGET_RUNS = 32;

/** What the tracker did, for --stats and the benchmarks. */
export interface TlbStats {
  /** Flushes the guest asked for. */
  flushRequests: number;
  /** Flushes done for isolation (a type change). */
  typeChangeFlushes: number;
  /** madvise calls (runs of frames forgotten). */
  forgetCalls: number;
  framesForgotten: number;
  /** Whole-VM drops. */
  drops: number;
}

/** Stale-translation state of one domain. */
export class DomainTranslations {
  readonly stats: TlbStats = { flushRequests: 0, typeChangeFlushes: 0, forgetCalls: 0, framesForgotten: 0, drops: 0 };
  /** The engine's cache generation: frames validated as tables since the last drop carry it. */
  private gen: number;
  /** Epoch of the current stale-leaf list (marks in TranslationMarks.staleEpoch). */
  private epoch: number;
  private leaves = new Uint32Array(256);
  private nLeaves = 0;
  /** A present upper-level entry changed, or too many leaves: the next flush drops everything. */
  private dropPending = false;
  /** Frames possibly shadowed as tables that the hypervisor rewrote as data. */
  private readonly rewritten = new Set<number>();

  constructor(private readonly cache: TranslationCache, private readonly marks: TranslationMarks) {
    this.gen = marks.next();
    this.epoch = marks.next();
  }

  /** Whether a flush now would have anything to do. */
  get pending(): boolean {
    return this.dropPending || this.nLeaves > 0;
  }

  /** A present leaf entry that mapped `mfn` changed in a way that takes access away. */
  leafChanged(mfn: number): void {
    const marks = this.marks.staleEpoch;
    if (marks[mfn] === this.epoch || this.dropPending) return;
    if (this.nLeaves >= MAX_STALE_LEAVES) {
      this.dropPending = true;
      return;
    }
    marks[mfn] = this.epoch;
    if (this.nLeaves === this.leaves.length) {
      const bigger = new Uint32Array(this.leaves.length * 2);
      bigger.set(this.leaves);
      this.leaves = bigger;
    }
    this.leaves[this.nLeaves++] = mfn;
  }

  /** A present upper-level entry changed in a way that takes access away. */
  upperChanged(): void {
    this.dropPending = true;
  }

  /** The hypervisor wrote to `mfn` while it was not a validated table. */
  hostWrote(mfn: number): void {
    if (this.marks.tableGen[mfn] === this.gen) this.rewritten.add(mfn);
  }

  /** `mfn` has been validated as a table: the engine may now cache translations through it. */
  tableValidated(mfn: number): void {
    this.marks.tableGen[mfn] = this.gen;
  }

  /**
   * `mfn` takes its first type reference of `type` (it may change type).
   * Forgets whatever stale translation would let the guest break the new
   * type's rules: a writable one to a frame becoming a table or descriptor
   * page, a link to a former table becoming writable data, an old shadow of
   * a table the hypervisor rewrote.
   */
  typeTaken(mfn: number, type: PageType): void {
    const wasTable = this.marks.tableGen[mfn] === this.gen;
    if (type === PageType.writable || type === PageType.none) {
      // Data: only a former table can be reached through a stale link.
      if (wasTable && this.dropPending) this.flushFor();
      return;
    }
    if (this.dropPending || (wasTable && this.rewritten.has(mfn))) {
      this.flushFor();
    } else if (this.marks.staleEpoch[mfn] === this.epoch) {
      this.stats.typeChangeFlushes++;
      this.forgetRun(mfn, 1);
      this.marks.staleEpoch[mfn] = 0;
    }
  }

  /** A flush the guest asked for: afterwards it sees no translation its updates removed. */
  flush(): void {
    this.stats.flushRequests++;
    this.flushAll();
  }

  /** Drops everything now (a flush for isolation). */
  private flushFor(): void {
    this.stats.typeChangeFlushes++;
    this.dropAllNow();
  }

  private flushAll(): void {
    if (this.dropPending) {
      this.dropAllNow();
      return;
    }
    // Frames a type change already forgot have lost their mark.
    const marks = this.marks.staleEpoch;
    let n = 0;
    for (let i = 0; i < this.nLeaves; i++) {
      const mfn = this.leaves[i]!;
      if (marks[mfn] === this.epoch) this.leaves[n++] = mfn;
    }
    if (n === 0) {
      this.newEpoch();
      return;
    }
    const list = this.leaves.subarray(0, n).sort();
    let runs = 1;
    for (let i = 1; i < list.length; i++) if (list[i] !== list[i - 1]! + 1) runs++;
    if (runs > MAX_FORGET_RUNS) {
      this.dropAllNow();
      return;
    }
    let start = list[0]!, len = 1;
    for (let i = 1; i <= list.length; i++) {
      if (i < list.length && list[i] === start + len) {
        len++;
        continue;
      }
      this.forgetRun(start, len);
      if (i < list.length) {
        start = list[i]!;
        len = 1;
      }
    }
    this.newEpoch();
  }

  private forgetRun(mfn: number, count: number): void {
    this.stats.forgetCalls++;
    this.stats.framesForgotten += count;
    this.cache.forget(mfn, count);
  }

  private dropAllNow(): void {
    this.stats.drops++;
    this.cache.dropAll();
    this.gen = this.marks.next();
    this.rewritten.clear();
    this.dropPending = false;
    this.newEpoch();
  }

  private newEpoch(): void {
    this.nLeaves = 0;
    this.epoch = this.marks.next();
  }
}

/** A TranslationCache over an engine's VM and machine memory. */
export function engineCache(vm: { dropCachedTranslations(): void }, memory: { forgetTranslations(offset: number, length: number): void }): TranslationCache {
  return {
    forget: (mfn, count) => memory.forgetTranslations(mfn * PAGE_SIZE, count * PAGE_SIZE),
    dropAll: () => vm.dropCachedTranslations(),
  };
}
