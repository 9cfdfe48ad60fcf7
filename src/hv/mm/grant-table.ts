// A domain's grant table, as Xen keeps it for a PV domain: the frames that
// hold its grant entries (layout version 1 or 2) and, for version 2, the
// frames of its status array. The frames are the domain's own (it maps
// them to write its grants), held writable by the hypervisor while the
// domain lives so that they can never become page tables; a status frame
// let go when the domain returns to version 1 must be mapped nowhere
// (XSA-255). Mapping grants uses the pins kept here (./grant-map.ts).
// Inputs: frame counts and versions from grant_table_op (hostile, checked).

import { GtfType } from '../../abi/generated/grant-table.js';
import { FrameError, type FrameTable } from './frames.js';

/** The most grant frames a domain may have (Xen's default max_grant_frames). */
export const MAX_GRANT_FRAMES = 64;
/** Entries the toolstack reserves (console, xenstore): carried over a version change. */
export const GNTTAB_NR_RESERVED_ENTRIES = 8;
const V1_ENTRY = 8, V2_ENTRY = 16, STATUS_ENTRY = 2, PAGE = 4096;

/** What the table needs of its domain: holding a frame writable for its life, and letting go of one. */
export interface GrantHost {
  readonly domid: number;
  readonly ft: FrameTable;
  /** Takes a general and writable type reference on the domain's frame until the domain dies (or release). */
  holdWritable(mfn: number): bigint;
  /** Drops what holdWritable took. */
  releaseHeld(mfn: number): void;
}

/** A grant entry as the granter wrote it: its flags (GTF_*), the domain it grants to, the frame. */
export interface GrantEntry { flags: number; domid: number; frame: bigint }

/** How a grant is in use (Xen's active entry): host and device pins, read-only and writable, and the frame pinned. */
interface Pin { hostR: number; hostW: number; devR: number; devW: number; frame: number }

const GTF_READING = 8, GTF_WRITING = 16;

export class GrantTable {
  /** Grants in use by a mapping or a copy, by reference. */
  private readonly pins = new Map<number, Pin>();

  /** 1 or 2: the layout of the entries. */
  version = 1;
  /** Grant-entry frames (machine), grown by setup_table. */
  readonly frames: number[] = [];
  /** Version 2's status frames. */
  readonly statusFrames: number[] = [];

  constructor(private readonly host: GrantHost) {}

  /** How many grant entries the frames hold in the current layout. */
  get entries(): number {
    return (this.frames.length * PAGE) / (this.version === 1 ? V1_ENTRY : V2_ENTRY);
  }

  /** Entry `ref` as the granter wrote it, or undefined past the table's end. */
  entry(ref: number): GrantEntry | undefined {
    if (!Number.isInteger(ref) || ref < 0 || ref >= this.entries) return undefined;
    const size = this.version === 1 ? V1_ENTRY : V2_ENTRY;
    const at = ref * size;
    const page = this.host.ft.bytes(this.frames[Math.floor(at / PAGE)]!);
    const v = new DataView(page.buffer, page.byteOffset + (at % PAGE), size);
    return this.version === 1
      ? { flags: v.getUint16(0, true), domid: v.getUint16(2, true), frame: BigInt(v.getUint32(4, true)) }
      : { flags: v.getUint16(0, true), domid: v.getUint16(2, true), frame: v.getBigUint64(8, true) };
  }

  /** The pin of `ref`, if it is in use. */
  pinOf(ref: number): Readonly<Pin> | undefined {
    return this.pins.get(ref);
  }

  /** Whether a grant past the reserved ones is in use (a version change is then -EBUSY, as Xen; the toolstack's may stay mapped). */
  get inUse(): boolean {
    for (const ref of this.pins.keys()) if (ref >= GNTTAB_NR_RESERVED_ENTRIES) return true;
    return false;
  }

  /** Takes a pin of `ref` on `frame` (host or device, writable or not) and sets GTF_reading/GTF_writing as Xen does. */
  pin(ref: number, frame: number, kind: 'host' | 'dev', writable: boolean): void {
    const p = this.pins.get(ref) ?? { hostR: 0, hostW: 0, devR: 0, devW: 0, frame };
    if (kind === 'host') { if (writable) p.hostW++; else p.hostR++; } else if (writable) p.devW++; else p.devR++;
    this.pins.set(ref, p);
    this.busy(ref, p);
  }

  /** Drops a pin pin() took; the entry's busy bits follow what is left. */
  unpin(ref: number, kind: 'host' | 'dev', writable: boolean): void {
    const p = this.pins.get(ref);
    if (!p) throw new Error(`grant ${ref} is not pinned`);
    if (kind === 'host') { if (writable) p.hostW--; else p.hostR--; } else if (writable) p.devW--; else p.devR--;
    if (p.hostR + p.hostW + p.devR + p.devW === 0) this.pins.delete(ref);
    this.busy(ref, p);
  }

  /** GTF_reading while pinned at all, GTF_writing while pinned writable: in the entry (v1) or its status (v2). */
  private busy(ref: number, p: Pin): void {
    const any = p.hostR + p.hostW + p.devR + p.devW > 0, w = p.hostW + p.devW > 0;
    const bits = (any ? GTF_READING : 0) | (w ? GTF_WRITING : 0);
    let page: Uint8Array, at: number;
    if (this.version === 1) {
      at = ref * V1_ENTRY;
      page = this.host.ft.bytes(this.frames[Math.floor(at / PAGE)]!);
    } else {
      at = ref * STATUS_ENTRY;
      page = this.host.ft.bytes(this.statusFrames[Math.floor(at / PAGE)]!);
    }
    const v = new DataView(page.buffer, page.byteOffset + (at % PAGE), 2);
    v.setUint16(0, (v.getUint16(0, true) & ~(GTF_READING | GTF_WRITING)) | bits, true);
  }

  /** Status frames version 2 needs for the current entries. */
  private statusNeeded(): number {
    return this.version === 2 ? Math.ceil((this.entries * STATUS_ENTRY) / PAGE) : 0;
  }

  /**
   * Grows the table to `n` frames (never shrinks): false when `n` is over
   * the limit, or the machine has no frame left, in which case the frames
   * this call took go back (as Xen's gnttab_grow_table).
   */
  grow(n: number): boolean {
    if (n > MAX_GRANT_FRAMES) return false;
    const had = this.frames.length, hadStatus = this.statusFrames.length;
    try {
      while (this.frames.length < n) this.frames.push(this.newFrame());
      while (this.statusFrames.length < this.statusNeeded()) this.statusFrames.push(this.newFrame());
    } catch (e) {
      if (!(e instanceof FrameError)) throw e;
      for (const m of [...this.frames.splice(had), ...this.statusFrames.splice(hadStatus)]) this.freeFrame(m);
      return false;
    }
    return true;
  }

  private freeFrame(mfn: number): void {
    this.host.releaseHeld(mfn);
    this.host.ft.release(mfn);
  }

  private newFrame(): number {
    const [mfn] = this.host.ft.allocate(this.host.domid, 1);
    if (this.host.holdWritable(mfn!) !== 0n) throw new Error(`a fresh grant frame ${mfn} could not be held writable`);
    return mfn!;
  }

  /**
   * set_version, as Xen's gnttab_set_version: 1 or 2 ('invalid'); the
   * current one changes nothing; a grant past the reserved ones in use
   * ('busy'); back to 1, a reserved entry version 1 cannot hold (a
   * transitive grant, a frame past 32 bits: 'range') or a status frame
   * still referenced from anywhere, a guest mapping (XSA-255: 'busy'); to
   * 2, no frame for the status frames ('nomem'). Any refusal changes
   * nothing. Then every entry is cleared but the reserved ones, which are
   * laid out again in the new layout.
   */
  setVersion(v: number): 'ok' | 'invalid' | 'busy' | 'range' | 'nomem' {
    if (v !== 1 && v !== 2) return 'invalid';
    if (v === this.version) return 'ok';
    if (this.inUse) return 'busy';
    const reserved = this.reservedEntries();
    const ft = this.host.ft;
    if (v === 1) {
      if (reserved.some((e) => (e.flags & GtfType.GTF_type_mask) === GtfType.GTF_transitive || e.frame >> 32n)) return 'range';
      // Only the allocation and the hypervisor's hold may reference a status frame that goes.
      if (this.statusFrames.some((m) => ft.refCount[m] !== 2 || ft.typeCount[m] !== 1)) return 'busy';
      for (const m of this.statusFrames.splice(0)) this.freeFrame(m);
    }
    this.version = v;
    if (!this.grow(this.frames.length)) {
      this.version = 1;
      return 'nomem';
    }
    for (const m of this.frames) ft.bytes(m).fill(0);
    for (const m of this.statusFrames) ft.bytes(m).fill(0);
    this.writeReserved(reserved);
    return 'ok';
  }

  /** The reserved entries as the current layout holds them (none without frames). */
  private reservedEntries(): GrantEntry[] {
    if (!this.frames.length) return [];
    return Array.from({ length: GNTTAB_NR_RESERVED_ENTRIES }, (_, i) => this.entry(i)!);
  }

  /** Writes the reserved entries into the current layout (flags, domid, frame). */
  private writeReserved(entries: readonly GrantEntry[]): void {
    if (!this.frames.length) return;
    const page = this.host.ft.bytes(this.frames[0]!);
    const v = new DataView(page.buffer, page.byteOffset, PAGE);
    entries.forEach((e, i) => {
      if (this.version === 1) {
        v.setUint16(i * V1_ENTRY, e.flags, true);
        v.setUint16(i * V1_ENTRY + 2, e.domid, true);
        v.setUint32(i * V1_ENTRY + 4, Number(e.frame), true);
      } else {
        v.setUint16(i * V2_ENTRY, e.flags, true);
        v.setUint16(i * V2_ENTRY + 2, e.domid, true);
        v.setBigUint64(i * V2_ENTRY + 8, e.frame, true);
      }
    });
  }
}
