// Parses a PV guest kernel: an ELF64 x86-64 executable carrying Xen's ELF
// notes (owner "Xen" in PT_NOTE segments or SHT_NOTE sections). Input is
// untrusted: every offset, size and count is range-checked before use, and
// any problem is one GuestElfError with a message that names it.

import { ElfNote } from '../../abi/generated/elfnote.js';
import { isCanonical } from '../mm/guest-access.js';

export class GuestElfError extends Error {
  readonly code = 'ERR_GUEST_ELF_INVALID';
  constructor(message: string) {
    super(message);
    this.name = 'GuestElfError';
  }
}

export interface ElfSegment {
  /** Where it is loaded in the guest's address space: p_paddr + VIRT_BASE - PADDR_OFFSET, as Xen places it. */
  vaddr: bigint;
  paddr: bigint;
  /** Its program header's index (for messages). */
  index: number;
  fileOffset: number;
  fileSize: number;
  memSize: number;
  /** PF_X = 1, PF_W = 2, PF_R = 4. */
  flags: number;
}

/** Xen's ELF notes, decoded. Numbers are bigints (they are virtual addresses). */
export interface XenNotes {
  entry?: bigint;
  hypercallPage?: bigint;
  virtBase?: bigint;
  paddrOffset?: bigint;
  xenVersion?: string;
  guestOs?: string;
  guestVersion?: string;
  loader?: string;
  /** FEATURES split on '|'; a leading '!' marks a feature the kernel requires. */
  features: string[];
  supportedFeatures?: number;
  initP2m?: bigint;
  modStartPfn?: boolean;
  hvStartLow?: bigint;
  suspendCancel?: boolean;
  /** Every Xen note by type, raw, including ones paravane does not interpret. */
  raw: Map<number, Uint8Array>;
}

export interface GuestKernel {
  /** Virtual address execution starts at (ENTRY note, else e_entry). */
  entry: bigint;
  /** VIRT_BASE note, else 0: virtual address of pseudo-physical frame 0. */
  virtBase: bigint;
  /** Loadable segments, sorted by virtual address, not overlapping. */
  segments: ElfSegment[];
  /** Lowest and highest (exclusive) virtual address of the loaded image. */
  imageStart: bigint;
  imageEnd: bigint;
  notes: XenNotes;
}

const EHDR_SIZE = 64;
const PHDR_SIZE = 56;
const SHDR_SIZE = 64;
const PT_LOAD = 1;
const PT_NOTE = 4;
const SHT_NOTE = 7;
const EM_X86_64 = 62;
const ET_EXEC = 2;
const ET_DYN = 3;
/** The largest image paravane loads: far more than Linux needs (~60 MiB). */
export const MAX_IMAGE_BYTES = 1 << 30;
/** The first non-canonical address above the lower half. */
const CANONICAL_LOW_END = 1n << 47n;

function fail(msg: string): never {
  throw new GuestElfError(msg);
}

function hex(v: bigint | number): string {
  return '0x' + v.toString(16);
}

/** Reads a u64 that must fit a safe integer to be used as a file offset or size. */
function small(v: bigint, what: string, limit: number): number {
  if (v > BigInt(limit)) fail(`${what} ${hex(v)} is larger than ${hex(limit)}`);
  return Number(v);
}

function noteString(desc: Uint8Array): string {
  let end = desc.indexOf(0);
  if (end < 0) end = desc.length; // Linux's FEATURES note has no terminating NUL
  let s = '';
  for (let i = 0; i < end; i++) s += String.fromCharCode(desc[i]!);
  return s;
}

function noteNumber(desc: Uint8Array, type: number): bigint {
  const v = new DataView(desc.buffer, desc.byteOffset, desc.byteLength);
  if (desc.length === 8) return v.getBigUint64(0, true);
  if (desc.length === 4) return BigInt(v.getUint32(0, true));
  if (desc.length === 2) return BigInt(v.getUint16(0, true));
  if (desc.length === 1) return BigInt(v.getUint8(0));
  return fail(`Xen note ${type} has a ${desc.length}-byte number (1, 2, 4 or 8 expected)`);
}

/** Walks the notes in [off, off + len) of the file, collecting those owned by "Xen". */
function readNotes(file: Uint8Array, off: number, len: number, into: Map<number, Uint8Array>): void {
  const v = new DataView(file.buffer, file.byteOffset, file.byteLength);
  const end = off + len;
  let p = off;
  while (p + 12 <= end) {
    const namesz = v.getUint32(p, true);
    const descsz = v.getUint32(p + 4, true);
    const type = v.getUint32(p + 8, true);
    const nameAt = p + 12;
    const descAt = nameAt + Math.ceil(namesz / 4) * 4;
    const next = descAt + Math.ceil(descsz / 4) * 4;
    if (namesz > len || descsz > len || descAt + descsz > end) fail(`a note at file offset ${hex(p)} runs past its segment`);
    const name = noteString(file.subarray(nameAt, nameAt + namesz));
    if (name === 'Xen') into.set(type, file.subarray(descAt, descAt + descsz));
    p = next;
  }
}

function decodeNotes(raw: Map<number, Uint8Array>): XenNotes {
  const N = ElfNote;
  const num = (t: number) => (raw.has(t) ? noteNumber(raw.get(t)!, t) : undefined);
  const str = (t: number) => (raw.has(t) ? noteString(raw.get(t)!) : undefined);
  const notes: XenNotes = { features: [], raw };
  const set = <K extends keyof XenNotes>(k: K, v: XenNotes[K] | undefined) => { if (v !== undefined) notes[k] = v; };
  set('entry', num(N.XEN_ELFNOTE_ENTRY));
  set('hypercallPage', num(N.XEN_ELFNOTE_HYPERCALL_PAGE));
  set('virtBase', num(N.XEN_ELFNOTE_VIRT_BASE));
  set('paddrOffset', num(N.XEN_ELFNOTE_PADDR_OFFSET));
  set('xenVersion', str(N.XEN_ELFNOTE_XEN_VERSION));
  set('guestOs', str(N.XEN_ELFNOTE_GUEST_OS));
  set('guestVersion', str(N.XEN_ELFNOTE_GUEST_VERSION));
  set('loader', str(N.XEN_ELFNOTE_LOADER));
  set('initP2m', num(N.XEN_ELFNOTE_INIT_P2M));
  set('hvStartLow', num(N.XEN_ELFNOTE_HV_START_LOW));
  const sup = num(N.XEN_ELFNOTE_SUPPORTED_FEATURES);
  if (sup !== undefined) notes.supportedFeatures = Number(BigInt.asUintN(32, sup));
  const msp = num(N.XEN_ELFNOTE_MOD_START_PFN);
  if (msp !== undefined) notes.modStartPfn = msp !== 0n;
  const sc = num(N.XEN_ELFNOTE_SUSPEND_CANCEL);
  if (sc !== undefined) notes.suspendCancel = sc !== 0n;
  const f = str(N.XEN_ELFNOTE_FEATURES);
  if (f) notes.features = f.split('|').filter(Boolean);
  return notes;
}

/**
 * Parses and checks a kernel image: a Xen PV kernel (`pv`, the default:
 * its notes required, segments placed as Xen's loader places them), or a
 * plain kernel (`plain`, for fv-trap: no notes needed, segments at their
 * p_vaddr and loaded at p_paddr, entered at e_entry).
 */
export function parseGuestKernel(file: Uint8Array, kind: 'pv' | 'plain' = 'pv'): GuestKernel {
  if (file.length < EHDR_SIZE) fail(`the file is ${file.length} bytes, too short for an ELF header`);
  if (file[0] !== 0x7f || file[1] !== 0x45 || file[2] !== 0x4c || file[3] !== 0x46) fail('not an ELF file (bad magic)');
  if (file[4] !== 2) fail(`ELF class ${file[4]} is not ELFCLASS64: a 64-bit PV kernel is required`);
  if (file[5] !== 1) fail('the ELF file is not little-endian');
  if (file[6] !== 1) fail(`ELF version ${file[6]} is not 1`);
  const v = new DataView(file.buffer, file.byteOffset, file.byteLength);
  const type = v.getUint16(16, true);
  if (type !== ET_EXEC && type !== ET_DYN) fail(`ELF type ${type} is not an executable`);
  const machine = v.getUint16(18, true);
  if (machine !== EM_X86_64) fail(`ELF machine ${machine} is not x86-64 (62)`);
  const eEntry = v.getBigUint64(24, true);
  const phoff = small(v.getBigUint64(32, true), 'program header offset', file.length);
  const shoff = small(v.getBigUint64(40, true), 'section header offset', Number.MAX_SAFE_INTEGER);
  const phentsize = v.getUint16(54, true);
  const phnum = v.getUint16(56, true);
  const shentsize = v.getUint16(58, true);
  const shnum = v.getUint16(60, true);
  if (phnum === 0) fail('the ELF file has no program headers');
  if (phentsize !== PHDR_SIZE) fail(`program header size ${phentsize} is not ${PHDR_SIZE}`);
  if (phoff + phnum * PHDR_SIZE > file.length) fail('the program headers run past the end of the file');

  const segments: ElfSegment[] = [];
  const raw = new Map<number, Uint8Array>();
  let sawNoteSegment = false;
  for (let i = 0; i < phnum; i++) {
    const at = phoff + i * PHDR_SIZE;
    const pType = v.getUint32(at, true);
    if (pType !== PT_LOAD && pType !== PT_NOTE) continue;
    const offset = small(v.getBigUint64(at + 8, true), `segment ${i} file offset`, MAX_IMAGE_BYTES);
    const fileSize = small(v.getBigUint64(at + 32, true), `segment ${i} file size`, MAX_IMAGE_BYTES);
    if (offset + fileSize > file.length) fail(`segment ${i} (${hex(offset)}+${hex(fileSize)}) runs past the end of the ${file.length}-byte file`);
    if (pType === PT_NOTE) {
      sawNoteSegment = true;
      readNotes(file, offset, fileSize, raw);
      continue;
    }
    const memSize = small(v.getBigUint64(at + 40, true), `segment ${i} memory size`, MAX_IMAGE_BYTES);
    if (fileSize > memSize) fail(`segment ${i} has more file bytes (${hex(fileSize)}) than memory bytes (${hex(memSize)})`);
    if (memSize === 0) continue;
    // Placed once the notes are read (below): vaddr is p_vaddr until then.
    segments.push({ vaddr: v.getBigUint64(at + 16, true), paddr: v.getBigUint64(at + 24, true), fileOffset: offset, fileSize, memSize, flags: v.getUint32(at + 4, true), index: i });
  }
  if (segments.length === 0) fail('the ELF file has no loadable segment');
  // Without PT_NOTE segments, look for SHT_NOTE sections (as Xen's loader does).
  if (!sawNoteSegment && shnum > 0) {
    if (shentsize !== SHDR_SIZE) fail(`section header size ${shentsize} is not ${SHDR_SIZE}`);
    if (shoff + shnum * SHDR_SIZE > file.length) fail('the section headers run past the end of the file');
    for (let i = 0; i < shnum; i++) {
      const at = shoff + i * SHDR_SIZE;
      if (v.getUint32(at + 4, true) !== SHT_NOTE) continue;
      const offset = small(v.getBigUint64(at + 24, true), `section ${i} offset`, file.length);
      const size = small(v.getBigUint64(at + 32, true), `section ${i} size`, file.length);
      if (offset + size > file.length) fail(`note section ${i} runs past the end of the file`);
      readNotes(file, offset, size, raw);
    }
  }
  if (raw.size === 0 && kind === 'pv') fail('no Xen ELF notes: not a Xen PV kernel (it needs at least XEN_VERSION and GUEST_OS or LOADER notes)');
  const notes = decodeNotes(raw);
  if (kind === 'pv' && (notes.xenVersion === undefined || !notes.xenVersion.startsWith('xen-3.0'))) {
    // A kernel for a PC (a PVH entry note and no PV ones) runs in fv-trap mode instead.
    const plain = notes.xenVersion === undefined && raw.has(ElfNote.XEN_ELFNOTE_PHYS32_ENTRY) ? ' (a plain kernel with a PVH entry: run it with --mode fv-trap)' : '';
    fail(`the XEN_VERSION note is ${notes.xenVersion === undefined ? 'missing' : JSON.stringify(notes.xenVersion)}; "xen-3.0" is required${plain}`);
  }
  if (kind === 'plain' && notes.xenVersion !== undefined) fail('this is a Xen PV kernel (it has a XEN_VERSION note), not a plain one: run it in PV mode');
  if (kind === 'pv' && notes.loader !== 'generic' && !(notes.guestOs ?? '').startsWith('linux')) {
    fail('the kernel needs a LOADER "generic" note or a GUEST_OS "linux" note');
  }
  // Where each segment goes, as Xen's loader places it: at p_paddr + VIRT_BASE - PADDR_OFFSET (a
  // kernel with notes and no PADDR_OFFSET note has 0). p_vaddr is not used: Linux's per-CPU
  // segment has p_vaddr 0.
  const virtOffset = (notes.virtBase ?? 0n) - (notes.paddrOffset ?? 0n);
  for (const seg of segments) {
    const vaddr = kind === 'plain' ? seg.vaddr : BigInt.asUintN(64, seg.paddr + virtOffset);
    const last = vaddr + BigInt(seg.memSize) - 1n;
    if (!isCanonical(vaddr) || !isCanonical(last) || last >= 1n << 64n || (vaddr < CANONICAL_LOW_END) !== (last < CANONICAL_LOW_END)) {
      fail(`segment ${seg.index} at ${hex(vaddr)}+${hex(seg.memSize)} (p_paddr ${hex(seg.paddr)} + VIRT_BASE - PADDR_OFFSET) is not in canonical address space`);
    }
    seg.vaddr = vaddr;
  }
  segments.sort((a, b) => (a.vaddr < b.vaddr ? -1 : a.vaddr > b.vaddr ? 1 : 0));
  for (let i = 1; i < segments.length; i++) {
    const prev = segments[i - 1]!;
    if (prev.vaddr + BigInt(prev.memSize) > segments[i]!.vaddr) {
      fail(`segments at ${hex(prev.vaddr)}+${hex(prev.memSize)} and ${hex(segments[i]!.vaddr)} overlap`);
    }
  }
  const imageStart = segments[0]!.vaddr;
  const lastSeg = segments[segments.length - 1]!;
  const imageEnd = lastSeg.vaddr + BigInt(lastSeg.memSize);
  if (imageEnd - imageStart > BigInt(MAX_IMAGE_BYTES)) fail(`the image spans ${hex(imageEnd - imageStart)} bytes, more than ${hex(MAX_IMAGE_BYTES)}`);
  const entry = kind === 'pv' ? notes.entry ?? eEntry : eEntry;
  const inImage = segments.some((s) => entry >= s.vaddr && entry < s.vaddr + BigInt(s.memSize));
  if (!inImage) fail(`the entry point ${hex(entry)} lies outside every loadable segment`);
  if (notes.hypercallPage !== undefined) {
    const hp = notes.hypercallPage;
    if (hp % 4096n !== 0n) fail(`the hypercall page ${hex(hp)} is not page aligned`);
    if (!segments.some((s) => hp >= s.vaddr && hp + 4096n <= s.vaddr + BigInt(s.memSize))) {
      fail(`the hypercall page ${hex(hp)} lies outside the loaded image`);
    }
  }
  const virtBase = notes.virtBase ?? 0n;
  if (virtBase > imageStart) fail(`VIRT_BASE ${hex(virtBase)} is above the image start ${hex(imageStart)}`);
  return { entry, virtBase, segments, imageStart, imageEnd, notes };
}
