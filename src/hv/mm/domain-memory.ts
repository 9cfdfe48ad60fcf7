// A domain's memory: the machine frames it owns and its pseudo-physical
// view of them (the P2M, PFN -> MFN, kept by the hypervisor; the guest keeps
// its own copy in mfn_list). Creating populates the domain; destroying
// returns every frame to the free pool. Inputs: sizes from the domain
// builder (checked) and frame numbers from the frame table.

import { FrameError, PAGE_SIZE, type FrameTable } from './frames.js';

export class DomainMemory {
  /** PFN -> MFN for pfn < nrPages. */
  readonly p2m: Uint32Array;
  private dead = false;

  private constructor(readonly domid: number, private readonly frames: FrameTable, mfns: Uint32Array) {
    this.p2m = mfns;
    for (let pfn = 0; pfn < mfns.length; pfn++) frames.setM2pNumber(mfns[pfn]!, pfn);
  }

  /** Allocates `bytes` of memory (a multiple of the page size) for domain `domid`. */
  static create(frames: FrameTable, domid: number, bytes: number): DomainMemory {
    if (!Number.isSafeInteger(bytes) || bytes <= 0 || bytes % PAGE_SIZE) {
      throw new FrameError('ERR_FRAME_STATE', `domain memory ${bytes} is not a positive multiple of ${PAGE_SIZE}`);
    }
    return new DomainMemory(domid, frames, frames.allocateArray(domid, bytes / PAGE_SIZE));
  }

  get nrPages(): number {
    return this.p2m.length;
  }

  mfnOf(pfn: number): number {
    if (!Number.isInteger(pfn) || pfn < 0 || pfn >= this.p2m.length) throw new FrameError('ERR_FRAME_STATE', `pfn ${pfn} is outside the domain's ${this.p2m.length} pages`);
    return this.p2m[pfn]!;
  }

  /** Bytes of pseudo-physical frame `pfn`. */
  page(pfn: number): Uint8Array {
    return this.frames.bytes(this.mfnOf(pfn));
  }

  /**
   * Gives every frame the domain owns back to the free pool. The domain is
   * dead, so the references its own page tables, pins and CR3s held die
   * with it: they are dropped first. Returns how many frames were freed.
   */
  destroy(): number {
    if (this.dead) return 0;
    this.dead = true;
    return this.frames.releaseAllOf(this.domid); // also zeroes the frames and resets their M2P entries
  }
}
