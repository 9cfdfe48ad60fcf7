// A vCPU's descriptor tables as a PV guest sets them (set_gdt): up to 14
// frames of its own (entries 0-7167), each validated as a segment-
// descriptor page (PT-17) and held with a general and a type reference
// while installed, mapped as the first pages of the vCPU's GDT in the
// hypervisor's area; the hypervisor's own entries (Xen's flat selectors
// and the TSS, from 0xe000) stay. Inputs: frame numbers and counts from
// set_gdt (hostile, checked here).

import { errno } from '../hypercalls/context.js';
import { PageType } from '../mm/frames.js';
import { PageTypeError, type PageTypes } from '../mm/page-types.js';
import type { DomainTranslations } from '../mm/tlb.js';
import { SEL, type PerDomainSpace } from '../mm/xen-space.js';
import { FIRST_RESERVED_GDT_ENTRY } from '../mm/descriptors.js';

const ENTRIES_PER_PAGE = 512;

export class VcpuDescriptorTables {
  /** The guest's GDT frames (machine), each holding a general and a segment-descriptor type reference. */
  private frames: number[] = [];
  /** How many of the GDT's entries are the guest's. */
  entries = 0;

  constructor(
    private readonly pt: PageTypes, private readonly tlb: DomainTranslations, private readonly perDomain: PerDomainSpace,
    private readonly domid: number, private readonly index: number,
  ) {}

  /** The frames installed (for the page-type audit). */
  get gdtFrames(): readonly number[] {
    return this.frames;
  }

  /**
   * set_gdt, as Xen's pv_set_gdt: at most 7168 entries (-EINVAL); each
   * frame must be the domain's and pass as a segment-descriptor page
   * (-EINVAL, nothing changed); the old GDT's frames are then let go and
   * the new ones mapped. Returns 0 or an errno.
   */
  setGdt(frameArgs: readonly bigint[], entries: number): bigint {
    if (entries > FIRST_RESERVED_GDT_ENTRY) return errno('XEN_EINVAL');
    const n = Math.ceil(entries / ENTRIES_PER_PAGE);
    if (frameArgs.length < n) throw new Error(`set_gdt: ${frameArgs.length} frames for ${entries} entries`);
    const taken: number[] = [];
    const refuse = (): bigint => {
      for (const m of taken) this.pt.putPageAndType(m);
      return errno('XEN_EINVAL');
    };
    for (let i = 0; i < n; i++) {
      const a = frameArgs[i]!;
      if (a >= BigInt(this.pt.ft.count)) return refuse();
      try {
        this.pt.getPageAndType(Number(a), PageType.segDesc, this.domid);
      } catch (e) {
        if (e instanceof PageTypeError) return refuse();
        throw e;
      }
      taken.push(Number(a));
    }
    this.release();
    this.frames = taken;
    this.entries = entries;
    this.install();
    return 0n;
  }

  /**
   * What selector `sel` names for a return to CPL 3, as the CPU's iretq
   * would check it (a selector that fails would fault there, and Xen hands
   * the frame to the failsafe callback): 'code64' for a present 64-bit DPL
   * 3 code segment, 'data' for a present writable DPL 3 data segment,
   * undefined otherwise. Xen's own flat selectors, or the guest's GDT (its
   * descriptors are checked when installed, PT-17); the LDT is not loaded.
   */
  selectorKind(sel: number): 'code64' | 'code32' | 'data' | undefined {
    const s = sel | 3;
    if (s === SEL.CS64) return 'code64';
    if (s === SEL.CS32) return 'code32';
    if (s === SEL.DS) return 'data';
    const index = sel >> 3;
    if (sel & 4 || index >= this.entries) return undefined;
    const page = this.pt.ft.bytes(this.frames[Math.floor(index / ENTRIES_PER_PAGE)]!);
    const hi = new DataView(page.buffer, page.byteOffset).getUint32((index % ENTRIES_PER_PAGE) * 8 + 4, true);
    const present = (hi >> 15) & 1, dpl = (hi >> 13) & 3, system = !((hi >> 12) & 1), type = (hi >> 8) & 0xf;
    if (!present || system || dpl !== 3) return undefined;
    if (type & 8) return (hi >> 21) & 1 ? (!((hi >> 22) & 1) ? 'code64' : undefined) : (hi >> 22) & 1 ? 'code32' : undefined; // L set, D clear; or D set
    return type & 2 ? 'data' : undefined; // data: writable
  }

  /**
   * The base a load of data selector `sel` into a segment register would
   * give, or undefined where that load would fault (not a present writable
   * DPL 3 data segment). Xen's flat selectors have base 0.
   */
  dataBase(sel: number): bigint | undefined {
    if (this.selectorKind(sel) !== 'data') return undefined;
    const s = sel | 3;
    if (s === SEL.DS) return 0n;
    const index = sel >> 3;
    const page = this.pt.ft.bytes(this.frames[Math.floor(index / ENTRIES_PER_PAGE)]!);
    const view = new DataView(page.buffer, page.byteOffset);
    const lo = view.getUint32((index % ENTRIES_PER_PAGE) * 8, true), hi = view.getUint32((index % ENTRIES_PER_PAGE) * 8 + 4, true);
    return BigInt(((lo >>> 16) | ((hi & 0xff) << 16) | (hi & 0xff000000)) >>> 0);
  }

  /** Lets go of the guest's GDT (set_gdt with new frames, or the domain's end), leaving the hypervisor's entries. */
  release(): void {
    for (const m of this.frames.splice(0)) this.pt.putPageAndType(m);
    this.entries = 0;
    this.install();
  }

  /** Maps the current frames into the vCPU's GDT and forgets what the engine cached of the old mapping (Xen flushes after set_gdt). */
  private install(): void {
    for (const old of this.perDomain.setGuestGdt(this.index, this.frames)) this.tlb.leafChanged(old);
    this.tlb.flush();
  }
}

