// Guest virtual memory as hypercall handlers see it: every pointer a guest
// passes is translated through the guest's current page tables, with the
// checks a ring-3 access would get (present, user, writable at every level),
// and Xen's address checks (canonical, outside the hypervisor hole, no wrap).
// A bad pointer is a GuestFault (-EFAULT for the hypercall), never a
// hypervisor exception. Inputs: guest-controlled addresses and page tables.

import { FrameTable, PAGE_SIZE } from './frames.js';
import { entryFrame, PTE_LO } from './pte.js';

const { P, RW, US, PSE } = PTE_LO;
const ADDR_MASK = 0x000ffffffffff000n;
const LOW_END = 1n << 47n;                     // first non-canonical address above the lower half
const HIGH_START = 0xffff800000000000n;        // first canonical address of the upper half
const HOLE_END = 0xffff880000000000n;          // HYPERVISOR_VIRT_END: guest addresses resume here
const U64 = 1n << 64n;
/** HOLE_END's upper 32 bits: a guest address is below LOW_END (upper half < 0x8000) or from HOLE_END on. */
const HOLE_END_HI = 0xffff8800;
const LOW_END_HI = 0x8000;

/** Where an address is split into 32-bit halves without BigInt arithmetic (x86 is little-endian). */
const split64 = new BigUint64Array(1);
const halves = new Uint32Array(split64.buffer);

/** A guest pointer that cannot be used: the hypercall fails with -EFAULT. */
export class GuestFault extends Error {
  readonly code = 'EFAULT';
  constructor(readonly address: bigint, readonly reason: string) {
    super(`guest address 0x${address.toString(16)}: ${reason}`);
    this.name = 'GuestFault';
  }
}

/** A canonical 64-bit address (the hypervisor's area included). */
export function isCanonical(va: bigint): boolean {
  return (va >= 0n && va < LOW_END) || (va >= HIGH_START && va < U64);
}

/** Xen's __addr_ok for a range: canonical, not in the hypervisor's area, no wrap. */
export function guestRangeOk(va: bigint, len: number): boolean {
  if (len === 0) return va < U64;
  const last = va + BigInt(len) - 1n;
  if (va < 0n || last >= U64) return false;
  if (va < LOW_END) return last < LOW_END;
  return va >= HOLE_END;
}

/**
 * Access to one guest's virtual memory through a page-table root. Create
 * one per access context (the vCPU's current CR3). The walk works on
 * 32-bit halves as numbers: BigInt arithmetic allocates, and this runs for
 * every guest pointer of every hypercall.
 */
export class GuestMemory {
  private readonly root: number;

  /**
   * `onWrite` hears of every machine frame the hypervisor writes through
   * this view (DomainTranslations.hostWrote: the engine does not see these
   * writes, so a former page table written this way must not be trusted
   * from its cached copies). It may hear of a frame of a multi-page write
   * that then faults on a later page: that only costs a flush.
   */
  constructor(private readonly frames: FrameTable, cr3: bigint, private readonly onWrite?: (mfn: number) => void) {
    this.root = Number((cr3 & ADDR_MASK) >> 12n);
    this.hit = frames.chunkOf(0);
  }

  /**
   * A view with no page tables (a vCPU not yet given any): every access
   * faults, as its root is past machine memory.
   */
  static none(frames: FrameTable): GuestMemory {
    return new GuestMemory(frames, BigInt(frames.count) << 12n);
  }

  /** Machine address of `va`, checking the walk for an access of this kind. */
  translate(va: bigint, write: boolean): number {
    if (!guestRangeOk(va, 1)) throw new GuestFault(va, 'not a guest address (non-canonical or in the hypervisor area)');
    return this.walk(Number(va >> 32n) >>> 0, Number(va & 0xffffffffn) >>> 0, write, va);
  }

  /** The walk for the address whose halves are vaHi:vaLo (already range-checked). */
  private walk(vaHi: number, vaLo: number, write: boolean, va: bigint): number {
    const ft = this.frames;
    let table = this.root;
    for (let level = 4; level >= 1; level--) {
      // Bits 12-20, 21-29, 30-38, 39-47 of the address.
      const index = level === 4 ? (vaHi >>> 7) & 0x1ff
        : level === 3 ? ((vaHi << 2) | (vaLo >>> 30)) & 0x1ff
          : (vaLo >>> (12 + 9 * (level - 1))) & 0x1ff;
      if (!ft.isValid(table)) throw new GuestFault(va, `page table at frame 0x${table.toString(16)} is outside machine memory`);
      const words = ft.words32(table);
      const lo = words[2 * index]!, hi = words[2 * index + 1]!;
      if (!(lo & P)) throw new GuestFault(va, `not present at level ${level}`);
      if (!(lo & US)) throw new GuestFault(va, `not accessible from the guest at level ${level}`);
      if (write && !(lo & RW)) throw new GuestFault(va, `read-only at level ${level}`);
      if (level > 1 && lo & PSE) throw new GuestFault(va, `superpage at level ${level}`);
      table = entryFrame(lo, hi);
    }
    if (!ft.isValid(table)) throw new GuestFault(va, `maps frame 0x${table.toString(16)} outside machine memory`);
    return table * PAGE_SIZE + (vaLo & 0xfff);
  }

  /** Copies `len` bytes from the guest. */
  read(va: bigint, len: number): Uint8Array {
    const out = new Uint8Array(len);
    this.readInto(va, len, out);
    return out;
  }

  /** Copies `len` bytes from the guest into the start of `out` (for hot paths: a multicall entry, an argument struct). */
  readInto(va: bigint, len: number, out: Uint8Array): void {
    if (len > out.length) throw new RangeError(`readInto: ${len} bytes do not fit in ${out.length}`);
    if (len > 0) {
      const at = this.inPage(va, len, false);
      if (at >= 0) {
        out.set(this.hit.bytes.subarray(at, at + len));
        return;
      }
    }
    this.checkRange(va, len);
    for (let done = 0; done < len;) {
      const piece = this.piece(va, done, len, false);
      out.set(piece, done);
      done += piece.length;
    }
  }

  /** Copies `data` into the guest (all pages are checked before any byte is written). */
  write(va: bigint, data: Uint8Array): void {
    const len = data.length;
    this.checkRange(va, len);
    if ((Number(va & 0xfffn) + len) <= PAGE_SIZE) {
      if (len) this.piece(va, 0, len, true).set(data);
      return;
    }
    const pieces: Uint8Array[] = [];
    for (let done = 0; done < len;) {
      const piece = this.piece(va, done, len, true);
      pieces.push(piece);
      done += piece.length;
    }
    let done = 0;
    for (const piece of pieces) {
      piece.set(data.subarray(done, done + piece.length));
      done += piece.length;
    }
  }

  readU64(va: bigint): bigint {
    const at = this.inPage(va, 8, false);
    if (at >= 0) return this.hit.view.getBigUint64(at, true);
    return new DataView(this.read(va, 8).buffer).getBigUint64(0, true);
  }

  readU32(va: bigint): number {
    const at = this.inPage(va, 4, false);
    if (at >= 0) return this.hit.view.getUint32(at, true);
    return new DataView(this.read(va, 4).buffer).getUint32(0, true);
  }

  writeU64(va: bigint, v: bigint): void {
    const at = this.inPage(va, 8, true);
    if (at >= 0) {
      this.hit.view.setBigUint64(at, BigInt.asUintN(64, v), true);
      return;
    }
    const b = new Uint8Array(8);
    new DataView(b.buffer).setBigUint64(0, BigInt.asUintN(64, v), true);
    this.write(va, b);
  }

  writeU32(va: bigint, v: number): void {
    const at = this.inPage(va, 4, true);
    if (at >= 0) {
      this.hit.view.setUint32(at, v >>> 0, true);
      return;
    }
    const b = new Uint8Array(4);
    new DataView(b.buffer).setUint32(0, v >>> 0, true);
    this.write(va, b);
  }

  /**
   * For an access of 1 to 4096 bytes within one page (the usual case: every
   * port, count, result word and multicall entry of a hypercall): the
   * offset in the machine memory chunk left in `hit`, after one walk, with
   * no BigInt arithmetic and no allocation. -1 when the range crosses a
   * page or is not guest memory: the general path then reports it. Within
   * a page, the range is guest memory when its first byte is, since the
   * bounds (LOW_END, HOLE_END) are page aligned.
   */
  private inPage(va: bigint, len: number, write: boolean): number {
    if (va < 0n || va >= U64) return -1;
    split64[0] = va;
    const lo = halves[0]!, hi = halves[1]!;
    if ((lo & 0xfff) > PAGE_SIZE - len || (hi >= LOW_END_HI && hi < HOLE_END_HI)) return -1;
    const maddr = this.walk(hi, lo, write, va);
    if (write) this.onWrite?.(Math.floor(maddr / PAGE_SIZE));
    const chunk = this.frames.chunkOf(maddr);
    this.hit = chunk;
    return maddr - chunk.base;
  }

  /** The chunk of inPage's last answer. */
  private hit: ReturnType<FrameTable['chunkOf']>;

  private checkRange(va: bigint, len: number): void {
    if (!Number.isSafeInteger(len) || len < 0) throw new GuestFault(va, `bad length ${len}`);
    if (!guestRangeOk(va, len)) throw new GuestFault(va, `the ${len}-byte range is not entirely guest memory`);
  }

  /** The machine bytes of [va+done, ...) up to the end of its page or of the range. */
  private piece(va: bigint, done: number, len: number, write: boolean): Uint8Array {
    const at = done === 0 ? va : va + BigInt(done);
    const lo = Number(at & 0xffffffffn) >>> 0;
    const inPage = Math.min(len - done, PAGE_SIZE - (lo & 0xfff));
    const maddr = this.walk(Number(at >> 32n) >>> 0, lo, write, at);
    const mfn = Math.floor(maddr / PAGE_SIZE);
    if (write) this.onWrite?.(mfn);
    const page = this.frames.bytes(mfn);
    const off = maddr % PAGE_SIZE;
    return page.subarray(off, off + inPage);
  }
}
