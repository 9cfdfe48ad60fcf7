// Shadow page tables for fv-trap mode: a plain kernel's own page tables,
// which hold guest-physical addresses and supervisor pages, are never
// loaded into the CPU. The CPU runs on shadow tables the monitor builds
// from them on demand, one 4 KiB entry per hidden page fault: machine
// frames in place of guest-physical ones, every page user-accessible
// (the deprivileged kernel runs at CPL 3) in the kernel's tables, only the
// guest's user pages in the tables used while the guest is in user mode.
//
// Coherence is kept by write-protection, as classic shadow paging does:
// every guest page the walker has read as a page table is mapped read-only
// in every shadow, so the guest's writes to its tables trap; the monitor
// emulates the store and clears each shadow entry built from the entry
// written (the `derived` map), which refaults from the new contents.
// Shadows are kept per guest CR3 (a context switch back finds its tables
// still built) until the pool of shadow frames runs out, when all are
// dropped and rebuilt as the guest touches its pages again.
//
// The guest's large pages (2 MiB, 1 GiB) are shadowed by 4 KiB entries.
// The monitor's own range, L4 slots 256-271, is the hypervisor's in every
// shadow; a guest that maps there is refused. Inputs: the guest's tables
// and addresses (hostile); a walk never follows an address outside the
// guest's memory.

import { OWNER_XEN, PAGE_SIZE, type FrameTable } from '../mm/frames.js';
import { FIRST_RESERVED_SLOT, LAST_RESERVED_SLOT, type PerDomainSpace } from '../mm/xen-space.js';
import { PTE } from '../mm/pte.js';

const ADDR = 0x000ffffffffff000n;
const UPPER = PTE.P | PTE.RW | PTE.US | PTE.A | PTE.D;
/** Page-fault error-code bits. */
export const PF = { P: 1, W: 2, U: 4, I: 16 } as const;

/** The guest's RAM: guest-physical frame -> machine frame. */
export class GuestRam {
  constructor(readonly ft: FrameTable, readonly p2m: Uint32Array) {}

  get pages(): number {
    return this.p2m.length;
  }

  /** The machine frame behind guest-physical frame `gpfn`, or undefined outside the guest's memory. */
  mfn(gpfn: number): number | undefined {
    return gpfn >= 0 && gpfn < this.p2m.length ? this.p2m[gpfn] : undefined;
  }

  read64(gpfn: number, index: number): bigint {
    return this.ft.words(this.p2m[gpfn]!)[index]!;
  }

  write64(gpfn: number, index: number, v: bigint): void {
    this.ft.words(this.p2m[gpfn]!)[index] = BigInt.asUintN(64, v);
  }
}

/** What an access is: a write, from guest user mode, an instruction fetch. */
export interface Access {
  write: boolean;
  user: boolean;
  fetch: boolean;
}

/** How the guest's CPU state shapes a walk. */
export interface WalkMode {
  /** Guest-physical address of the top-level table (CR3). */
  cr3: bigint;
  /** CR0.WP: supervisor writes honour read-only pages. */
  wp: boolean;
  /** EFER.NXE: bit 63 is no-execute (else reserved, and ignored here). */
  nxe: boolean;
}

/** A translation the guest's tables allow. */
export interface Translation {
  gpfn: number;
  writable: boolean;
  user: boolean;
  nx: boolean;
  /** The guest entries the walk used, top first: [table gpfn, index] (the last is the leaf, large or not). */
  path: Array<[number, number]>;
  /** The leaf's dirty bit. */
  dirty: boolean;
}

export type Walk = Translation | { fault: number } | { outside: bigint };

/** Counts for `--stats`. */
export interface ShadowCounts {
  /** Shadow entries built (hidden page faults). */
  fills: number;
  /** Guest page-table writes emulated. */
  ptWrites: number;
  /** Shadow entries cleared because the guest entry they came from changed. */
  invalidations: number;
  /** Times every shadow was dropped (the pool ran out). */
  flushes: number;
}

const key = (gpfn: number, index: number): number => gpfn * 512 + index;

export class ShadowTables {
  /** Roots by guest CR3 and mode: "cr3:k" and "cr3:u". */
  private readonly roots = new Map<string, number>();
  /** Every shadow frame in use. */
  private readonly frames = new Set<number>();
  /** Shadow slots (mfn * 512 + index) built from each guest entry (gpfn * 512 + index). */
  private derived = new Map<number, number[]>();
  /** Shadow leaf slots that map each guest frame (to write-protect it when it becomes a table). */
  private rmap = new Map<number, number[]>();
  /** Guest frames read as page tables: mapped read-only in every shadow. */
  private tables = new Set<number>();
  readonly counts: ShadowCounts = { fills: 0, ptWrites: 0, invalidations: 0, flushes: 0 };

  /**
   * `limit`: shadow frames kept before all are dropped; `changed`: the
   * engine must forget translations it cached from the shadows.
   */
  constructor(
    readonly ram: GuestRam, private readonly perDomain: PerDomainSpace,
    private readonly changed: () => void, private readonly limit = 2048,
  ) {}

  get frameCount(): number {
    return this.frames.size;
  }

  /** Whether guest frame `gpfn` is write-protected as a page table. */
  isTable(gpfn: number): boolean {
    return this.tables.has(gpfn);
  }

  /** The machine frame of the shadow root for guest `cr3` in kernel or user mode (built empty if new). */
  root(cr3: bigint, user: boolean): number {
    const k = `${cr3}:${user ? 'u' : 'k'}`;
    let r = this.roots.get(k);
    if (r === undefined) {
      if (this.frames.size >= this.limit) this.flush();
      r = this.take();
      const words = this.ram.ft.words(r);
      this.perDomain.reservedL4.forEach((e, i) => { words[FIRST_RESERVED_SLOT + i] = e; });
      this.roots.set(k, r);
    }
    return r;
  }

  /**
   * Walks the guest's tables for `va` as `access` would, setting accessed
   * (and, for a write allowed, dirty) bits as the CPU does. Returns the
   * translation, the page-fault error code the guest gets, or the
   * guest-physical address of a table outside its memory.
   */
  walk(va: bigint, access: Access, mode: WalkMode): Walk {
    let table = mode.cr3 & ADDR;
    let writable = true, user = true, nx = false;
    const path: Array<[number, number]> = [];
    const fault = (present: boolean): { fault: number } => ({
      fault: (present ? PF.P : 0) | (access.write ? PF.W : 0) | (access.user ? PF.U : 0) | (access.fetch && mode.nxe ? PF.I : 0),
    });
    for (let level = 4; level >= 1; level--) {
      const gpfn = Number(table >> 12n);
      if (this.ram.mfn(gpfn) === undefined) return { outside: table };
      const index = Number((va >> BigInt(3 + 9 * level)) & 0x1ffn);
      const e = this.ram.read64(gpfn, index);
      if (!(e & PTE.P)) return fault(false);
      path.push([gpfn, index]);
      writable &&= (e & PTE.RW) !== 0n;
      user &&= (e & PTE.US) !== 0n;
      if (mode.nxe && e & PTE.NX) nx = true;
      const leaf = level === 1 || ((level === 2 || level === 3) && (e & PTE.PS) !== 0n);
      if (!leaf) {
        if (!(e & PTE.A)) this.ram.write64(gpfn, index, e | PTE.A);
        table = e & ADDR;
        continue;
      }
      if ((access.user && !user) || (access.write && !writable && (access.user || mode.wp)) || (access.fetch && nx)) return fault(true);
      const span = BigInt(3 + 9 * level);
      const frameMask = (1n << span) - 1n;
      const target = ((e & ADDR & ~frameMask) | (va & frameMask & ~0xfffn)) >> 12n;
      const dirty = access.write || (e & PTE.D) !== 0n;
      const want = e | PTE.A | (access.write ? PTE.D : 0n);
      if (want !== e) this.ram.write64(gpfn, index, want);
      // Mark upper tables accessed only once the walk succeeds (the CPU sets them as it goes; either is allowed).
      return { gpfn: Number(target), writable: writable || (!access.user && !mode.wp), user, nx, path, dirty };
    }
    throw new Error('unreachable');
  }

  /**
   * Builds the shadow entry for `va` in the shadow for `cr3` and the mode
   * `t` was walked for, from translation `t` (which must allow the access).
   * Returns the guest frame if it lies outside the guest's memory.
   */
  fill(va: bigint, t: Translation, mode: WalkMode, userMode: boolean): number | undefined {
    const target = this.ram.mfn(t.gpfn);
    if (target === undefined) return t.gpfn;
    // Tables first: a leaf that maps a table is then made read-only below.
    for (const [gpfn] of t.path) this.protect(gpfn);
    if (this.frames.size + 4 >= this.limit) this.flush();
    let table = this.root(mode.cr3, userMode);
    // Shadow levels 4, 3, 2: the guest entry each is built from (a large page's leaf stands for the levels below it).
    for (let level = 4; level >= 2; level--) {
      const index = Number((va >> BigInt(3 + 9 * level)) & 0x1ffn);
      const words = this.ram.ft.words(table);
      const e = words[index]!;
      const from = t.path[Math.min(4 - level, t.path.length - 1)]!;
      if (e & PTE.P) {
        table = Number((e & ADDR) >> 12n);
        continue;
      }
      const child = this.take();
      words[index] = (BigInt(child) << 12n) | UPPER;
      this.derive(from, table, index);
      table = child;
    }
    const index = Number((va >> 12n) & 0x1ffn);
    let e = (BigInt(target) << 12n) | PTE.P | PTE.US | PTE.A;
    if (t.writable && t.dirty && !this.tables.has(t.gpfn)) e |= PTE.RW | PTE.D;
    if (t.nx) e |= PTE.NX;
    const words = this.ram.ft.words(table);
    const was = words[index]!;
    words[index] = e;
    // An entry made writable (or otherwise changed) where one was: the engine may have cached the old one.
    if (was & PTE.P) this.changed();
    this.derive(t.path[t.path.length - 1]!, table, index);
    const slots = this.rmap.get(t.gpfn);
    if (slots) slots.push(key(table, index));
    else this.rmap.set(t.gpfn, [key(table, index)]);
    this.counts.fills++;
    return undefined;
  }

  /**
   * The guest wrote entry `index` of its frame `gpfn` (a table): every
   * shadow entry built from it is cleared, to be rebuilt from the new value.
   */
  entryWritten(gpfn: number, index: number): void {
    const slots = this.derived.get(key(gpfn, index));
    if (!slots) return;
    this.derived.delete(key(gpfn, index));
    for (const s of slots) {
      const mfn = Math.floor(s / 512);
      // A slot of a frame dropped since (a flush) is not touched: the frame may be another's now.
      if (this.frames.has(mfn)) this.ram.ft.words(mfn)[s % 512] = 0n;
    }
    this.counts.invalidations += slots.length;
    this.changed();
  }

  /** Drops every shadow: the roots are rebuilt empty on their next use. */
  flush(): void {
    for (const mfn of this.frames) this.ram.ft.release(mfn);
    this.frames.clear();
    this.roots.clear();
    this.derived = new Map();
    this.rmap = new Map();
    this.tables = new Set();
    this.counts.flushes++;
    this.changed();
  }

  /** Gives every shadow frame back (the domain is destroyed). */
  release(): number {
    const n = this.frames.size;
    for (const mfn of this.frames) this.ram.ft.release(mfn);
    this.frames.clear();
    this.roots.clear();
    return n;
  }

  private take(): number {
    const [mfn] = this.ram.ft.allocate(OWNER_XEN, 1);
    this.frames.add(mfn!);
    return mfn!;
  }

  private derive(from: [number, number], table: number, index: number): void {
    const k = key(from[0], from[1]);
    const list = this.derived.get(k);
    if (list) list.push(key(table, index));
    else this.derived.set(k, [key(table, index)]);
  }

  /** Makes guest frame `gpfn` a write-protected table: every writable shadow mapping of it becomes read-only. */
  private protect(gpfn: number): void {
    if (this.tables.has(gpfn)) return;
    this.tables.add(gpfn);
    const slots = this.rmap.get(gpfn);
    if (!slots) return;
    let any = false;
    for (const s of slots) {
      const mfn = Math.floor(s / 512);
      if (!this.frames.has(mfn)) continue;
      const words = this.ram.ft.words(mfn);
      if (words[s % 512]! & PTE.RW) {
        words[s % 512] = words[s % 512]! & ~(PTE.RW | PTE.D);
        any = true;
      }
    }
    if (any) this.changed();
  }
}

export { PAGE_SIZE, LAST_RESERVED_SLOT };
