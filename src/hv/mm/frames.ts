// Machine frames: who owns each 4 KiB frame of machine memory, its page
// type and counts (the page-type system builds on these), the free pool,
// and the global machine-to-physical (M2P) table. One machine address space
// is shared by all domains, as on Xen: isolation rests on ownership plus
// page-table validation. Inputs: frame numbers from the hypervisor core
// (guest-supplied numbers are checked by callers with `isValid`).

import { DomidSpecial } from '../../abi/generated/xen.js';
import type { MachineMemory, MemoryChunk } from '../../engine/types.js';

export const PAGE_SHIFT = 12;
export const PAGE_SIZE = 1 << PAGE_SHIFT;

/** Owner value of a frame in the free pool. */
export const OWNER_FREE = DomidSpecial.DOMID_INVALID;
/** Owner value of frames the hypervisor itself uses (M2P, shared_info...). */
export const OWNER_XEN = DomidSpecial.DOMID_XEN;

/** Page types, as Xen's PGT_* (none, L1-L4, segment descriptors, writable). */
export const PageType = {
  none: 0, l1: 1, l2: 2, l3: 3, l4: 4, segDesc: 5, writable: 6,
} as const;
export type PageType = (typeof PageType)[keyof typeof PageType];

/** M2P entry for a frame that belongs to no guest pseudo-physical frame. */
export const INVALID_PFN = 0xffffffffffffffffn;

export class FrameError extends Error {
  constructor(readonly code: 'ERR_NO_MEMORY' | 'ERR_FRAME_STATE', message: string) {
    super(message);
    this.name = 'FrameError';
  }
}

/**
 * The frame table: per-frame state in typed arrays (struct of arrays, so
 * validation walks are cheap), and the allocator's free stack.
 */
export class FrameTable {
  readonly count: number;
  /** Owning domain id, OWNER_FREE or OWNER_XEN. */
  readonly owner: Uint16Array;
  /** PageType of the frame. */
  readonly type: Uint8Array;
  /** References that hold the current type (page-table entries, pins, CR3s). */
  readonly typeCount: Uint32Array;
  /** All references: mappings of any kind plus the allocation itself. */
  readonly refCount: Uint32Array;
  /** Bit 0: validated; bit 1: pinned. */
  readonly flags: Uint8Array;
  /** Free frames, popped from the top; lowest numbers are handed out first. */
  private readonly freeStack: Uint32Array;
  private freeTop: number;
  /** First and last (exclusive) frame of the M2P table inside machine memory. */
  readonly m2pFirst: number;
  readonly m2pFrames: number;
  /** The M2P as 32-bit halves (low, high) of each 64-bit entry: no BigInt on hot paths. */
  private readonly m2p32: Uint32Array;

  constructor(private readonly memory: MachineMemory) {
    this.count = Math.floor(memory.size / PAGE_SIZE);
    this.owner = new Uint16Array(this.count).fill(OWNER_FREE);
    this.type = new Uint8Array(this.count);
    this.typeCount = new Uint32Array(this.count);
    this.refCount = new Uint32Array(this.count);
    this.flags = new Uint8Array(this.count);
    this.freeStack = new Uint32Array(this.count);
    this.freeTop = 0;
    for (let mfn = this.count - 1; mfn >= 0; mfn--) this.freeStack[this.freeTop++] = mfn;
    // The M2P table (8 bytes per frame) lives in machine memory so that it
    // can be mapped read-only into every guest at MACH2PHYS_VIRT_START.
    this.m2pFrames = Math.ceil((this.count * 8) / PAGE_SIZE);
    const m2p = this.allocate(OWNER_XEN, this.m2pFrames);
    for (let i = 1; i < m2p.length; i++) {
      if (m2p[i] !== m2p[0]! + i) throw new FrameError('ERR_FRAME_STATE', 'the M2P table needs contiguous frames at start-up');
    }
    this.m2pFirst = m2p[0]!;
    const at = this.m2pFirst * PAGE_SIZE;
    const chunk = memory.chunkAt(at);
    if (at + this.count * 8 > chunk.base + chunk.size) throw new FrameError('ERR_FRAME_STATE', 'the M2P table does not fit in the first memory chunk');
    this.m2p32 = new Uint32Array(chunk.buffer, at - chunk.base, this.count * 2);
    this.m2p32.fill(0xffffffff); // every entry INVALID_PFN
  }

  /** Frames in the free pool. */
  get free(): number {
    return this.freeTop;
  }

  isValid(mfn: number): boolean {
    return Number.isInteger(mfn) && mfn >= 0 && mfn < this.count;
  }

  /** Takes `n` frames from the free pool for `owner`; all or nothing. */
  allocate(owner: number, n: number): number[] {
    return Array.from(this.allocateArray(owner, n));
  }

  /** allocate() into a typed array: no per-frame JavaScript values (domain creation). */
  allocateArray(owner: number, n: number): Uint32Array {
    if (!Number.isInteger(n) || n < 0) throw new FrameError('ERR_FRAME_STATE', `cannot allocate ${n} frames`);
    if (n > this.freeTop) throw new FrameError('ERR_NO_MEMORY', `${n} frames requested, ${this.freeTop} free`);
    const out = new Uint32Array(n);
    for (let i = 0; i < n; i++) {
      const mfn = this.freeStack[--this.freeTop]!;
      this.owner[mfn] = owner;
      this.type[mfn] = PageType.none;
      this.typeCount[mfn] = 0;
      this.refCount[mfn] = 1; // the allocation reference
      this.flags[mfn] = 0;
      out[i] = mfn;
    }
    return out;
  }

  /**
   * Returns a frame to the pool. Only a frame nobody references any more
   * (its allocation reference alone) may be freed; its bytes are zeroed so
   * no data passes from one domain to the next.
   */
  release(mfn: number): void {
    if (!this.isValid(mfn)) throw new FrameError('ERR_FRAME_STATE', `frame ${mfn} does not exist`);
    if (this.owner[mfn] === OWNER_FREE) throw new FrameError('ERR_FRAME_STATE', `frame ${mfn} is already free`);
    if (this.refCount[mfn] !== 1 || this.typeCount[mfn] !== 0) {
      throw new FrameError('ERR_FRAME_STATE', `frame ${mfn} is still referenced (refs ${this.refCount[mfn]}, type refs ${this.typeCount[mfn]})`);
    }
    this.bytes(mfn).fill(0);
    this.owner[mfn] = OWNER_FREE;
    this.refCount[mfn] = 0;
    this.type[mfn] = PageType.none;
    this.flags[mfn] = 0;
    this.m2p32[2 * mfn] = 0xffffffff;
    this.m2p32[2 * mfn + 1] = 0xffffffff;
    this.freeStack[this.freeTop++] = mfn;
  }

  /**
   * Frees every frame `owner` holds, for a domain that is dead: the
   * references its own tables, pins and CR3s held die with it. Frames are
   * zeroed run by run (one fill per contiguous run, no per-frame garbage).
   * Returns the number freed.
   */
  releaseAllOf(owner: number): number {
    let freed = 0;
    let runEnd = -1; // exclusive end of the current run of frames being freed (scanning downwards)
    // Discarding reads as zeros afterwards and hands the memory back to
    // the host until it is used again: far cheaper than writing zeros
    // (16 MiB took ~1.5 ms, and evicted the caches).
    const zero = (first: number, end: number): void => this.memory.discard(first * PAGE_SIZE, (end - first) * PAGE_SIZE);
    // Downwards, so the lowest frames end on top of the free stack.
    for (let mfn = this.count - 1; mfn >= 0; mfn--) {
      if (this.owner[mfn] !== owner) {
        if (runEnd >= 0) zero(mfn + 1, runEnd);
        runEnd = -1;
        continue;
      }
      if (runEnd < 0) runEnd = mfn + 1;
      this.owner[mfn] = OWNER_FREE;
      this.refCount[mfn] = 0;
      this.typeCount[mfn] = 0;
      this.type[mfn] = PageType.none;
      this.flags[mfn] = 0;
      this.m2p32[2 * mfn] = 0xffffffff;
      this.m2p32[2 * mfn + 1] = 0xffffffff;
      this.freeStack[this.freeTop++] = mfn;
      freed++;
    }
    if (runEnd >= 0) zero(0, runEnd);
    return freed;
  }

  /** Every frame `owner` holds. */
  framesOf(owner: number): number[] {
    const out: number[] = [];
    for (let mfn = 0; mfn < this.count; mfn++) if (this.owner[mfn] === owner) out.push(mfn);
    return out;
  }

  /** A frame as 512 little-endian 64-bit words (page-table entries). */
  words(mfn: number): BigUint64Array {
    const addr = mfn * PAGE_SIZE;
    const c = this.memory.chunkAt(addr);
    return new BigUint64Array(c.buffer, addr - c.base, PAGE_SIZE / 8);
  }

  /** The memory chunk holding machine byte `maddr` (its `view` is a DataView over it). */
  chunkOf(maddr: number): MemoryChunk {
    return this.memory.chunkAt(maddr);
  }

  /** The 4 KiB of machine memory of a frame, shared with the guest. */
  bytes(mfn: number): Uint8Array {
    const addr = mfn * PAGE_SIZE;
    const c = this.memory.chunkAt(addr);
    return c.bytes.subarray(addr - c.base, addr - c.base + PAGE_SIZE);
  }

  m2p(mfn: number): bigint {
    return (BigInt(this.m2p32[2 * mfn + 1]!) << 32n) | BigInt(this.m2p32[2 * mfn]!);
  }

  setM2p(mfn: number, pfn: bigint): void {
    this.m2p32[2 * mfn] = Number(pfn & 0xffffffffn);
    this.m2p32[2 * mfn + 1] = Number((pfn >> 32n) & 0xffffffffn);
  }

  /** setM2p for a pfn known to be a small number (the builder's loops). */
  setM2pNumber(mfn: number, pfn: number): void {
    this.m2p32[2 * mfn] = pfn >>> 0;
    this.m2p32[2 * mfn + 1] = Math.floor(pfn / 0x100000000);
  }

  /**
   * A frame as 1024 32-bit words: entry i is words [2i] (low) and [2i+1]
   * (high). The last few views are kept: batches of updates hit the same
   * tables, and a view per call was most of their garbage.
   */
  words32(mfn: number): Uint32Array {
    const slot = mfn & 7;
    if (this.viewMfn[slot] === mfn) return this.views[slot]!;
    const addr = mfn * PAGE_SIZE;
    const c = this.memory.chunkAt(addr);
    const v = new Uint32Array(c.buffer, addr - c.base, PAGE_SIZE / 4);
    this.viewMfn[slot] = mfn;
    this.views[slot] = v;
    return v;
  }
  private readonly viewMfn = new Int32Array(8).fill(-1);
  private readonly views: Array<Uint32Array | undefined> = new Array(8);
}
