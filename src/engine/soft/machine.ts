// The software CPU's state and its access to the machine: registers, RFLAGS,
// memory through the MMU, instruction fetch, ModRM decoding and the stack.
// The layers above (system.ts, float.ts, integer.ts, two-byte.ts, cpu.ts)
// add what the CPU does with them. Inputs: see cpu.ts.

import type { CpuidResult, DebugRegisters, SpecialRegisters } from '../types.js';
import { Flags, KEPT, Lazy, MASK } from './flags.js';
import { ACC_FETCH, ACC_USER, ACC_WRITE, CpuFault, Mmu, type PhysLookup, type TlbEntry } from './paging.js';

/** An instruction this CPU does not implement: the run ends with an internal error. */
export class Unimplemented extends Error {}

/** An MMIO access (thrown inside a step, returned as the exit). */
export class MmioExit {
  constructor(readonly gpa: number, readonly isWrite: boolean, readonly size: number, readonly value: bigint) {}
}

export interface CpuEnv {
  /** The CPUID the `cpuid` instruction returns. */
  cpuid(leaf: number, subleaf: number): CpuidResult;
  /** The guest TSC now. */
  tsc(): bigint;
}

export interface PendingIo {
  size: number;
  data: Uint8Array;
}

export const u64 = (v: bigint): bigint => BigInt.asUintN(64, v);
/** Instruction lengths as BigInts (converting a number costs more than the add it feeds). */
const LENGTHS: readonly bigint[] = Array.from({ length: 16 }, (_, i) => BigInt(i));
export const M32 = 0xffffffffn;
/** Vectors whose exception pushes an error code. */
export const ERROR_CODE = new Set([8, 10, 11, 12, 13, 14, 17, 21, 29, 30]);
/** Contributory exceptions: one raised while delivering another is a double fault. */
export const CONTRIBUTORY = new Set([0, 10, 11, 12, 13]);
export const EFER_SCE = 1n;
export const CR0_MP = 2n, CR0_EM = 4n, CR0_TS = 8n;
export const CR4_TSD = 4n, CR4_PCE = 0x100n, CR4_OSFXSR = 0x200n, CR4_OSXMMEXCPT = 0x400n, CR4_FSGSBASE = 0x10000n;
export const MSR = { STAR: 0xc0000081, LSTAR: 0xc0000082, CSTAR: 0xc0000083, FMASK: 0xc0000084, SYSENTER_CS: 0x174, TSC_AUX: 0xc0000103 } as const;

export const SEG_NAMES = ['es', 'cs', 'ss', 'ds', 'fs', 'gs'] as const;
export type SegName = (typeof SEG_NAMES)[number];

export class CpuMachine {
  /** The general registers by number (rax, rcx, rdx, rbx, rsp, rbp, rsi, rdi, r8..r15). */
  readonly R: bigint[] = new Array<bigint>(16).fill(0n);
  rip = 0n;
  readonly fl = new Flags();
  readonly mmu: Mmu;
  msrs = new Map<number, bigint>();
  protected dbg: DebugRegisters = { db: [0n, 0n, 0n, 0n], dr6: 0xffff0ff0n, dr7: 0x400n };
  /** Enabled breakpoints: [first byte, last byte] and kind (0 execute, 1 write, 3 read or write), by number. */
  protected breakpoints: Array<{ n: number; lo: bigint; hi: bigint; rw: number }> = [];
  /** DR6 B0-B3 bits of data breakpoints the current instruction hit. */
  protected dataHits = 0;
  /** Exception delivery is under way: its accesses are the CPU's, not the instruction's. */
  protected delivering = false;
  /** After mov/pop to ss: a #DB waits until after the next instruction, as hardware holds it. */
  protected ssShadow = false;
  /** The current instruction's memory operand is based on rsp or rbp (a non-canonical address is #SS). */
  protected stackBased = false;
  /** An fs or gs override (the operand's segment is not ss, whatever its base register). */
  protected fsgs = false;

  get debug(): DebugRegisters {
    return this.dbg;
  }

  set debug(d: DebugRegisters) {
    this.dbg = d;
    this.breakpoints = [];
    for (let n = 0; n < 4; n++) {
      if (!((d.dr7 >> BigInt(2 * n)) & 3n)) continue;
      const rw = Number((d.dr7 >> BigInt(16 + 4 * n)) & 3n), len = Number((d.dr7 >> BigInt(18 + 4 * n)) & 3n);
      if (rw === 2) continue; // I/O breakpoints: the hypervisor keeps them (a PV guest's are never loaded)
      const bytes = rw === 0 ? 1 : [1, 2, 8, 4][len]!;
      const lo = u64(d.db[n]! & ~BigInt(bytes - 1));
      this.breakpoints.push({ n, lo, hi: lo + BigInt(bytes - 1), rw });
    }
  }

  /** A data access of `size` bytes at `va`: the enabled data breakpoints it touches. */
  protected watch(va: bigint, size: number, write: boolean): void {
    const end = va + BigInt(size - 1);
    for (const b of this.breakpoints) {
      if (b.rw === 0 || (b.rw === 1 && !write)) continue;
      if (va <= b.hi && end >= b.lo) this.dataHits |= 1 << b.n;
    }
  }
  /** Instructions retired. */
  retired = 0;
  /** An `in` whose data the caller fills before the next step. */
  pendingIn: PendingIo | undefined;
  /** An MMIO read's data, given by the caller; the instruction runs again and takes it. */
  mmioData: { gpa: number; data: Uint8Array } | undefined;

  // Decode state of the current instruction.
  protected start = 0n;
  protected len = 0;
  protected cbytes: Uint8Array = new Uint8Array(0);
  protected cpos = 0;
  protected cend = 0;
  protected rex = 0;
  protected opsz = 4;
  protected adsz = 8;
  protected segBase = 0n;
  protected rep = 0;
  protected mod = 0;
  protected regf = 0;
  protected rmReg = 0;
  protected isMem = false;
  protected ripRel = false;
  protected eaRaw = 0n;
  protected eaDone: bigint | undefined;
  protected cpl = 0;

  constructor(readonly sregs: SpecialRegisters, phys: PhysLookup, protected readonly env: CpuEnv) {
    this.mmu = new Mmu(phys, sregs);
    this.syncCpl();
  }

  /** After the host changed the special registers: privilege level and TLB follow them. */
  syncCpl(): void {
    this.cpl = this.sregs.cs.selector & 3;
    this.mmu.flush();
  }

  get user(): boolean {
    return this.cpl === 3;
  }

  // --- Registers by size (bytes).

  protected getReg(i: number, size: number): bigint {
    if (size === 8) return this.R[i]!;
    if (size === 1 && !this.rex && i >= 4 && i < 8) return (this.R[i - 4]! >> 8n) & 0xffn;
    return this.R[i]! & MASK[size]!;
  }

  protected setReg(i: number, size: number, v: bigint): void {
    if (size === 8) this.R[i] = u64(v);
    else if (size === 4) this.R[i] = v & M32;
    else if (size === 1 && !this.rex && i >= 4 && i < 8) this.R[i - 4] = (this.R[i - 4]! & ~0xff00n) | ((v & 0xffn) << 8n);
    else this.R[i] = (this.R[i]! & ~MASK[size]!) | (v & MASK[size]!);
  }

  // --- Memory.

  protected acc(): number {
    return this.cpl === 3 ? ACC_USER : 0;
  }

  protected canonical(va: bigint, stack = false): bigint {
    const top = va >> 47n;
    if (top !== 0n && top !== 0x1ffffn) throw new CpuFault(stack ? 12 : 13, 0);
    return va;
  }

  /** Reads `size` bytes at `va` with the rights of `acc`. */
  load(va: bigint, size: number, acc = this.acc(), stack = false): bigint {
    if (this.breakpoints.length && !this.delivering) this.watch(va, size, false);
    const off = Number(va & 0xfffn);
    if (off + size > 4096) {
      let v = 0n;
      for (let i = size - 1; i >= 0; i--) v = (v << 8n) | this.load(u64(va + BigInt(i)), 1, acc, stack);
      return v;
    }
    const e = this.mmu.translate(va, acc, stack);
    if (!e.page) return this.mmioRead(e, off, size);
    const at = e.page.off + off, view = e.page.view;
    switch (size) {
      case 1: return BigInt(view.getUint8(at));
      case 2: return BigInt(view.getUint16(at, true));
      case 4: return BigInt(view.getUint32(at, true));
      default: return view.getBigUint64(at, true);
    }
  }

  /** Writes `size` bytes at `va`; every page is checked before any byte is written. */
  store(va: bigint, size: number, v: bigint, acc = this.acc(), stack = false): void {
    if (this.breakpoints.length && !this.delivering) this.watch(va, size, true);
    const off = Number(va & 0xfffn);
    if (off + size > 4096) {
      this.mmu.translate(va, acc | ACC_WRITE, stack);
      this.mmu.translate(u64(va + BigInt(size - 1)), acc | ACC_WRITE, stack);
      for (let i = 0; i < size; i++) this.store(u64(va + BigInt(i)), 1, v >> BigInt(8 * i), acc, stack);
      return;
    }
    const e = this.mmu.translate(va, acc | ACC_WRITE, stack);
    if (!e.page || e.page.readonly) throw new MmioExit(e.gfn * 4096 + off, true, size, v);
    const at = e.page.off + off, view = e.page.view;
    switch (size) {
      case 1: view.setUint8(at, Number(v & 0xffn)); break;
      case 2: view.setUint16(at, Number(v & 0xffffn), true); break;
      case 4: view.setUint32(at, Number(v & M32), true); break;
      default: view.setBigUint64(at, u64(v), true);
    }
    e.page.onWrite?.();
  }

  protected mmioRead(e: TlbEntry, off: number, size: number): bigint {
    const gpa = e.gfn * 4096 + off;
    const given = this.mmioData;
    if (given && given.gpa === gpa && given.data.length === size) {
      this.mmioData = undefined;
      let v = 0n;
      for (let i = size - 1; i >= 0; i--) v = (v << 8n) | BigInt(given.data[i]!);
      return v;
    }
    throw new MmioExit(gpa, false, size, 0n);
  }

  /** Reads as the CPU does for itself (descriptor tables, the TSS): supervisor rights. */
  protected sysLoad(va: bigint, size: number): bigint {
    return this.load(va, size, 0);
  }

  // --- Instruction fetch.

  /**
   * Points the code window at rip. After an instruction that fell through
   * to the next one in the same page, under the same translations and
   * privilege, the window is already there.
   */
  protected beginFetch(): void {
    this.len = 0;
    this.nextLen = -1;
    if (this.rip === this.fallThrough && this.cpos < this.cend && this.windowEpoch === this.mmu.epoch) return;
    const e = this.mmu.translate(this.rip, this.acc() | ACC_FETCH);
    if (!e.page) throw new Unimplemented(`instruction fetch from MMIO at 0x${this.rip.toString(16)}`);
    this.cbytes = e.page.bytes;
    this.cpos = e.page.off + Number(this.rip & 0xfffn);
    this.cend = e.page.off + 4096;
    this.windowEpoch = this.mmu.epoch;
  }

  /** The rip the code window stands at (the end of the last instruction), if it is valid. */
  protected fallThrough: bigint | undefined;
  protected windowEpoch = -1;

  protected f8(): number {
    if (this.len >= 15) throw new CpuFault(13, 0); // longer than 15 bytes
    if (this.cpos >= this.cend) {
      const va = u64(this.start + BigInt(this.len));
      const e = this.mmu.translate(va, this.acc() | ACC_FETCH);
      if (!e.page) throw new Unimplemented('instruction fetch from MMIO');
      this.cbytes = e.page.bytes;
      this.cpos = e.page.off;
      this.cend = e.page.off + 4096;
    }
    this.len++;
    return this.cbytes[this.cpos++]!;
  }

  protected f16(): number {
    return this.f8() | (this.f8() << 8);
  }

  protected f32(): number {
    return (this.f8() | (this.f8() << 8) | (this.f8() << 16) | (this.f8() << 24)) >>> 0;
  }

  /** An immediate of `size` bytes (at most 4), sign-extended to 64 bits and masked to `to`. */
  protected imm(size: number, to = size): bigint {
    let v: bigint;
    if (size === 1) v = BigInt((this.f8() << 24) >> 24);
    else if (size === 2) v = BigInt((this.f16() << 16) >> 16);
    else v = BigInt(this.f32() | 0);
    return v & MASK[to]!;
  }

  /** The address after the instruction as fetched so far (computed once: a BigInt add costs). */
  protected get next(): bigint {
    if (this.nextLen !== this.len) {
      // Past 2^64 only from a non-canonical rip, which faults at the next fetch anyway.
      this.nextRip = this.start + LENGTHS[this.len]!;
      this.nextLen = this.len;
    }
    return this.nextRip;
  }

  protected nextRip = 0n;
  protected nextLen = -1;

  // --- ModRM.

  protected modrm(): void {
    if (this.adsz === 2) throw new Unimplemented('16-bit addressing');
    const m = this.f8();
    this.mod = m >> 6;
    this.regf = ((m >> 3) & 7) | (this.rex & 4 ? 8 : 0);
    const rm = m & 7;
    this.eaDone = undefined;
    if (this.mod === 3) {
      this.isMem = false;
      this.rmReg = rm | (this.rex & 1 ? 8 : 0);
      return;
    }
    this.isMem = true;
    this.ripRel = false;
    let ea = 0n;
    let base = -1;
    if (rm === 4) {
      const sib = this.f8();
      const idx = ((sib >> 3) & 7) | (this.rex & 2 ? 8 : 0);
      if (idx !== 4) ea = this.R[idx]! << BigInt(sib >> 6);
      if ((sib & 7) === 5 && this.mod === 0) ea += BigInt(this.f32() | 0);
      else ea += this.R[base = (sib & 7) | (this.rex & 1 ? 8 : 0)]!;
    } else if (rm === 5 && this.mod === 0) {
      this.ripRel = !this.compat; // compatibility mode: an absolute address
      ea = BigInt(this.f32() | 0);
    } else {
      ea = this.R[base = rm | (this.rex & 1 ? 8 : 0)]!;
    }
    // Based on rsp or rbp, the operand's segment is ss (in 64-bit mode only fs and gs overrides count).
    this.stackBased = (base === 4 || base === 5) && !this.fsgs;
    if (this.mod === 1) ea += BigInt((this.f8() << 24) >> 24);
    else if (this.mod === 2) ea += BigInt(this.f32() | 0);
    this.eaRaw = ea;
  }

  /** The memory operand's address. Call only after every immediate of the instruction is fetched. */
  protected ea(): bigint {
    if (this.eaDone !== undefined) return this.eaDone;
    let a = this.ripRel ? this.next + this.eaRaw : this.eaRaw;
    a = this.adsz === 4 ? a & M32 : u64(a);
    this.eaDone = u64(a + this.segBase);
    return this.eaDone;
  }

  protected readRM(size: number): bigint {
    return this.isMem ? this.load(this.ea(), size, this.acc(), this.stackBased) : this.getReg(this.rmReg, size);
  }

  protected writeRM(size: number, v: bigint): void {
    if (this.isMem) this.store(this.ea(), size, v, this.acc(), this.stackBased);
    else this.setReg(this.rmReg, size, v);
  }

  // --- Stack.

  /** The stack operand size: 2 with 0x66, else 8 (4 in compatibility mode). */
  protected get ss(): number {
    return this.opsz === 2 ? 2 : this.compat ? 4 : 8;
  }

  /** The stack pointer's width: rsp, or esp in compatibility mode (a 32-bit stack segment). */
  protected sp(v: bigint): bigint {
    return this.compat ? v & M32 : u64(v);
  }

  protected push(v: bigint, size = this.ss): void {
    const sp = this.sp(this.R[4]! - BigInt(size));
    this.store(sp, size, v, this.acc(), true);
    this.R[4] = sp;
  }

  protected pop(size = this.ss): bigint {
    const v = this.load(this.sp(this.R[4]!), size, this.acc(), true);
    this.R[4] = this.sp(this.R[4]! + BigInt(size));
    return v;
  }

  // --- Flags as RFLAGS.

  rflags(): bigint {
    return BigInt(this.fl.materialize() | 2);
  }

  setRflags(v: bigint): void {
    this.fl.kind = Lazy.None;
    this.fl.bits = (Number(v & 0xffffffffn) & KEPT) | 2;
  }
  /** A 0x66 prefix (an SSE instruction's selector even where REX.W sets the operand size). */
  protected p66 = false;
  /** Compatibility mode: 32-bit code under a 64-bit kernel (a code segment with L clear and D set). */
  protected compat = false;
}
