// The software CPU's MMU: 4-level long-mode paging over the VM's memory
// slots, with a TLB of 4 KiB translations. It checks what hardware checks
// (present, writable with CR0.WP, user, NX with EFER.NXE, reserved bits),
// sets the Accessed and Dirty bits as hardware does, and raises #PF with
// hardware's error code. The TLB is dropped whole on every CR3 write and
// whenever the host says translations changed.

/** A 4 KiB page of guest-physical memory backed by a VM slot. */
export interface PhysPage {
  readonly bytes: Uint8Array;
  readonly view: DataView;
  /** Offset of the page in bytes/view. */
  readonly off: number;
  /** Guest writes exit as MMIO and leave memory alone. */
  readonly readonly: boolean;
  /** Machine offset of the page (for dirty logging and shootdowns). */
  readonly machine: number;
  /** Called on a guest write (dirty logging), if the slot logs. */
  readonly onWrite?: () => void;
}

/** Where guest-physical pages live; undefined: no slot (an MMIO access). */
export type PhysLookup = (gfn: number) => PhysPage | undefined;

/** An exception the current instruction raises. */
export class CpuFault {
  constructor(readonly vector: number, readonly errorCode?: number, readonly cr2?: bigint) {}
}


export const ACC_WRITE = 1, ACC_USER = 2, ACC_FETCH = 4;
const PF_P = 1, PF_W = 2, PF_U = 4, PF_RSVD = 8, PF_I = 0x10;

const P = 1n, RW = 2n, US = 4n, A = 0x20n, D = 0x40n, PS = 0x80n, NX = 1n << 63n;
/** Physical-address bits this CPU implements (CPUID 0x80000008). */
export const MAXPHYADDR = 46;
const ADDR = ((1n << BigInt(MAXPHYADDR)) - 1n) & ~0xfffn;
/** Bits 51:MAXPHYADDR, reserved in every entry. */
const RSVD_HIGH = ((1n << 52n) - 1n) & ~((1n << BigInt(MAXPHYADDR)) - 1n);

export interface TlbEntry {
  /** The backing page; undefined where no slot backs the frame (accesses exit as MMIO). */
  page: PhysPage | undefined;
  /** The guest-physical frame. */
  gfn: number;
  /** Effective rights: writable, user, no-execute, and whether the leaf's Dirty bit is set. */
  rw: boolean;
  user: boolean;
  nx: boolean;
  dirty: boolean;
  /** Guest-physical address of the leaf entry (to set its Dirty bit on the first write). */
  leaf: number;
}

export interface PagingState {
  cr0: bigint;
  cr3: bigint;
  cr4: bigint;
  efer: bigint;
}

const CR0_WP = 1n << 16n, EFER_NXE = 1n << 11n;

/** TLB sets: direct mapped by the low bits of the page number. */
const TLB_SIZE = 1024;

export class Mmu {
  // Direct mapped: a tag (the page number) and an entry per set. Page
  // numbers of upper-half addresses are not small integers, and a Map keyed
  // by them costs more than the whole instruction.
  private readonly tags = new Float64Array(TLB_SIZE).fill(-1);
  private readonly entries: Array<TlbEntry | undefined> = new Array<TlbEntry | undefined>(TLB_SIZE).fill(undefined);
  /** TLB fills since creation (for the engine's counters). */
  walks = 0;
  /** Bumped at every flush: what was derived from a translation (the CPU's code window) is stale then. */
  epoch = 0;

  constructor(private readonly phys: PhysLookup, private readonly state: PagingState) {}

  flush(): void {
    this.tags.fill(-1);
    this.entries.fill(undefined);
    this.epoch++;
  }

  flushPage(va: bigint): void {
    const key = Number(BigInt.asUintN(64, va) >> 12n), set = key % TLB_SIZE;
    if (this.tags[set] === key) {
      this.tags[set] = -1;
      this.entries[set] = undefined;
    }
    this.epoch++;
  }

  /**
   * The TLB entry for `va` with the rights for `acc` checked (a CpuFault if
   * refused). A non-canonical `va` faults #GP(0), or #SS(0) for a `stack`
   * access; only canonical pages are ever cached, so a hit needs no check.
   */
  translate(va: bigint, acc: number, stack = false): TlbEntry {
    const key = Number(va >> 12n), set = key % TLB_SIZE;
    let e = this.tags[set] === key ? this.entries[set] : undefined;
    if (e === undefined || (acc & ACC_WRITE && !e.dirty)) {
      const top = va >> 47n;
      if (top !== 0n && top !== 0x1ffffn) throw new CpuFault(stack ? 12 : 13, 0);
      e = this.walk(va, acc);
      this.tags[set] = key;
      this.entries[set] = e;
    }
    if (acc & ACC_USER && !e.user) throw this.fault(va, acc, PF_P);
    if (acc & ACC_WRITE && !e.rw && (acc & ACC_USER || (this.state.cr0 & CR0_WP) !== 0n)) throw this.fault(va, acc, PF_P);
    if (acc & ACC_FETCH && e.nx) throw this.fault(va, acc, PF_P);
    return e;
  }

  private fault(va: bigint, acc: number, bits: number): CpuFault {
    const nxe = (this.state.efer & EFER_NXE) !== 0n;
    const code = bits | (acc & ACC_WRITE ? PF_W : 0) | (acc & ACC_USER ? PF_U : 0) | (acc & ACC_FETCH && nxe ? PF_I : 0);
    return new CpuFault(14, code, va);
  }

  private read64(gpa: bigint): { value: bigint; page: PhysPage; at: number } {
    const g = Number(gpa);
    const page = this.phys(Math.floor(g / 4096));
    // A table outside memory: hardware would read MMIO; no engine here backs tables with devices.
    if (!page) throw new CpuFault(14, PF_P | PF_RSVD, 0n);
    const at = page.off + (g & 0xfff);
    return { value: page.view.getBigUint64(at, true), page, at };
  }

  private walk(va: bigint, acc: number): TlbEntry {
    this.walks++;
    const nxe = (this.state.efer & EFER_NXE) !== 0n;
    let table = this.state.cr3 & ADDR;
    let rw = true, user = true, nx = false;
    for (let level = 4; level >= 1; level--) {
      const shift = BigInt(12 + 9 * (level - 1));
      const { value: e, page, at } = this.read64(table + ((va >> shift) & 0x1ffn) * 8n);
      if (!(e & P)) throw this.fault(va, acc, 0);
      const big = level > 1 && (e & PS) !== 0n;
      let rsvd = (e & RSVD_HIGH) !== 0n || (!nxe && (e & NX) !== 0n) || (level === 4 && (e & PS) !== 0n);
      // A large page's frame must be aligned to its size (bit 12 is PAT).
      if (big) rsvd ||= (e & ((1n << shift) - 1n) & ~0x1fffn & ADDR) !== 0n;
      if (rsvd) throw this.fault(va, acc, PF_P | PF_RSVD);
      rw &&= (e & RW) !== 0n;
      user &&= (e & US) !== 0n;
      nx ||= nxe && (e & NX) !== 0n;
      if (level === 1 || big) {
        // Rights are checked by the caller; A and D are set only for an access that is allowed.
        const allowed = !(acc & ACC_USER && !user) && !(acc & ACC_WRITE && !rw && (acc & ACC_USER || (this.state.cr0 & CR0_WP) !== 0n)) && !(acc & ACC_FETCH && nx);
        let v = e;
        if (allowed) {
          v |= A;
          if (acc & ACC_WRITE) v |= D;
          if (v !== e) page.view.setBigUint64(at, v, true);
        }
        const frame = big ? (e & ADDR & ~((1n << shift) - 1n)) | (va & ((1n << shift) - 1n) & ~0xfffn) : e & ADDR;
        const gfn = Number(frame >> 12n);
        return { page: this.phys(gfn), gfn, rw, user, nx, dirty: (v & D) !== 0n, leaf: Number(table + ((va >> shift) & 0x1ffn) * 8n) };
      }
      if (!(e & A)) page.view.setBigUint64(at, e | A, true);
      table = e & ADDR;
    }
    throw new Error('unreachable');
  }
}
