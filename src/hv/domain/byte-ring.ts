// A byte ring in a page shared with a guest, as Xen's PV rings lay them
// out (the console's in/out, XenStore's req/rsp): `size` bytes (a power of
// two) at an offset of the page, and free-running 32-bit consumer and
// producer indices elsewhere in it. The hypervisor is the consumer of one
// ring and the producer of the other. Inputs: the indices (hostile: a
// distance past the ring is reported, never trusted).

/** One ring of a shared page: where its bytes are, its size, and where its indices are. */
export class ByteRing {
  constructor(
    private readonly page: Uint8Array, private readonly view: DataView,
    private readonly at: number, private readonly size: number, private readonly consAt: number, private readonly prodAt: number,
  ) {}

  private get cons(): number { return this.view.getUint32(this.consAt, true); }
  private get prod(): number { return this.view.getUint32(this.prodAt, true); }

  /** Bytes waiting in the ring, or undefined if the indices are further apart than the ring holds. */
  used(): number | undefined {
    const n = (this.prod - this.cons) >>> 0;
    return n > this.size ? undefined : n;
  }

  /** Takes up to `max` bytes (as the consumer); undefined if the indices are broken. */
  take(max: number): Uint8Array | undefined {
    const used = this.used();
    if (used === undefined) return undefined;
    const cons = this.cons;
    const n = Math.min(used, max);
    const out = new Uint8Array(n);
    for (let i = 0; i < n; i++) out[i] = this.page[this.at + (((cons + i) >>> 0) % this.size)]!;
    this.view.setUint32(this.consAt, (cons + n) >>> 0, true);
    return out;
  }

  /** Puts as much of `bytes` as fits (as the producer); how many, or undefined if the indices are broken. */
  put(bytes: ArrayLike<number>): number | undefined {
    const used = this.used();
    if (used === undefined) return undefined;
    const prod = this.prod;
    const n = Math.min(this.size - used, bytes.length);
    for (let i = 0; i < n; i++) this.page[this.at + (((prod + i) >>> 0) % this.size)] = bytes[i]!;
    this.view.setUint32(this.prodAt, (prod + n) >>> 0, true);
    return n;
  }
}
