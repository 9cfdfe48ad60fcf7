// Guest virtual memory as hypercall handlers see it: every pointer a guest
// passes is translated through the guest's current page tables, with the
// checks a ring-3 access would get (present, user, writable at every level),
// and Xen's address checks (canonical, outside the hypervisor hole, no wrap).
// A bad pointer is a GuestFault (-EFAULT for the hypercall), never a
// hypervisor exception. Inputs: guest-controlled addresses and page tables.

import { FrameTable, PAGE_SIZE } from './frames.js';

const P = 1n;
const RW = 2n;
const US = 4n;
const PSE = 0x80n;
const ADDR_MASK = 0x000ffffffffff000n;
const LOW_END = 1n << 47n;                     // first non-canonical address above the lower half
const HOLE_END = 0xffff880000000000n;          // HYPERVISOR_VIRT_END: guest addresses resume here
const U64 = 1n << 64n;

/** A guest pointer that cannot be used: the hypercall fails with -EFAULT. */
export class GuestFault extends Error {
  readonly code = 'EFAULT';
  constructor(readonly address: bigint, readonly reason: string) {
    super(`guest address 0x${address.toString(16)}: ${reason}`);
    this.name = 'GuestFault';
  }
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
 * one per access context (the vCPU's current CR3).
 */
export class GuestMemory {
  constructor(private readonly frames: FrameTable, private readonly cr3: bigint) {}

  /** Machine address of `va`, checking the walk for an access of this kind. */
  translate(va: bigint, write: boolean): number {
    if (!guestRangeOk(va, 1)) throw new GuestFault(va, 'not a guest address (non-canonical or in the hypervisor area)');
    let table = this.cr3 & ADDR_MASK;
    for (let level = 4; level >= 1; level--) {
      const index = Number((va >> BigInt(12 + 9 * (level - 1))) & 0x1ffn);
      const entry = this.readEntry(table, index, va);
      if (!(entry & P)) throw new GuestFault(va, `not present at level ${level}`);
      if (!(entry & US)) throw new GuestFault(va, `not accessible from the guest at level ${level}`);
      if (write && !(entry & RW)) throw new GuestFault(va, `read-only at level ${level}`);
      if (level > 1 && entry & PSE) throw new GuestFault(va, `superpage at level ${level}`);
      table = entry & ADDR_MASK;
    }
    const mfn = Number(table >> 12n);
    if (!this.frames.isValid(mfn)) throw new GuestFault(va, `maps frame 0x${mfn.toString(16)} outside machine memory`);
    return mfn * PAGE_SIZE + Number(va & 0xfffn);
  }

  /** Copies `len` bytes from the guest. */
  read(va: bigint, len: number): Uint8Array {
    const out = new Uint8Array(len);
    this.walkRange(va, len, false, (bytes, done) => out.set(bytes, done));
    return out;
  }

  /** Copies `data` into the guest (all pages are checked before any byte is written). */
  write(va: bigint, data: Uint8Array): void {
    const pieces: Array<[Uint8Array, number]> = [];
    this.walkRange(va, data.length, true, (bytes, done) => pieces.push([bytes, done]));
    for (const [bytes, done] of pieces) bytes.set(data.subarray(done, done + bytes.length));
  }

  readU64(va: bigint): bigint {
    return new DataView(this.read(va, 8).buffer).getBigUint64(0, true);
  }

  readU32(va: bigint): number {
    return new DataView(this.read(va, 4).buffer).getUint32(0, true);
  }

  writeU64(va: bigint, v: bigint): void {
    const b = new Uint8Array(8);
    new DataView(b.buffer).setBigUint64(0, BigInt.asUintN(64, v), true);
    this.write(va, b);
  }

  writeU32(va: bigint, v: number): void {
    const b = new Uint8Array(4);
    new DataView(b.buffer).setUint32(0, v >>> 0, true);
    this.write(va, b);
  }

  /** Calls `each` with the machine bytes of every page piece of [va, va+len). */
  private walkRange(va: bigint, len: number, write: boolean, each: (bytes: Uint8Array, done: number) => void): void {
    if (!Number.isSafeInteger(len) || len < 0) throw new GuestFault(va, `bad length ${len}`);
    if (!guestRangeOk(va, len)) throw new GuestFault(va, `the ${len}-byte range is not entirely guest memory`);
    let done = 0;
    while (done < len) {
      const at = va + BigInt(done);
      const inPage = Math.min(len - done, PAGE_SIZE - Number(at & 0xfffn));
      const maddr = this.translate(at, write);
      const page = this.frames.bytes(Math.floor(maddr / PAGE_SIZE));
      const off = maddr % PAGE_SIZE;
      each(page.subarray(off, off + inPage), done);
      done += inPage;
    }
  }

  private readEntry(table: bigint, index: number, va: bigint): bigint {
    const mfn = Number(table >> 12n);
    if (!this.frames.isValid(mfn)) throw new GuestFault(va, `page table at frame 0x${mfn.toString(16)} is outside machine memory`);
    const page = this.frames.bytes(mfn);
    return new DataView(page.buffer, page.byteOffset, PAGE_SIZE).getBigUint64(index * 8, true);
  }
}
