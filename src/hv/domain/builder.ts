// The domain builder: lays out a new PV domain exactly as Xen's toolstack
// does for a 64-bit domU (Xen's public headers, libxc's xc_dom_*; docs/abi.md), so a
// kernel written for Xen boots unchanged. Inside one virtual region that
// starts at VIRT_BASE (pfn = (va - virt_base) >> 12), in this order:
//
//   kernel image | [initrd] | [P2M list] | start_info | xenstore | console |
//   bootstrap page tables (L4, L3s, L2s, L1s) | boot stack | >= 512 KiB slack,
//   the whole region ending on a 4 MiB boundary and mapped with 4 KiB pages
//   (page-table frames read-only). After it, unmapped: the initrd when the
//   kernel asked for MOD_START_PFN, then with INIT_P2M the P2M list and the
//   extra tables that map it at the address the note names.
//
// shared_info is a separate frame owned by the domain but outside its P2M;
// every vcpu_info starts with events masked. As Xen's
// share_xen_page_with_guest, the hypervisor holds a general and a writable
// type reference on it until the domain dies (Domain.destroy drops them),
// so the guest can never make it a page table or descriptor page.
//
// Inputs: an ELF already parsed by parseGuestKernel (untrusted but
// checked), sizes and strings from the user (checked here, BuildError on
// anything unusable).

import { StartInfo, StartInfoFlags, SharedInfo } from '../../abi/generated/xen.js';
import { DomainMemory } from '../mm/domain-memory.js';
import type { GuestKernel } from './elf.js';
import { FrameTable, PAGE_SIZE, PageType } from '../mm/frames.js';
import { HYPERVISOR_VIRT_END, HYPERVISOR_VIRT_START, hypercallStub } from '../mm/xen-space.js';
import { entryFrame, PTE } from '../mm/pte.js';
import { PageTypeError, type PageTypes } from '../mm/page-types.js';
import { HYPERCALL_SLOTS } from '../hypercalls/table.js';
import { hex } from '../format.js';

/** Bad input for the builder (memory too small, command line too long...). */
export class BuildError extends Error {
  readonly code = 'ERR_DOMAIN_BUILD';
  constructor(message: string) {
    super(message);
    this.name = 'BuildError';
  }
}

export interface BuildOptions {
  /** Domain memory in bytes, a multiple of 4 KiB. */
  memoryBytes: number;
  cmdline?: string;
  initrd?: Uint8Array;
}

/** Where the builder put things: what the vCPU starts with and what tests check. */
export interface BootLayout {
  entry: bigint;
  /** Initial rsp (top of the boot stack) and rsi (start_info). */
  stackTop: bigint;
  startInfoVa: bigint;
  /** Machine frame of the bootstrap L4 (the initial CR3). */
  l4Mfn: number;
  /** Machine frame of shared_info, held writable by the hypervisor while the domain lives. */
  sharedInfoMfn: number;
  /** End of the initial mapping (exclusive). */
  mappedEnd: bigint;
  /** PFNs of each element. */
  pfn: { kernel: number; startInfo: number; store: number; console: number; ptBase: number; stack: number; p2m: number; initrd: number };
  nrPtFrames: number;
}

const MAX_CMDLINE = 1023;
const SLACK = 512 * 1024;
const ROUND = 4n << 20n;
const L1_FLAGS = Number(PTE.P | PTE.RW | PTE.US | PTE.A);
const L1_RO_FLAGS = Number(PTE.P | PTE.US | PTE.A);
const UPPER_FLAGS = Number(PTE.P | PTE.RW | PTE.US | PTE.A | PTE.D);
const CANONICAL_LOW_END = 1n << 47n;
const PAGE = BigInt(PAGE_SIZE);

const pagesFor = (bytes: number): number => Math.ceil(bytes / PAGE_SIZE);
const roundUp = (v: bigint, to: bigint): bigint => ((v + to - 1n) / to) * to;

/** Number of L1, L2 and L3 tables needed to map [start, end) with 4 KiB pages. */
function tablesFor(start: bigint, end: bigint): { l1: number; l2: number; l3: number } {
  const span = (shift: bigint): number => Number(((end - 1n) >> shift) - (start >> shift) + 1n);
  return { l1: span(21n), l2: span(30n), l3: span(39n) };
}

/** Whether [a, aEnd) and [b, bEnd) share an L4 slot. */
function overlapsSlots(a: bigint, aEnd: bigint, b: bigint, bEnd: bigint): boolean {
  return a >> 39n <= (bEnd - 1n) >> 39n && b >> 39n <= (aEnd - 1n) >> 39n;
}

/** A virtual range the guest may own: canonical and clear of the hypervisor's slots. */
function guestRangeUsable(start: bigint, end: bigint): boolean {
  if (end <= start || end > 1n << 64n) return false;
  if (start < CANONICAL_LOW_END) return end <= CANONICAL_LOW_END;
  return start >= HYPERVISOR_VIRT_END || (end <= HYPERVISOR_VIRT_START && start >= 0xffff800000000000n);
}


/** Writes entry `i` of a table viewed as 32-bit words: frame `mfn`, low flag bits `flags`. */
function setEntry(t: Uint32Array, i: number, mfn: number, flags: number): void {
  t[2 * i] = (((mfn & 0xfffff) << 12) | flags) >>> 0;
  t[2 * i + 1] = Math.floor(mfn / 0x100000);
}

/**
 * Maps pages into a four-level table, allocating tables from `nextTable`.
 * Entries are written as 32-bit halves: the builder touches thousands of
 * them per domain, and BigInt arithmetic would dominate domain creation.
 */
class Mapper {
  private readonly views = new Map<number, Uint32Array>();
  constructor(private readonly ft: FrameTable, readonly l4: number, private readonly nextTable: (level: number) => number) {}

  private table(mfn: number): Uint32Array {
    let t = this.views.get(mfn);
    if (!t) this.views.set(mfn, (t = this.ft.words32(mfn)));
    return t;
  }

  /** The L1 table that maps `va`, creating the path to it. */
  private l1For(va: bigint): Uint32Array {
    let table = this.table(this.l4);
    for (let level = 3; level >= 1; level--) {
      const i = Number((va >> BigInt(12 + 9 * level)) & 0x1ffn);
      if (!(table[2 * i]! & 1)) setEntry(table, i, this.nextTable(level), UPPER_FLAGS);
      table = this.table(entryFrame(table[2 * i]!, table[2 * i + 1]!));
    }
    return table;
  }

  /** Maps `count` consecutive pages from `va`: page i to frame `mfn(i)` with `flags(i)`. */
  mapRange(va: bigint, count: number, mfn: (i: number) => number, flags: (i: number) => number): void {
    let i = 0;
    while (i < count) {
      const at = va + BigInt(i) * PAGE;
      const l1 = this.l1For(at);
      for (let slot = Number((at >> 12n) & 0x1ffn); slot < 512 && i < count; slot++, i++) setEntry(l1, slot, mfn(i), flags(i));
    }
  }
}

/**
 * Plans a domain's boot layout (pure: no frame is touched) for a kernel,
 * `memoryBytes` of domain memory and an initrd of `initrdBytes` (none when
 * undefined). Throws BuildError when the memory is unusable or too small:
 * what buildDomain checks before it takes any frame.
 */
export function planBootLayout(kernel: GuestKernel, memoryBytes: number, initrdBytes?: number) {
  if (!Number.isSafeInteger(memoryBytes) || memoryBytes <= 0 || memoryBytes % PAGE_SIZE) {
    throw new BuildError(`domain memory must be a positive multiple of 4 KiB, not ${memoryBytes}`);
  }
  const nrPages = memoryBytes / PAGE_SIZE;
  const vb = kernel.virtBase;
  const notes = kernel.notes;
  const va = (pfn: number): bigint => vb + BigInt(pfn) * PAGE;
  if (vb % PAGE) throw new BuildError(`VIRT_BASE ${hex(vb)} is not page aligned`);

  // --- Plan the layout (pfns), before touching any frame.
  const kernelPfn = Number((kernel.imageStart - vb) / PAGE);
  let next = Number(roundUp(kernel.imageEnd - vb, PAGE) / PAGE);
  const initrdUnmapped = initrdBytes !== undefined && notes.modStartPfn === true;
  let initrdPfn = -1;
  if (initrdBytes !== undefined && !initrdUnmapped) {
    initrdPfn = next;
    next += pagesFor(initrdBytes);
  }
  const p2mPages = pagesFor(nrPages * 8);
  // INIT_P2M: the list is mapped at the note's address, outside the initial
  // mapping, if that address is page aligned, below VIRT_BASE, a usable
  // range, and in L4 slots of its own (Linux frees the whole slot of that
  // mapping once it has its own P2M, so it must not share tables with the
  // kernel's mapping); otherwise the note is ignored, as Xen ignores it.
  const p2mVa = notes.initP2m;
  const p2mEndVa = p2mVa === undefined ? 0n : p2mVa + BigInt(p2mPages) * PAGE;
  const mappingBound = vb + BigInt(nrPages) * PAGE; // the initial mapping cannot end past this
  const useInitP2m = p2mVa !== undefined && p2mVa % PAGE === 0n && p2mVa < vb && p2mEndVa <= vb &&
    guestRangeUsable(p2mVa, p2mEndVa) && !overlapsSlots(p2mVa, p2mEndVa, vb, mappingBound);
  let p2mPfn = -1;
  if (!useInitP2m) {
    p2mPfn = next;
    next += p2mPages;
  }
  const startInfoPfn = next++;
  const storePfn = next++;
  const consolePfn = next++;
  const ptPfn = next;
  let tables = { l1: 0, l2: 0, l3: 0 };
  let end = 0n;
  for (;;) {
    const nTables = 1 + tables.l3 + tables.l2 + tables.l1;
    const stackPfn = ptPfn + nTables;
    const candidate = roundUp(va(stackPfn + 1) + BigInt(SLACK), ROUND);
    const need = tablesFor(vb, candidate);
    if (need.l1 === tables.l1 && need.l2 === tables.l2 && need.l3 === tables.l3 && candidate === end) break;
    tables = need;
    end = candidate;
  }
  const nrPtFrames = 1 + tables.l3 + tables.l2 + tables.l1;
  const stackPfn = ptPfn + nrPtFrames;
  if (!guestRangeUsable(vb, end)) throw new BuildError(`the initial mapping ${hex(vb)}-${hex(end)} is not a usable guest address range`);
  let mappedPages = Number((end - vb) / PAGE);
  next = mappedPages;
  if (initrdBytes !== undefined && initrdUnmapped) {
    initrdPfn = next;
    next += pagesFor(initrdBytes);
  }
  let p2mTables = 0;
  if (useInitP2m) {
    p2mPfn = next;
    const t = tablesFor(p2mVa, p2mVa + BigInt(p2mPages) * PAGE);
    // The P2M mapping's own L3/L2/L1 tables, hooked into the same L4.
    p2mTables = t.l3 + t.l2 + t.l1;
    next += p2mPages + p2mTables;
  }
  if (next > nrPages) {
    throw new BuildError(`${memoryBytes / (1 << 20)} MiB is too small for this kernel: its boot layout needs ${Math.ceil((next * PAGE_SIZE) / (1 << 20))} MiB`);
  }
  mappedPages = Number((end - vb) / PAGE);

  return {
    nrPages, kernelPfn, initrdUnmapped, initrdPfn, p2mPages, useInitP2m, p2mVa: p2mVa ?? 0n, p2mPfn, p2mTables,
    startInfoPfn, storePfn, consolePfn, ptPfn, tables, end, nrPtFrames, stackPfn, mappedPages,
  };
}

/**
 * Builds domain `domid` from `kernel` (parsed from `file`). On failure every
 * frame taken is returned and a BuildError says why.
 */
export function buildDomain(
  pt: PageTypes, domid: number, kernel: GuestKernel, file: Uint8Array, opts: BuildOptions,
): { memory: DomainMemory; layout: BootLayout } {
  const ft = pt.ft;
  const cmdline = opts.cmdline ?? '';
  if (Buffer.byteLength(cmdline) > MAX_CMDLINE) throw new BuildError(`the command line is ${Buffer.byteLength(cmdline)} bytes; at most ${MAX_CMDLINE} fit in start_info`);
  const vb = kernel.virtBase;
  const notes = kernel.notes;
  const va = (pfn: number): bigint => vb + BigInt(pfn) * PAGE;
  const initrd = opts.initrd;
  const {
    nrPages, kernelPfn, initrdUnmapped, initrdPfn, p2mPages, useInitP2m, p2mVa, p2mPfn, p2mTables,
    startInfoPfn, storePfn, consolePfn, ptPfn, tables, end, nrPtFrames, stackPfn, mappedPages,
  } = planBootLayout(kernel, opts.memoryBytes, initrd?.length);

  // --- Populate.
  const memory = DomainMemory.create(ft, domid, opts.memoryBytes);
  try {
    const [sharedInfoMfn] = ft.allocate(domid, 1);
    pt.getPageAndType(sharedInfoMfn!, PageType.writable, domid);
    const page = (pfn: number): Uint8Array => memory.page(pfn);

    // Kernel segments (frames are zeroed at allocation, so bss needs nothing).
    for (const s of kernel.segments) {
      const src = file.subarray(s.fileOffset, s.fileOffset + s.fileSize);
      copyToPfns(memory, Number(s.vaddr - vb), src);
    }
    if (notes.hypercallPage !== undefined) {
      const hp = page(Number((notes.hypercallPage - vb) / PAGE));
      hp.fill(0xcc);
      for (let nr = 0; nr < HYPERCALL_SLOTS; nr++) hp.set(hypercallStub(nr), nr * 32);
    }
    if (initrd) copyToPfns(memory, initrdPfn * PAGE_SIZE, initrd);

    // P2M list: one u64 MFN per pfn.
    for (let i = 0; i < p2mPages; i++) {
      const words = ft.words32(memory.mfnOf(p2mPfn + i));
      for (let j = 0, pfn = i * 512; j < 512 && pfn < nrPages; j++, pfn++) words[2 * j] = memory.p2m[pfn]!;
    }

    // Bootstrap page tables, in order L4, L3s, L2s, L1s.
    let l3Next = ptPfn + 1, l2Next = l3Next + tables.l3, l1Next = l2Next + tables.l2;
    const l4Mfn = memory.mfnOf(ptPfn);
    const mapper = new Mapper(ft, l4Mfn, (level) => {
      const pfn = level === 3 ? l3Next++ : level === 2 ? l2Next++ : l1Next++;
      return memory.mfnOf(pfn);
    });
    const isPt = (pfn: number): boolean => pfn >= ptPfn && pfn < ptPfn + nrPtFrames;
    const p2mOf = memory.p2m;
    mapper.mapRange(vb, mappedPages, (pfn) => p2mOf[pfn]!, (pfn) => (isPt(pfn) ? L1_RO_FLAGS : L1_FLAGS));
    if (l3Next !== ptPfn + 1 + tables.l3 || l2Next !== ptPfn + 1 + tables.l3 + tables.l2 || l1Next !== stackPfn) {
      throw new Error('builder: page-table frame count mismatch');
    }
    if (useInitP2m) {
      let tNext = p2mPfn + p2mPages;
      const p2mMapper = new Mapper(ft, l4Mfn, () => memory.mfnOf(tNext++));
      p2mMapper.mapRange(p2mVa, p2mPages, (i) => memory.mfnOf(p2mPfn + i), () => L1_FLAGS);
      if (tNext > p2mPfn + p2mPages + p2mTables) throw new Error('builder: P2M table count mismatch');
    }

    // shared_info: zeroed, every vCPU's events masked until the guest is ready.
    const si = SharedInfo.over(ft.bytes(sharedInfoMfn!).buffer, ft.bytes(sharedInfoMfn!).byteOffset);
    for (let v = 0; v < 32; v++) si.vcpu_info_at(v).evtchn_upcall_mask = 1;

    // start_info.
    const siPage = page(startInfoPfn);
    const st = StartInfo.over(siPage.buffer, siPage.byteOffset);
    st.magic = 'xen-3.0-x86_64';
    st.nr_pages = BigInt(nrPages);
    st.shared_info = BigInt(sharedInfoMfn!) * PAGE;
    st.flags = initrdUnmapped ? StartInfoFlags.SIF_MOD_START_PFN : 0;
    st.store_mfn = BigInt(memory.mfnOf(storePfn));
    st.store_evtchn = 0; // event channels arrive with the events work; 0 = none
    st.console.domU.mfn = BigInt(memory.mfnOf(consolePfn));
    st.console.domU.evtchn = 0;
    st.pt_base = va(ptPfn);
    st.nr_pt_frames = BigInt(nrPtFrames);
    st.mfn_list = useInitP2m ? p2mVa : va(p2mPfn);
    if (initrd) {
      // Its virtual address, or with MOD_START_PFN its first PFN; and the bytes of the pages it fills,
      // as Xen's toolstack gives them either way (the end of its segment less its start), the rest of
      // the last page zero (an initramfs ends in zero padding anyway).
      st.mod_start = initrdUnmapped ? BigInt(initrdPfn) : va(initrdPfn);
      st.mod_len = BigInt(pagesFor(initrd.length) * PAGE_SIZE);
    }
    // As UTF-8 bytes, as Linux and Xen's toolstack read it (start_info holds a C string).
    st.cmd_line = Buffer.from(cmdline, 'utf8').toString('latin1');
    if (useInitP2m) {
      st.first_p2m_pfn = BigInt(p2mPfn);
      st.nr_p2m_frames = BigInt(p2mPages + p2mTables);
    }

    // Pin the bootstrap L4 as Xen's builder does (MMUEXT_PIN_L4_TABLE): this
    // validates the whole hierarchy with the same rules as any guest table
    // and fills the hypervisor's slots.
    try {
      pt.pin(l4Mfn, 4, domid);
    } catch (e) {
      if (e instanceof PageTypeError) throw new BuildError(`the bootstrap page tables do not validate: ${e.message}`);
      throw e;
    }
    return {
      memory,
      layout: {
        entry: kernel.entry,
        stackTop: va(stackPfn + 1),
        startInfoVa: va(startInfoPfn),
        l4Mfn,
        sharedInfoMfn: sharedInfoMfn!,
        mappedEnd: end,
        pfn: { kernel: kernelPfn, startInfo: startInfoPfn, store: storePfn, console: consolePfn, ptBase: ptPfn, stack: stackPfn, p2m: p2mPfn, initrd: initrdPfn },
        nrPtFrames,
      },
    };
  } catch (e) {
    memory.destroy();
    throw e;
  }
}

/** Copies `src` into the domain's pseudo-physical memory at byte `pfnByte`. */
function copyToPfns(memory: DomainMemory, pfnByte: number, src: Uint8Array): void {
  let done = 0;
  while (done < src.length) {
    const at = pfnByte + done;
    const off = at % PAGE_SIZE;
    const n = Math.min(PAGE_SIZE - off, src.length - done);
    memory.page(Math.floor(at / PAGE_SIZE)).set(src.subarray(done, done + n), off);
    done += n;
  }
}
