// The software CPU: an interpreter for x86-64 long mode, enough of it for
// paravane's guests (the guest kit's kernels, gcc's integer code) and for
// the hypervisor's own ring-0 stubs. It does what the hardware does around
// them: paging (paging.ts), exception and interrupt delivery through the
// IDT (stack switch to the TSS's rsp0 or an IST stack), iretq, the TSS I/O
// bitmap, IOPL, segment loads from the GDT and LDT, single-step, and hlt,
// port I/O and MMIO as exits to the engine's caller.
//
// Where hardware differs between hosts, it behaves as the host paravane
// was built on (kvm_pvm): `syscall` at CPL 3 jumps to LSTAR without
// entering ring 0, and `vmcall`/`vmmcall` at CPL 3 raise #GP(0). `int $n`
// and `int3` through a DPL-0 gate raise #GP((n << 3) | 2), as hardware does.
//
// Not modelled: 16- and 32-bit code (compat mode), x87, SSE and AVX (a
// guest kit kernel is built without them), hardware breakpoints, external
// interrupts. An instruction the CPU does not know ends the run with an
// 'internal-error' exit naming it, never a silent guess.
//
// Inputs: guest code and guest tables are untrusted; every access goes
// through the page tables, and nothing a guest does throws out of step()
// except as an exit.

import type { CpuidResult, DebugRegisters, Exit, Segment, SpecialRegisters } from '../types.js';
import { AC, ARITH, CF, DF, Flags, ID, IF, IOPL, KEPT, Lazy, MASK, NT, OF, RF, SIGN, TF, VM, ZF } from './flags.js';
import { ACC_FETCH, ACC_USER, ACC_WRITE, CpuFault, Mmu, type PhysLookup, type TlbEntry } from './paging.js';
import { bitsToFloat, floatToBits, Fpu, MXCSR_MASK } from './fpu.js';

export interface CpuEnv {
  /** The CPUID the `cpuid` instruction returns. */
  cpuid(leaf: number, subleaf: number): CpuidResult;
  /** The guest TSC now. */
  tsc(): bigint;
}

/** An instruction this CPU does not implement: the run ends with an internal error. */
export class Unimplemented extends Error {}

const u64 = (v: bigint): bigint => BigInt.asUintN(64, v);
/** Instruction lengths as BigInts (converting a number costs more than the add it feeds). */
const LENGTHS: readonly bigint[] = Array.from({ length: 16 }, (_, i) => BigInt(i));
const M32 = 0xffffffffn;
/** Vectors whose exception pushes an error code. */
const ERROR_CODE = new Set([8, 10, 11, 12, 13, 14, 17, 21, 29, 30]);
/** Contributory exceptions: one raised while delivering another is a double fault. */
const CONTRIBUTORY = new Set([0, 10, 11, 12, 13]);
const EFER_SCE = 1n, EFER_NXE = 1n << 11n;
const CR0_MP = 2n, CR0_TS = 8n, CR0_EM = 4n, CR4_OSFXSR = 0x200n, CR4_OSXMMEXCPT = 0x400n, CR4_TSD = 4n, CR4_PCE = 0x100n, CR4_FSGSBASE = 0x10000n;
const MSR = { FS_BASE: 0xc0000100, GS_BASE: 0xc0000101, KERNEL_GS_BASE: 0xc0000102, STAR: 0xc0000081, LSTAR: 0xc0000082, CSTAR: 0xc0000083, FMASK: 0xc0000084, TSC: 0x10, EFER: 0xc0000080 } as const;

const SEG_NAMES = ['es', 'cs', 'ss', 'ds', 'fs', 'gs'] as const;
type SegName = (typeof SEG_NAMES)[number];

export interface PendingIo {
  size: number;
  data: Uint8Array;
}

export class SoftCpu {
  /** The general registers by number (rax, rcx, rdx, rbx, rsp, rbp, rsi, rdi, r8..r15). */
  readonly R: bigint[] = new Array<bigint>(16).fill(0n);
  rip = 0n;
  readonly fl = new Flags();
  readonly mmu: Mmu;
  msrs = new Map<number, bigint>();
  private dbg: DebugRegisters = { db: [0n, 0n, 0n, 0n], dr6: 0xffff0ff0n, dr7: 0x400n };
  /** Enabled breakpoints: [first byte, last byte] and kind (0 execute, 1 write, 3 read or write), by number. */
  private breakpoints: Array<{ n: number; lo: bigint; hi: bigint; rw: number }> = [];
  /** DR6 B0-B3 bits of data breakpoints the current instruction hit. */
  private dataHits = 0;
  /** Exception delivery is under way: its accesses are the CPU's, not the instruction's. */
  private delivering = false;
  /** After mov/pop to ss: a #DB waits until after the next instruction, as hardware holds it. */
  private ssShadow = false;
  /** The current instruction's memory operand is based on rsp or rbp (a non-canonical address is #SS). */
  private stackBased = false;
  /** An fs or gs override (the operand's segment is not ss, whatever its base register). */
  private fsgs = false;

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
  private watch(va: bigint, size: number, write: boolean): void {
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
  private start = 0n;
  private len = 0;
  private cbytes: Uint8Array = new Uint8Array(0);
  private cpos = 0;
  private cend = 0;
  private rex = 0;
  private opsz = 4;
  private adsz = 8;
  private segBase = 0n;
  private rep = 0;
  private mod = 0;
  private regf = 0;
  private rmReg = 0;
  private isMem = false;
  private ripRel = false;
  private eaRaw = 0n;
  private eaDone: bigint | undefined;
  private cpl = 0;

  constructor(readonly sregs: SpecialRegisters, phys: PhysLookup, private readonly env: CpuEnv) {
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

  private getReg(i: number, size: number): bigint {
    if (size === 8) return this.R[i]!;
    if (size === 1 && !this.rex && i >= 4 && i < 8) return (this.R[i - 4]! >> 8n) & 0xffn;
    return this.R[i]! & MASK[size]!;
  }

  private setReg(i: number, size: number, v: bigint): void {
    if (size === 8) this.R[i] = u64(v);
    else if (size === 4) this.R[i] = v & M32;
    else if (size === 1 && !this.rex && i >= 4 && i < 8) this.R[i - 4] = (this.R[i - 4]! & ~0xff00n) | ((v & 0xffn) << 8n);
    else this.R[i] = (this.R[i]! & ~MASK[size]!) | (v & MASK[size]!);
  }

  // --- Memory.

  private acc(): number {
    return this.cpl === 3 ? ACC_USER : 0;
  }

  private canonical(va: bigint, stack = false): bigint {
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

  private mmioRead(e: TlbEntry, off: number, size: number): bigint {
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
  private sysLoad(va: bigint, size: number): bigint {
    return this.load(va, size, 0);
  }

  // --- Instruction fetch.

  /**
   * Points the code window at rip. After an instruction that fell through
   * to the next one in the same page, under the same translations and
   * privilege, the window is already there.
   */
  private beginFetch(): void {
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
  private fallThrough: bigint | undefined;
  private windowEpoch = -1;

  private f8(): number {
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

  private f16(): number {
    return this.f8() | (this.f8() << 8);
  }

  private f32(): number {
    return (this.f8() | (this.f8() << 8) | (this.f8() << 16) | (this.f8() << 24)) >>> 0;
  }

  /** An immediate of `size` bytes (at most 4), sign-extended to 64 bits and masked to `to`. */
  private imm(size: number, to = size): bigint {
    let v: bigint;
    if (size === 1) v = BigInt((this.f8() << 24) >> 24);
    else if (size === 2) v = BigInt((this.f16() << 16) >> 16);
    else v = BigInt(this.f32() | 0);
    return v & MASK[to]!;
  }

  /** The address after the instruction as fetched so far (computed once: a BigInt add costs). */
  private get next(): bigint {
    if (this.nextLen !== this.len) {
      // Past 2^64 only from a non-canonical rip, which faults at the next fetch anyway.
      this.nextRip = this.start + LENGTHS[this.len]!;
      this.nextLen = this.len;
    }
    return this.nextRip;
  }

  private nextRip = 0n;
  private nextLen = -1;

  // --- ModRM.

  private modrm(): void {
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
  private ea(): bigint {
    if (this.eaDone !== undefined) return this.eaDone;
    let a = this.ripRel ? this.next + this.eaRaw : this.eaRaw;
    a = this.adsz === 4 ? a & M32 : u64(a);
    this.eaDone = u64(a + this.segBase);
    return this.eaDone;
  }

  private readRM(size: number): bigint {
    return this.isMem ? this.load(this.ea(), size, this.acc(), this.stackBased) : this.getReg(this.rmReg, size);
  }

  private writeRM(size: number, v: bigint): void {
    if (this.isMem) this.store(this.ea(), size, v, this.acc(), this.stackBased);
    else this.setReg(this.rmReg, size, v);
  }

  // --- Stack.

  /** The stack operand size: 2 with 0x66, else 8 (4 in compatibility mode). */
  private get ss(): number {
    return this.opsz === 2 ? 2 : this.compat ? 4 : 8;
  }

  /** The stack pointer's width: rsp, or esp in compatibility mode (a 32-bit stack segment). */
  private sp(v: bigint): bigint {
    return this.compat ? v & M32 : u64(v);
  }

  private push(v: bigint, size = this.ss): void {
    const sp = this.sp(this.R[4]! - BigInt(size));
    this.store(sp, size, v, this.acc(), true);
    this.R[4] = sp;
  }

  private pop(size = this.ss): bigint {
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

  // --- Running.

  /**
   * Executes one instruction, or delivers the exception it raises. Returns
   * the exit it causes, if any.
   */
  step(): Exit | undefined {
    if (this.pendingIn) {
      const { size, data } = this.pendingIn;
      this.pendingIn = undefined;
      let v = 0n;
      for (let i = size - 1; i >= 0; i--) v = (v << 8n) | BigInt(data[i]!);
      this.setReg(0, size, v); // `in` writes al/ax/eax (eax zero-extends)
    }
    this.start = this.rip;
    const tf = (this.fl.bits & TF) !== 0;
    const shadowed = this.ssShadow;
    this.ssShadow = false;
    try {
      const cs = this.sregs.cs;
      this.compat = !cs.l;
      if (!cs.l && !cs.db) throw new Unimplemented('16-bit code');
      if (this.breakpoints.length) this.instructionBreakpoint();
      this.beginFetch();
      const exit = this.execute();
      this.retired++;
      this.fallThrough = this.next;
      this.fl.bits &= ~RF;
      if (exit === undefined && (tf || this.dataHits)) {
        // A trap after the instruction; after mov/pop ss, held until after the next one.
        if (this.ssShadow && !shadowed) {
          this.heldDb = (this.heldDb | this.dataHits) | (tf ? 0x4000 : 0);
          this.dataHits = 0;
          return undefined;
        }
        this.dbg.dr6 |= BigInt(this.dataHits | this.heldDb | (tf ? 0x4000 : 0));
        this.dataHits = this.heldDb = 0;
        this.deliver(1, undefined, this.rip);
      } else if (exit === undefined && this.heldDb) {
        this.dbg.dr6 |= BigInt(this.heldDb);
        this.heldDb = 0;
        this.deliver(1, undefined, this.rip);
      }
      return exit;
    } catch (e) {
      this.dataHits = 0;
      const exit = this.fault(e);
      // A #DB held by mov/pop ss comes at the next instruction boundary: the handler's first instruction.
      if (exit === undefined && this.heldDb && shadowed) {
        this.dbg.dr6 |= BigInt(this.heldDb);
        this.heldDb = 0;
        return this.raise(new CpuFault(1), this.rip);
      }
      return exit;
    }
  }

  /** #DB bits held across a mov/pop to ss. */
  private heldDb = 0;

  /** An enabled execute breakpoint at rip: #DB before the instruction, unless RF says it was taken. */
  private instructionBreakpoint(): void {
    if (this.fl.bits & RF) return;
    let hits = 0;
    for (const b of this.breakpoints) if (b.rw === 0 && b.lo === this.rip) hits |= 1 << b.n;
    if (!hits) return;
    this.dbg.dr6 |= BigInt(hits);
    throw new CpuFault(1);
  }

  private fault(e: unknown): Exit | undefined {
    this.fallThrough = undefined;
    if (e instanceof CpuFault) {
      this.rip = this.start;
      return this.raise(e);
    }
    if (e instanceof MmioExit) {
      this.rip = this.start;
      const data = new Uint8Array(e.size);
      for (let i = 0; i < e.size; i++) data[i] = Number((e.value >> BigInt(8 * i)) & 0xffn);
      if (e.isWrite) this.rip = this.next; // the write is the caller's; the instruction is done
      else this.mmioData = { gpa: e.gpa, data }; // the caller fills it; the instruction runs again and reads it
      return { kind: 'mmio', address: e.gpa, isWrite: e.isWrite, data };
    }
    if (e instanceof Unimplemented) {
      this.rip = this.start;
      const bytes = this.bytesAt(this.start);
      const shown = bytes.slice(0, Math.max(this.len, 1)).map((b) => b.toString(16).padStart(2, '0')).join(' ');
      return { kind: 'internal-error', suberror: 1, detail: [this.start, ...bytes], message: `the software CPU does not implement ${e.message} (bytes ${shown})` };
    }
    throw e;
  }

  /** Up to 15 code bytes at `va` (fewer where the page tables stop), for reports. */
  bytesAt(va: bigint): bigint[] {
    const out: bigint[] = [];
    try {
      for (let i = 0; i < 15; i++) out.push(this.load(u64(va + BigInt(i)), 1, 0));
    } catch { /* as many as are mapped */ }
    return out;
  }

  /** Raises `f` (its cr2 if a #PF): delivers it through the IDT, or escalates it. */
  raise(f: CpuFault, rip = this.start): Exit | undefined {
    try {
      this.deliver(f.vector, f.errorCode, rip, f.cr2);
      return undefined;
    } catch (e) {
      if (!(e instanceof CpuFault)) {
        if (e instanceof MmioExit || e instanceof Unimplemented) {
          return { kind: 'shutdown' };
        }
        throw e;
      }
      const first = f.vector;
      if (first === 8) return { kind: 'shutdown' }; // a fault delivering #DF: triple fault
      const benign = !(CONTRIBUTORY.has(first) || first === 14) || !(CONTRIBUTORY.has(e.vector) || (e.vector === 14 && first === 14));
      if (benign && e.vector !== 8) return this.raise(e, rip);
      return this.raise(new CpuFault(8, 0), rip);
    }
  }

  /**
   * What the CPU does to take vector `vector` in 64-bit mode: the gate, the
   * stack (rsp0 or IST when the privilege changes or the gate names an IST),
   * the frame, and ring `newCpl` at the gate's target. `rip` is what the
   * frame returns to (the instruction for a fault, the next one for a trap).
   */
  private deliver(vector: number, errorCode: number | undefined, rip: bigint, cr2?: bigint, software = false): void {
    this.delivering = true;
    try {
      this.deliverGate(vector, errorCode, rip, cr2, software);
    } finally {
      this.delivering = false;
    }
  }

  private deliverGate(vector: number, errorCode: number | undefined, rip: bigint, cr2: bigint | undefined, software: boolean): void {
    const s = this.sregs;
    if (vector * 16 + 15 > s.idt.limit) throw new CpuFault(13, vector * 8 + 2);
    const lo = this.sysLoad(s.idt.base + BigInt(vector * 16), 8);
    const hi = this.sysLoad(s.idt.base + BigInt(vector * 16 + 8), 8);
    const type = Number((lo >> 40n) & 0xfn), dpl = Number((lo >> 45n) & 3n);
    if (type !== 0xe && type !== 0xf) throw new CpuFault(13, vector * 8 + 2);
    if (software && dpl < this.cpl) throw new CpuFault(13, vector * 8 + 2);
    if (!((lo >> 47n) & 1n)) throw new CpuFault(11, vector * 8 + 2);
    const selector = Number((lo >> 16n) & 0xffffn);
    const target = (lo & 0xffffn) | ((lo >> 32n) & 0xffff0000n) | ((hi & M32) << 32n);
    const cs = this.codeDescriptor(selector);
    if (!cs.l) throw new Unimplemented('an interrupt gate into non-64-bit code');
    const newCpl = cs.dpl;
    if (newCpl > this.cpl) throw new CpuFault(13, selector & ~3);
    const ist = Number((lo >> 32n) & 7n);
    const oldSs = BigInt(s.ss.selector), oldRsp = this.R[4]!, oldCs = BigInt(s.cs.selector);
    let rsp = oldRsp;
    if (ist) rsp = this.sysLoad(s.tr.base + BigInt(0x24 + 8 * (ist - 1)), 8);
    else if (newCpl < this.cpl) rsp = this.sysLoad(s.tr.base + BigInt(4 + 8 * newCpl), 8);
    rsp &= ~0xfn;
    // A fault's frame has RF set, so that its return does not hit the same instruction breakpoint again.
    const flags = this.rflags() | (vector === 1 && rip === this.start && !software ? BigInt(RF) : 0n);
    const frame = [oldSs, oldRsp, flags, oldCs, rip];
    if (errorCode !== undefined && ERROR_CODE.has(vector)) frame.push(BigInt(errorCode));
    // The frame is written with the new privilege's rights.
    const acc = newCpl === 3 ? ACC_USER : 0;
    for (const w of frame) {
      rsp = u64(rsp - 8n);
      this.store(rsp, 8, w, acc, true);
    }
    if (vector === 14) s.cr2 = cr2 ?? 0n;
    this.R[4] = rsp;
    s.cs = { ...cs, selector: (selector & ~3) | newCpl };
    if (newCpl < this.cpl) s.ss = { ...s.ss, selector: newCpl, dpl: newCpl, unusable: true };
    this.cpl = newCpl;
    let bits = this.fl.bits & ~(TF | NT | RF | VM);
    if (type === 0xe) bits &= ~IF;
    this.fl.bits = bits;
    this.rip = target;
  }

  /** A 64-bit code segment's descriptor, for a gate or an iret. */
  private codeDescriptor(selector: number): Segment {
    const d = this.descriptor(selector, 13);
    if (!d || !d.s || !(d.type & 8)) throw new CpuFault(13, selector & ~3);
    if (!d.present) throw new CpuFault(11, selector & ~3);
    return d;
  }

  /** The descriptor `selector` names (undefined for a null selector); past the table's limit: fault `vector`. */
  private descriptor(selector: number, vector: number): Segment | undefined {
    if ((selector & ~3) === 0) return undefined;
    const table = selector & 4 ? this.sregs.ldt : this.sregs.gdt;
    const index = selector & ~7;
    if ((selector & 4 && this.sregs.ldt.unusable) || index + 7 > table.limit) throw new CpuFault(vector, selector & ~3);
    const v = this.sysLoad(table.base + BigInt(index), 8);
    const lo = Number(v & M32), hi = Number(v >> 32n);
    const g = ((hi >> 23) & 1) === 1;
    let limit = (lo & 0xffff) | (hi & 0xf0000);
    if (g) limit = limit * 4096 + 0xfff;
    return {
      base: BigInt(((lo >>> 16) | ((hi & 0xff) << 16) | (hi & 0xff000000)) >>> 0), limit, selector,
      type: (hi >> 8) & 0xf, s: ((hi >> 12) & 1) === 1, dpl: (hi >> 13) & 3, present: ((hi >> 15) & 1) === 1,
      avl: ((hi >> 20) & 1) === 1, l: ((hi >> 21) & 1) === 1, db: ((hi >> 22) & 1) === 1, g, unusable: false,
    };
  }

  /** mov/pop to a data segment register: the checks a CPU makes in 64-bit mode. */
  private loadSegment(name: SegName, selector: number): void {
    const rpl = selector & 3;
    const d = this.descriptor(selector, 13);
    if (name === 'ss') {
      this.ssShadow = true;
      if (!d) {
        if (this.cpl === 3 || rpl !== this.cpl) throw new CpuFault(13, 0);
        this.sregs.ss = { ...this.sregs.ss, selector, unusable: true };
        return;
      }
      if (rpl !== this.cpl || d.dpl !== this.cpl || !d.s || d.type & 8 || !(d.type & 2)) throw new CpuFault(13, selector & ~3);
      if (!d.present) throw new CpuFault(12, selector & ~3);
      this.sregs.ss = d;
      return;
    }
    if (!d) {
      const old = this.sregs[name];
      this.sregs[name] = { ...old, selector, unusable: true, base: name === 'fs' || name === 'gs' ? 0n : old.base };
      return;
    }
    const code = (d.type & 8) !== 0;
    if (!d.s || (code && !(d.type & 2))) throw new CpuFault(13, selector & ~3);
    // Data and non-conforming code: DPL must admit both CPL and RPL.
    if ((!code || !(d.type & 4)) && d.dpl < Math.max(this.cpl, rpl)) throw new CpuFault(13, selector & ~3);
    if (!d.present) throw new CpuFault(11, selector & ~3);
    this.sregs[name] = d;
  }

  /** Whether CPL 3 code may use `size` bytes of ports at `port` (IOPL, then the TSS I/O bitmap). */
  private ioAllowed(port: number, size: number): boolean {
    if (this.cpl <= ((this.fl.bits & IOPL) >> 12)) return true;
    const tss = this.sregs.tr;
    if (tss.limit < 0x67) return false;
    const base = Number(this.sysLoad(tss.base + 0x66n, 2));
    const at = base + (port >> 3);
    if (at + 1 > tss.limit) return false;
    const bits = Number(this.sysLoad(tss.base + BigInt(at), 2));
    const want = ((1 << size) - 1) << (port & 7);
    return (bits & want) === 0;
  }

  private privileged(): void {
    if (this.cpl !== 0) throw new CpuFault(13, 0);
  }

  // --- Decoding and execution.

  private execute(): Exit | undefined {
    this.rex = 0;
    this.opsz = 4;
    this.adsz = this.compat ? 4 : 8;
    this.segBase = 0n;
    this.fsgs = false;
    this.stackBased = false;
    this.rep = 0;
    this.p66 = false;
    let op: number;
    // Legacy prefixes, then REX (which must come last).
    for (;;) {
      op = this.f8();
      if (op === 0x66) { this.opsz = 2; this.p66 = true; }
      else if (op === 0x67) this.adsz = this.compat ? 2 : 4;
      else if (op === 0xf3 || op === 0xf2) this.rep = op;
      else if (op === 0xf0 || op === 0x2e || op === 0x3e || op === 0x26 || op === 0x36) { /* lock; segments ignored in 64-bit mode */ }
      else if (op === 0x64) { this.segBase = this.sregs.fs.base; this.fsgs = true; }
      else if (op === 0x65) { this.segBase = this.sregs.gs.base; this.fsgs = true; }
      else break;
    }
    if ((op & 0xf0) === 0x40 && !this.compat) {
      this.rex = op;
      if (op & 8) this.opsz = 8;
      op = this.f8();
    }
    if (op === 0x0f) return this.execute0f(this.f8());
    return this.execute1(op);
  }

  /** Operand size of a byte/other pair: opcode bit 0 clear means a byte operation. */
  private sz(op: number): number {
    return op & 1 ? this.opsz : 1;
  }

  private alu(n: number, a: bigint, b: bigint, size: number): bigint {
    const m = MASK[size]!;
    let r: bigint;
    switch (n) {
      case 0: r = (a + b) & m; this.fl.set(Lazy.Add, a, b, r, size); break;
      case 1: r = a | b; this.fl.set(Lazy.Logic, a, b, r, size); break;
      case 2: { const c = this.fl.cf() ? 1 : 0; r = (a + b + BigInt(c)) & m; this.fl.set(Lazy.Add, a, b, r, size, c); break; }
      case 3: { const c = this.fl.cf() ? 1 : 0; r = (a - b - BigInt(c)) & m; this.fl.set(Lazy.Sub, a, b, r, size, c); break; }
      case 4: r = a & b; this.fl.set(Lazy.Logic, a, b, r, size); break;
      case 5: case 7: r = (a - b) & m; this.fl.set(Lazy.Sub, a, b, r, size); break;
      default: r = a ^ b; this.fl.set(Lazy.Logic, a, b, r, size); break;
    }
    return r;
  }

  private jump(target: bigint): undefined {
    this.rip = this.compat ? target & M32 : this.canonical(u64(target));
    return undefined;
  }

  private execute1(op: number): Exit | undefined {
    const R = this.R;
    if (this.compat) {
      if (op >= 0x40 && op <= 0x4f) { // inc, dec r32 (REX in 64-bit mode)
        const i = op & 7, size = this.opsz, v = this.getReg(i, size), c = this.fl.cf() ? 1 : 0;
        const r = op < 0x48 ? (v + 1n) & MASK[size]! : (v - 1n) & MASK[size]!;
        this.setReg(i, size, r);
        this.fl.set(op < 0x48 ? Lazy.Inc : Lazy.Dec, v, 1n, r, size, c);
        this.rip = this.next;
        return undefined;
      }
      if (op === 0xea) { // ljmp ptr16:32
        const offset = this.opsz === 2 ? BigInt(this.f16()) : BigInt(this.f32());
        return this.farJump(offset, this.f16());
      }
      if (op === 0x63) throw this.unknown(); // arpl
    }
    if (op < 0x40 && (op & 7) < 6) {
      // The eight ALU operations: r/m,r; r,r/m; al/eAX,imm.
      const n = op >> 3, form = op & 7, size = this.sz(op);
      if (form < 4) {
        this.modrm();
        if (form < 2) {
          const r = this.alu(n, this.readRM(size), this.getReg(this.regf, size), size);
          if (n !== 7) this.writeRM(size, r);
        } else {
          const r = this.alu(n, this.getReg(this.regf, size), this.readRM(size), size);
          if (n !== 7) this.setReg(this.regf, size, r);
        }
      } else {
        const imm = this.imm(Math.min(size, 4), size);
        const r = this.alu(n, this.getReg(0, size), imm, size);
        if (n !== 7) this.setReg(0, size, r);
      }
      this.rip = this.next;
      return undefined;
    }
    if (op >= 0x50 && op <= 0x57) {
      const size = this.ss;
      this.push(this.getReg((op & 7) | (this.rex & 1 ? 8 : 0), size), size);
      this.rip = this.next;
      return undefined;
    }
    if (op >= 0x58 && op <= 0x5f) {
      const size = this.ss;
      const v = this.pop(size);
      this.setReg((op & 7) | (this.rex & 1 ? 8 : 0), size, v);
      this.rip = this.next;
      return undefined;
    }
    if (op >= 0x70 && op <= 0x7f) {
      const d = this.imm(1, 8);
      return this.jump(this.fl.cond(op & 0xf) ? this.next + BigInt.asIntN(64, d) : this.next);
    }
    if (op >= 0x91 && op <= 0x97) {
      const i = (op & 7) | (this.rex & 1 ? 8 : 0), size = this.opsz;
      const a = this.getReg(0, size), b = this.getReg(i, size);
      this.setReg(0, size, b);
      this.setReg(i, size, a);
      this.rip = this.next;
      return undefined;
    }
    if (op >= 0xb0 && op <= 0xbf) {
      const i = (op & 7) | (this.rex & 1 ? 8 : 0);
      if (op < 0xb8) this.setReg(i, 1, BigInt(this.f8()));
      else if (this.opsz === 8) this.setReg(i, 8, BigInt(this.f32()) | (BigInt(this.f32()) << 32n));
      else this.setReg(i, this.opsz, this.opsz === 2 ? BigInt(this.f16()) : BigInt(this.f32()));
      this.rip = this.next;
      return undefined;
    }
    switch (op) {
      case 0x63: { // movsxd
        this.modrm();
        const v = this.readRM(4);
        this.setReg(this.regf, this.opsz, BigInt.asIntN(32, v) & MASK[this.opsz]!);
        break;
      }
      case 0x68: this.push(this.imm(this.opsz === 2 ? 2 : 4, 8), this.ss); break;
      case 0x6a: this.push(this.imm(1, 8), this.ss); break;
      case 0x69: case 0x6b: { // imul r, r/m, imm
        this.modrm();
        const size = this.opsz;
        const imm = this.imm(op === 0x6b ? 1 : Math.min(size, 4), size);
        this.imulStore(this.regf, this.readRM(size), imm, size);
        break;
      }
      case 0x80: case 0x81: case 0x83: {
        const size = this.sz(op);
        this.modrm();
        const imm = this.imm(op === 0x81 ? Math.min(size, 4) : 1, size);
        const r = this.alu(this.regf & 7, this.readRM(size), imm, size);
        if ((this.regf & 7) !== 7) this.writeRM(size, r);
        break;
      }
      case 0x84: case 0x85: {
        const size = this.sz(op);
        this.modrm();
        this.alu(4, this.readRM(size), this.getReg(this.regf, size), size);
        break;
      }
      case 0x86: case 0x87: { // xchg r/m, r
        const size = this.sz(op);
        this.modrm();
        const a = this.readRM(size), b = this.getReg(this.regf, size);
        this.writeRM(size, b);
        this.setReg(this.regf, size, a);
        break;
      }
      case 0x88: case 0x89: { const size = this.sz(op); this.modrm(); this.writeRM(size, this.getReg(this.regf, size)); break; }
      case 0x8a: case 0x8b: { const size = this.sz(op); this.modrm(); this.setReg(this.regf, size, this.readRM(size)); break; }
      case 0x8c: { // mov r/m, sreg
        this.modrm();
        const seg = this.segByIndex(this.regf & 7);
        const v = BigInt(this.sregs[seg].selector);
        if (this.isMem) this.store(this.ea(), 2, v); else this.setReg(this.rmReg, this.opsz === 2 ? 2 : this.opsz, v);
        break;
      }
      case 0x8d: { // lea
        this.modrm();
        if (!this.isMem) throw new CpuFault(6);
        const saved = this.segBase;
        this.segBase = 0n;
        this.eaDone = undefined;
        const a = this.ea();
        this.segBase = saved;
        this.setReg(this.regf, this.opsz, a & MASK[this.opsz]!);
        break;
      }
      case 0x8e: { // mov sreg, r/m
        this.modrm();
        const seg = this.segByIndex(this.regf & 7);
        if (seg === 'cs') throw new CpuFault(6);
        this.loadSegment(seg, Number(this.readRM(2)));
        break;
      }
      case 0x8f: { // pop r/m
        this.modrm();
        const size = this.ss;
        const sp = this.R[4]!;
        const v = this.pop(size);
        try {
          this.eaDone = undefined;
          this.writeRM(size, v);
        } catch (e) {
          this.R[4] = sp;
          throw e;
        }
        break;
      }
      case 0x90:
        if (this.rep === 0xf3) this.pauses++;
        break;
      case 0x98: // cbw/cwde/cdqe
        if (this.opsz === 8) R[0] = u64(BigInt.asIntN(32, R[0]!));
        else if (this.opsz === 4) R[0] = BigInt.asIntN(16, R[0]!) & M32;
        else this.setReg(0, 2, BigInt.asIntN(8, R[0]!));
        break;
      case 0x99: { // cwd/cdq/cqo
        const size = this.opsz;
        this.setReg(2, size, (R[0]! & SIGN[size]!) ? MASK[size]! : 0n);
        break;
      }
      case 0x9c: { // pushf
        const f = this.rflags() & ~BigInt(RF | VM);
        this.push(f, this.ss);
        break;
      }
      case 0x9d: { // popf
        const v = this.pop(this.ss);
        this.popFlags(v, this.opsz === 2 ? 0xffffn : M32);
        break;
      }
      case 0x9e: // sahf
        this.fl.setArith((Number((R[0]! >> 8n) & 0xffn) & (0xd5)) | (this.fl.materialize() & 0x800));
        break;
      case 0x9f: // lahf
        R[0] = (R[0]! & ~0xff00n) | (BigInt((this.fl.materialize() & 0xd5) | 2) << 8n);
        break;
      case 0xa0: case 0xa1: case 0xa2: case 0xa3: { // mov between al/eAX and a 64-bit (32 with 0x67) absolute address
        const size = this.sz(op);
        let a = this.adsz === 8 ? BigInt(this.f32()) | (BigInt(this.f32()) << 32n) : BigInt(this.f32());
        a = u64(a + this.segBase);
        if (op < 0xa2) this.setReg(0, size, this.load(a, size)); else this.store(a, size, this.getReg(0, size));
        break;
      }
      case 0xca: case 0xcb: return this.farReturn(op === 0xca ? this.f16() : 0);
      case 0xa8: case 0xa9: {
        const size = this.sz(op);
        this.alu(4, this.getReg(0, size), this.imm(Math.min(size, 4), size), size);
        break;
      }
      case 0xa4: case 0xa5: case 0xa6: case 0xa7: case 0xaa: case 0xab: case 0xac: case 0xad: case 0xae: case 0xaf:
        return this.string(op);
      case 0xc0: case 0xc1: case 0xd0: case 0xd1: case 0xd2: case 0xd3: {
        const size = this.sz(op);
        this.modrm();
        const count = op <= 0xc1 ? this.f8() : op <= 0xd1 ? 1 : Number(R[1]! & 0xffn);
        this.shift(this.regf & 7, size, count);
        break;
      }
      case 0xc2: { const n = this.f16(); const t = this.pop(); R[4] = this.sp(R[4]! + BigInt(n)); return this.jump(t); }
      case 0xc3: return this.jump(this.pop());
      case 0xc6: case 0xc7: {
        const size = this.sz(op);
        this.modrm();
        if ((this.regf & 7) !== 0) throw new CpuFault(6);
        this.writeRM(size, this.imm(Math.min(size, 4), size));
        break;
      }
      case 0xc9: { // leave
        const size = this.ss;
        const v = this.load(this.sp(R[5]!), size, this.acc(), true);
        R[4] = this.sp(R[5]! + BigInt(size));
        this.setReg(5, size, v);
        break;
      }
      case 0xcc: // int3: through a DPL-0 gate, #GP((3 << 3) | 2)
        this.rip = this.next;
        this.deliver(3, undefined, this.next, undefined, true);
        return undefined;
      case 0xcd: {
        const n = this.f8();
        this.rip = this.next;
        this.deliver(n, undefined, this.next, undefined, true);
        return undefined;
      }
      case 0xcf: return this.iret();
      case 0xe4: case 0xe5: case 0xec: case 0xed: { // in
        const size = op & 1 ? (this.opsz === 2 ? 2 : 4) : 1;
        const port = op < 0xe8 ? this.f8() : Number(R[2]! & 0xffffn);
        if (!this.ioAllowed(port, size)) throw new CpuFault(13, 0);
        this.rip = this.next;
        const data = new Uint8Array(size);
        this.pendingIn = { size, data };
        return { kind: 'io', direction: 'in', port, size: size as 1 | 2 | 4, count: 1, data };
      }
      case 0xe6: case 0xe7: case 0xee: case 0xef: { // out
        const size = op & 1 ? (this.opsz === 2 ? 2 : 4) : 1;
        const port = op < 0xe8 ? this.f8() : Number(R[2]! & 0xffffn);
        if (!this.ioAllowed(port, size)) throw new CpuFault(13, 0);
        this.rip = this.next;
        const v = R[0]!;
        const data = new Uint8Array(size);
        for (let i = 0; i < size; i++) data[i] = Number((v >> BigInt(8 * i)) & 0xffn);
        return { kind: 'io', direction: 'out', port, size: size as 1 | 2 | 4, count: 1, data };
      }
      case 0xe8: { const d = this.imm(4, 8); const t = this.next + BigInt.asIntN(64, d); this.push(this.next); return this.jump(t); }
      case 0xe9: { const d = this.imm(4, 8); return this.jump(this.next + BigInt.asIntN(64, d)); }
      case 0xeb: { const d = this.imm(1, 8); return this.jump(this.next + BigInt.asIntN(64, d)); }
      case 0xf4: // hlt
        this.privileged();
        this.rip = this.next;
        return { kind: 'halt' };
      case 0xf5: this.fl.setArith(this.fl.materialize() ^ CF); break; // cmc
      case 0xf6: case 0xf7: return this.group3(this.sz(op));
      case 0xf8: this.fl.setArith(this.fl.materialize() & ~CF); break;
      case 0xf9: this.fl.setArith(this.fl.materialize() | CF); break;
      case 0xfa: case 0xfb: // cli, sti
        if (this.cpl > ((this.fl.bits & IOPL) >> 12)) throw new CpuFault(13, 0);
        this.fl.bits = op === 0xfa ? this.fl.bits & ~IF : this.fl.bits | IF;
        break;
      case 0xfc: this.fl.bits &= ~DF; break;
      case 0xfd: this.fl.bits |= DF; break;
      case 0xfe: case 0xff: return this.group45(op);
      default:
        if ((op >= 0xd8 && op <= 0xdf) || op === 0x9b) return this.x87(op);
        throw this.unknown();
    }
    this.rip = this.next;
    return undefined;
  }

  /** `pause` instructions executed (a spinning guest). */
  pauses = 0;
  /** The x87 and SSE state (fpu.ts). */
  readonly fpu = new Fpu();
  /** A 0x66 prefix (an SSE instruction's selector even where REX.W sets the operand size). */
  private p66 = false;
  /** Compatibility mode: 32-bit code under a 64-bit kernel (a code segment with L clear and D set). */
  private compat = false;

  private unknown(): Unimplemented {
    return new Unimplemented('this instruction');
  }

  /** x87 (d8-df, 9b): the sliver fpu.ts models; #NM with CR0.TS or EM, #MF for a pending unmasked fault. */
  private x87(op: number): Exit | undefined {
    const cr0 = this.sregs.cr0, F = this.fpu;
    if (op === 0x9b) { // fwait
      if ((cr0 & (CR0_TS | CR0_MP)) === (CR0_TS | CR0_MP)) throw new CpuFault(7);
      if (F.pending) throw new CpuFault(16);
      this.rip = this.next;
      return undefined;
    }
    if (cr0 & (CR0_TS | CR0_EM)) throw new CpuFault(7);
    this.modrm();
    const n = this.regf & 7, i = this.rmReg & 7, mem = this.isMem;
    // The non-waiting control instructions first.
    if (op === 0xdb && !mem && n === 4 && i === 3) F.init(); // fninit
    else if (op === 0xdb && !mem && n === 4 && i === 2) F.fsw &= 0x7f00; // fnclex
    else if (op === 0xd9 && mem && n === 7) this.store(this.ea(), 2, BigInt(F.fcw)); // fnstcw
    else if (op === 0xdd && mem && n === 7) this.store(this.ea(), 2, BigInt(F.fsw)); // fnstsw m16
    else if (op === 0xdf && !mem && n === 4 && i === 0) this.setReg(0, 2, BigInt(F.fsw)); // fnstsw %ax
    else {
      if (F.pending) throw new CpuFault(16);
      if (op === 0xd9 && mem && n === 5) F.fcw = Number(this.load(this.ea(), 2)); // fldcw
      else if (op === 0xd9 && !mem && n === 5 && (i === 0 || i === 6)) F.push(i === 0 ? 1 : 0); // fld1, fldz
      else if (op === 0xd9 && !mem && n === 0) { const v = F.get(i); if (v !== undefined) F.push(v); } // fld st(i)
      else if (op === 0xdd && !mem && n === 3) { const v = F.get(0); if (v !== undefined) { F.st[i] = v; F.pop(); } } // fstp st(i)
      else if (!mem && (op === 0xd8 || op === 0xdc || op === 0xde) && n !== 2 && n !== 3) {
        // d8: st(0) = st(0) op st(i); dc, de: st(i) = st(i) op st(0), the sub and div forms reversed; de pops.
        const a = F.get(op === 0xd8 ? 0 : i), b = F.get(op === 0xd8 ? i : 0);
        if (a !== undefined && b !== undefined) {
          const r = F.arith(op === 0xd8 || n < 4 ? n : n ^ 1, a, b);
          if (r !== undefined) F.st[op === 0xd8 ? 0 : i] = r;
          if (op === 0xde) F.pop();
        }
      } else throw new Unimplemented('this x87 instruction');
    }
    this.rip = this.next;
    return undefined;
  }

  /** The SSE opcodes of the 0f map: moves, xor and the scalar single arithmetic (fpu.ts); #UD without CR4.OSFXSR or with CR0.EM, #NM with CR0.TS. */
  private sse(op: number): Exit | undefined {
    const cr0 = this.sregs.cr0, F = this.fpu;
    if (cr0 & CR0_EM || !(this.sregs.cr4 & CR4_OSFXSR)) throw new CpuFault(6);
    if (cr0 & CR0_TS) throw new CpuFault(7);
    this.modrm();
    const x = F.xmm, d = this.regf;
    const rmLow = (size: number): bigint => this.isMem ? this.load(this.ea(), size) : x[this.rmReg]![0] & MASK[size]!;
    const rm128 = (): [bigint, bigint] => {
      if (!this.isMem) return [...x[this.rmReg]!];
      const a = this.ea();
      if (a & 0xfn) throw new CpuFault(13, 0);
      return [this.load(a, 8), this.load(a + 8n, 8)];
    };
    const store128 = (v: [bigint, bigint]): void => {
      if (!this.isMem) { x[this.rmReg] = v; return; }
      const a = this.ea();
      if (a & 0xfn) throw new CpuFault(13, 0);
      this.store(a, 8, v[0]);
      this.store(a + 8n, 8, v[1]);
    };
    const f3 = this.rep === 0xf3, none = !this.p66 && !this.rep;
    if (op === 0x10 && f3) { // movss xmm, xmm/m32: from memory the rest is zeroed
      const v = rmLow(4);
      x[d] = this.isMem ? [v, 0n] : [(x[d]![0] & ~M32) | v, x[d]![1]];
    } else if (op === 0x11 && f3) { // movss xmm/m32, xmm
      if (this.isMem) this.store(this.ea(), 4, x[d]![0] & M32); else x[this.rmReg]![0] = (x[this.rmReg]![0] & ~M32) | (x[d]![0] & M32);
    } else if ((op === 0x28 || op === 0x6f) && (none || this.p66) && !this.rep) x[d] = rm128(); // movaps, movapd, movdqa
    else if ((op === 0x29 || op === 0x7f) && (none || this.p66) && !this.rep) store128([...x[d]!]); // to memory or a register
    else if ((op === 0x57 && (none || this.p66)) || (op === 0xef && this.p66)) { // xorps, xorpd, pxor
      const [lo, hi] = rm128();
      x[d] = [x[d]![0] ^ lo, x[d]![1] ^ hi];
    } else if ((op === 0x58 || op === 0x59 || op === 0x5c || op === 0x5e) && f3) { // addss, mulss, subss, divss
      const r = F.sse(op, bitsToFloat(x[d]![0]), bitsToFloat(rmLow(4)));
      if (r === 'fault') throw new CpuFault(this.sregs.cr4 & CR4_OSXMMEXCPT ? 19 : 6);
      x[d]![0] = (x[d]![0] & ~M32) | floatToBits(r);
    } else if (op === 0x6e && this.p66) x[d] = [this.readRM(this.opsz === 8 ? 8 : 4), 0n]; // movd/movq xmm, r/m (a general register)
    else if (op === 0x7e && this.p66) { // movd/movq r/m, xmm
      const size = this.opsz === 8 ? 8 : 4;
      this.writeRM(size, x[d]![0] & MASK[size]!);
    } else if (op === 0x7e && f3) x[d] = [rmLow(8), 0n]; // movq xmm, xmm/m64
    else if (op === 0xd6 && this.p66) { // movq xmm/m64, xmm
      if (this.isMem) this.store(this.ea(), 8, x[d]![0]); else x[this.rmReg] = [x[d]![0], 0n];
    } else throw new Unimplemented('this SSE instruction');
    this.rip = this.next;
    return undefined;
  }

  /** ldmxcsr, stmxcsr (0f ae /2, /3). */
  private mxcsr(n: number): Exit | undefined {
    const cr0 = this.sregs.cr0;
    if (cr0 & CR0_EM || !(this.sregs.cr4 & CR4_OSFXSR)) throw new CpuFault(6);
    if (cr0 & CR0_TS) throw new CpuFault(7);
    if (n === 2) {
      const v = Number(this.load(this.ea(), 4));
      if (v & ~MXCSR_MASK) throw new CpuFault(13, 0);
      this.fpu.mxcsr = v;
    } else this.store(this.ea(), 4, BigInt(this.fpu.mxcsr));
    this.rip = this.next;
    return undefined;
  }

  private segByIndex(i: number): SegName {
    if (i > 5) throw new CpuFault(6);
    return SEG_NAMES[i]!;
  }

  private popFlags(v: bigint, width: bigint): void {
    const old = this.fl.materialize();
    let changeable = ARITH | TF | DF | NT | AC | ID;
    if (this.cpl === 0) changeable |= IOPL | IF;
    else if (this.cpl <= ((old & IOPL) >> 12)) changeable |= IF;
    changeable &= Number(width);
    this.fl.bits = ((old & ~changeable) | (Number(v & M32) & changeable)) & ~(RF | VM) | 2;
  }

  private iret(): Exit | undefined {
    if (this.opsz !== 8) throw new Unimplemented('iret other than iretq');
    const sp = this.R[4]!, acc = this.acc();
    const rip = this.load(sp, 8, acc, true), cs = Number(this.load(sp + 8n, 8, acc, true) & 0xffffn);
    const flags = this.load(sp + 16n, 8, acc, true), rsp = this.load(sp + 24n, 8, acc, true), ss = Number(this.load(sp + 32n, 8, acc, true) & 0xffffn);
    const rpl = cs & 3;
    if (rpl < this.cpl) throw new CpuFault(13, cs & ~3);
    const d = this.codeDescriptor(cs);
    if (d.dpl !== rpl && !(d.type & 4)) throw new CpuFault(13, cs & ~3);
    if (!d.l && !d.db) throw new Unimplemented('iret to 16-bit code');
    // The stack segment: null only when returning to ring 0-2.
    let ssSeg: Segment;
    const sd = this.descriptor(ss, 13);
    if (!sd) {
      if (rpl === 3) throw new CpuFault(13, 0);
      ssSeg = { ...this.sregs.ss, selector: ss, dpl: rpl, unusable: true };
    } else {
      if ((ss & 3) !== rpl || sd.dpl !== rpl || !sd.s || sd.type & 8 || !(sd.type & 2)) throw new CpuFault(13, ss & ~3);
      if (!sd.present) throw new CpuFault(12, ss & ~3);
      ssSeg = sd;
    }
    if (d.l) this.canonical(rip);
    this.popFlags(flags, M32);
    if (flags & BigInt(RF)) this.fl.bits |= RF; // iret may set RF (to pass an instruction breakpoint)
    this.sregs.cs = { ...d, selector: cs };
    this.sregs.ss = ssSeg;
    const outward = rpl > this.cpl;
    this.cpl = rpl;
    this.R[4] = rsp;
    this.rip = d.l ? rip : rip & M32;
    if (outward) {
      // Data segments the outer level may not use become null.
      for (const n of ['ds', 'es', 'fs', 'gs'] as const) {
        const seg = this.sregs[n];
        if (!seg.unusable && seg.s && (!(seg.type & 8) || !(seg.type & 4)) && seg.dpl < rpl) this.sregs[n] = { ...seg, selector: 0, unusable: true };
      }
    }
    return undefined;
  }

  /**
   * lcall/ljmp through a far pointer in memory (m16:64 with REX.W, else
   * m16:32): to a code segment of the current privilege (conforming or of
   * DPL = CPL). A call gate is not followed; its descriptor faults as a
   * non-code segment would.
   */
  private farTransfer(call: boolean): Exit | undefined {
    if (!this.isMem) throw new CpuFault(6);
    const width = this.opsz === 8 ? 8 : this.opsz === 2 ? 2 : 4;
    const a = this.ea();
    const offset = this.load(a, width), selector = Number(this.load(u64(a + BigInt(width)), 2));
    return this.farJump(offset, selector, call ? width : 0);
  }

  /** To `selector`:`offset`, a code segment of the current privilege; with `push` (bytes) a call, pushing cs and the return address. */
  private farJump(offset: bigint, selector: number, push = 0): Exit | undefined {
    const width = push;
    const call = push !== 0;
    const d = this.descriptor(selector, 13);
    if (!d) throw new CpuFault(13, 0);
    if (!d.s) throw new Unimplemented('a far transfer through a gate');
    const conforming = (d.type & 4) !== 0;
    if (!(d.type & 8) || (conforming ? d.dpl > this.cpl : (selector & 3) > this.cpl || d.dpl !== this.cpl)) throw new CpuFault(13, selector & ~3);
    if (!d.present) throw new CpuFault(11, selector & ~3);
    if (call) {
      const sp = this.R[4]!;
      try {
        this.push(BigInt(this.sregs.cs.selector), width === 2 ? 2 : width);
        this.push(this.next, width === 2 ? 2 : width);
      } catch (e) {
        this.R[4] = sp;
        throw e;
      }
    }
    const rip = d.l ? this.canonical(offset) : offset & M32;
    this.sregs.cs = { ...d, selector: (selector & ~3) | this.cpl };
    this.rip = rip;
    return undefined;
  }

  /** lret [imm16]: to the same privilege, or outward (then rsp and ss come off the stack too). */
  private farReturn(release: number): Exit | undefined {
    const width = this.opsz === 8 ? 8 : this.opsz === 2 ? 2 : 4, w = BigInt(width), acc = this.acc();
    const sp = this.R[4]!;
    const rip = this.load(sp, width, acc, true), cs = Number(this.load(u64(sp + w), width, acc, true) & 0xffffn);
    const rpl = cs & 3;
    if (rpl < this.cpl) throw new CpuFault(13, cs & ~3);
    const d = this.codeDescriptor(cs);
    if ((d.type & 4 ? d.dpl > rpl : d.dpl !== rpl)) throw new CpuFault(13, cs & ~3);
    if (d.l) this.canonical(rip);
    let nsp = u64(sp + 2n * w + BigInt(release));
    if (rpl > this.cpl) {
      const rsp = this.load(nsp, width, acc, true), ss = Number(this.load(u64(nsp + w), width, acc, true) & 0xffffn);
      const sd = this.descriptor(ss, 13);
      if (!sd || (ss & 3) !== rpl || sd.dpl !== rpl || !sd.s || sd.type & 8 || !(sd.type & 2)) throw new CpuFault(13, ss & ~3);
      if (!sd.present) throw new CpuFault(12, ss & ~3);
      this.sregs.ss = sd;
      nsp = u64(rsp + BigInt(release));
      this.cpl = rpl;
    }
    const target = d.l ? this.canonical(rip) : rip & M32;
    this.sregs.cs = { ...d, selector: cs };
    this.R[4] = nsp;
    this.rip = target;
    return undefined;
  }

  private shift(n: number, size: number, countIn: number): void {
    const bits = size * 8;
    const count = countIn & (size === 8 ? 63 : 31);
    const v = this.readRM(size);
    if (count === 0) {
      // Flags untouched; a 32-bit register destination is still written, which clears its upper half.
      if (size === 4 && !this.isMem) this.setReg(this.rmReg, 4, v);
      return;
    }
    const m = MASK[size]!, s = SIGN[size]!;
    const c = BigInt(count);
    let r: bigint, cf: boolean, of: boolean;
    switch (n) {
      case 0: { // rol
        const k = BigInt(count % bits);
        r = ((v << k) | (v >> (BigInt(bits) - k))) & m;
        cf = (r & 1n) !== 0n;
        of = ((r & s) !== 0n) !== cf;
        this.writeRM(size, r);
        this.fl.setArith((this.fl.materialize() & ~(CF | OF)) | (cf ? CF : 0) | (of ? OF : 0));
        return;
      }
      case 1: { // ror
        const k = BigInt(count % bits);
        r = ((v >> k) | (v << (BigInt(bits) - k))) & m;
        cf = (r & s) !== 0n;
        of = ((r & s) !== 0n) !== ((r & (s >> 1n)) !== 0n);
        this.writeRM(size, r);
        this.fl.setArith((this.fl.materialize() & ~(CF | OF)) | (cf ? CF : 0) | (of ? OF : 0));
        return;
      }
      case 2: case 3: { // rcl, rcr: through CF, bits+1 wide
        const k = count % (bits + 1);
        let x = v, carry = this.fl.cf() ? 1n : 0n;
        for (let i = 0; i < k; i++) {
          if (n === 2) { const out = (x & s) !== 0n ? 1n : 0n; x = ((x << 1n) | carry) & m; carry = out; }
          else { const out = x & 1n; x = (x >> 1n) | (carry ? s : 0n); carry = out; }
        }
        r = x;
        cf = carry !== 0n;
        of = n === 2 ? ((r & s) !== 0n) !== cf : ((r & s) !== 0n) !== ((r & (s >> 1n)) !== 0n);
        this.writeRM(size, r);
        this.fl.setArith((this.fl.materialize() & ~(CF | OF)) | (cf ? CF : 0) | (of ? OF : 0));
        return;
      }
      case 4: case 6: // shl
        r = (v << c) & m;
        cf = count <= bits && ((v >> BigInt(bits - count)) & 1n) !== 0n;
        of = ((r & s) !== 0n) !== cf;
        break;
      case 5: // shr
        r = v >> c;
        cf = ((v >> (c - 1n)) & 1n) !== 0n;
        of = (v & s) !== 0n;
        break;
      default: { // sar
        const sv = BigInt.asIntN(bits, v);
        r = (sv >> c) & m;
        cf = ((sv >> (c - 1n)) & 1n) !== 0n;
        of = false;
        break;
      }
    }
    this.writeRM(size, r);
    this.fl.setArith(Flags.szp(r, size) | (cf ? CF : 0) | (of ? OF : 0));
  }

  private imulStore(reg: number, a: bigint, b: bigint, size: number): void {
    const bits = size * 8;
    const full = BigInt.asIntN(bits, a) * BigInt.asIntN(bits, b);
    const r = full & MASK[size]!;
    const over = BigInt.asIntN(bits, r) !== full;
    this.setReg(reg, size, r);
    this.fl.setArith(Flags.szp(r, size) | (over ? CF | OF : 0));
  }

  private group3(size: number): Exit | undefined {
    this.modrm();
    const n = this.regf & 7, bits = BigInt(size * 8), m = MASK[size]!;
    switch (n) {
      case 0: case 1: { const imm = this.imm(Math.min(size, 4), size); this.alu(4, this.readRM(size), imm, size); break; }
      case 2: this.writeRM(size, ~this.readRM(size) & m); break;
      case 3: {
        const v = this.readRM(size);
        const r = (0n - v) & m;
        this.writeRM(size, r);
        this.fl.set(Lazy.Sub, 0n, v, r, size);
        break;
      }
      case 4: case 5: { // mul, imul: rdx:rax (ah:al for bytes)
        const v = this.readRM(size);
        const a = this.getReg(0, size);
        let full: bigint, over: boolean;
        if (n === 4) {
          full = a * v;
          over = (full >> bits) !== 0n;
        } else {
          full = BigInt.asIntN(Number(bits), a) * BigInt.asIntN(Number(bits), v);
          over = BigInt.asIntN(Number(bits), full & m) !== full;
        }
        const lo = full & m, hi = (full >> bits) & m;
        if (size === 1) this.setReg(0, 2, (hi << 8n) | lo);
        else { this.setReg(0, size, lo); this.setReg(2, size, hi); }
        this.fl.setArith(Flags.szp(lo, size) | (over ? CF | OF : 0));
        break;
      }
      default: { // div, idiv
        const v = this.readRM(size);
        if (v === 0n) throw new CpuFault(0);
        const dividend = size === 1 ? this.getReg(0, 2) : (this.getReg(2, size) << bits) | this.getReg(0, size);
        let q: bigint, r: bigint;
        if (n === 6) {
          q = dividend / v;
          r = dividend % v;
          if (q > m) throw new CpuFault(0);
        } else {
          const sd = BigInt.asIntN(Number(bits) * 2, dividend), sv = BigInt.asIntN(Number(bits), v);
          q = sd / sv;
          r = sd % sv;
          if (q > (m >> 1n) || q < -((m >> 1n) + 1n)) throw new CpuFault(0);
          q &= m;
          r &= m;
        }
        if (size === 1) this.setReg(0, 2, (r << 8n) | q);
        else { this.setReg(0, size, q); this.setReg(2, size, r); }
        break;
      }
    }
    this.rip = this.next;
    return undefined;
  }

  private group45(op: number): Exit | undefined {
    this.modrm();
    const n = this.regf & 7;
    if (op === 0xfe && n > 1) throw new CpuFault(6);
    if (n <= 1) { // inc, dec
      const size = this.sz(op);
      const v = this.readRM(size), m = MASK[size]!;
      const r = n === 0 ? (v + 1n) & m : (v - 1n) & m;
      const c = this.fl.cf() ? 1 : 0;
      this.writeRM(size, r);
      this.fl.set(n === 0 ? Lazy.Inc : Lazy.Dec, v, 1n, r, size, c);
      this.rip = this.next;
      return undefined;
    }
    switch (n) {
      case 2: { const t = this.readRM(this.ss); this.push(this.next); return this.jump(t); }
      case 3: case 5: return this.farTransfer(n === 3);
      case 4: return this.jump(this.readRM(this.ss));
      case 6: { const size = this.ss; this.push(this.readRM(size), size); break; }
      default: throw new CpuFault(6);
    }
    this.rip = this.next;
    return undefined;
  }

  /** String instructions, with rep/repe/repne. One iteration per call to keep faults restartable; rip stays until done. */
  private string(op: number): Exit | undefined {
    const size = this.sz(op);
    const R = this.R;
    const am = this.adsz === 4 ? M32 : MASK[8]!;
    const step = BigInt((this.fl.bits & DF ? -1 : 1) * size);
    const rep = this.rep !== 0;
    const kind = op & 0xfe;
    // Bounded batches: a long rep gives the caller a chance to stop between iterations.
    for (let i = 0; i < 4096; i++) {
      if (rep && (R[1]! & am) === 0n) break;
      const src = u64(((R[6]! & am) + this.segBase)), dst = R[7]! & am;
      switch (kind) {
        case 0xa4: this.store(dst, size, this.load(src, size)); R[6] = (R[6]! + step) & am; R[7] = (R[7]! + step) & am; break;
        case 0xaa: this.store(dst, size, this.getReg(0, size)); R[7] = (R[7]! + step) & am; break;
        case 0xac: this.setReg(0, size, this.load(src, size)); R[6] = (R[6]! + step) & am; break;
        case 0xa6: { const a = this.load(src, size), b = this.load(dst, size); this.alu(7, a, b, size); R[6] = (R[6]! + step) & am; R[7] = (R[7]! + step) & am; break; }
        default: { const b = this.load(dst, size); this.alu(7, this.getReg(0, size), b, size); R[7] = (R[7]! + step) & am; break; }
      }
      if (!rep) { this.rip = this.next; return undefined; }
      R[1] = (R[1]! - 1n) & am;
      if (kind === 0xa6 || kind === 0xae) {
        const z = this.fl.zf();
        if ((this.rep === 0xf3 && !z) || (this.rep === 0xf2 && z)) break;
      }
    }
    if (rep && (R[1]! & am) !== 0n && !((kind === 0xa6 || kind === 0xae) && (this.rep === 0xf3 ? !this.fl.zf() : this.fl.zf()))) {
      this.rip = this.start; // not done: the same instruction continues
      return undefined;
    }
    this.rip = this.next;
    return undefined;
  }

  private execute0f(op: number): Exit | undefined {
    const R = this.R;
    if (op >= 0x80 && op <= 0x8f) {
      const d = this.imm(4, 8);
      return this.jump(this.fl.cond(op & 0xf) ? this.next + BigInt.asIntN(64, d) : this.next);
    }
    if (op >= 0x90 && op <= 0x9f) { this.modrm(); this.writeRM(1, this.fl.cond(op & 0xf) ? 1n : 0n); this.rip = this.next; return undefined; }
    if (op >= 0x40 && op <= 0x4f) {
      this.modrm();
      const v = this.readRM(this.opsz);
      if (this.fl.cond(op & 0xf)) this.setReg(this.regf, this.opsz, v);
      else if (this.opsz === 4) this.R[this.regf] = this.R[this.regf]! & M32; // a 32-bit cmov zero-extends either way
      this.rip = this.next;
      return undefined;
    }
    if (op >= 0xc8) { // bswap
      const i = (op & 7) | (this.rex & 1 ? 8 : 0);
      let v = this.getReg(i, this.opsz), r = 0n;
      for (let k = 0; k < this.opsz; k++) { r = (r << 8n) | (v & 0xffn); v >>= 8n; }
      this.setReg(i, this.opsz, r);
      this.rip = this.next;
      return undefined;
    }
    switch (op) {
      case 0x00: { // sldt, str, lldt, ltr, verr, verw
        this.modrm();
        const n = this.regf & 7;
        if (n >= 2) this.privileged();
        throw this.unknown();
      }
      case 0x01: return this.group7();
      case 0x05: { // syscall: to LSTAR, staying at the current privilege (as kvm_pvm does)
        if (!(this.sregs.efer & EFER_SCE)) throw new CpuFault(6);
        const next = this.next;
        R[1] = next;
        R[11] = this.rflags() & ~BigInt(RF);
        const fmask = Number((this.msrs.get(MSR.FMASK) ?? 0n) & M32);
        this.fl.bits &= ~(fmask | RF);
        if (this.compat) {
          // From 32-bit code: to CSTAR in 64-bit mode, on the 64-bit code segment of this privilege that
          // STAR names for sysret (STAR[63:48] + 16): the CPL stays, as for a syscall from 64-bit code.
          const sel = (((Number(((this.msrs.get(MSR.STAR) ?? 0n) >> 48n) & 0xffffn) & ~3) + 16) | this.cpl);
          const d = this.codeDescriptor(sel);
          if (!d.l) throw new CpuFault(13, sel & ~3);
          this.sregs.cs = { ...d, selector: sel };
          this.compat = false;
          return this.jump(this.msrs.get(MSR.CSTAR) ?? 0n);
        }
        return this.jump(this.msrs.get(MSR.LSTAR) ?? 0n);
      }
      case 0x34: // sysenter: with IA32_SYSENTER_CS 0 (never set here) #GP(0), as on Intel
        if ((this.msrs.get(0x174) ?? 0n) === 0n) throw new CpuFault(13, 0);
        throw new Unimplemented('sysenter through IA32_SYSENTER_CS');
      case 0x35: this.privileged(); throw this.unknown(); // sysexit
      case 0x06: this.privileged(); this.sregs.cr0 &= ~CR0_TS; break; // clts
      case 0x07: this.privileged(); throw this.unknown(); // sysret
      case 0x0b: throw new CpuFault(6); // ud2
      case 0x0d: case 0x18: case 0x19: case 0x1a: case 0x1b: case 0x1c: case 0x1d: case 0x1e: case 0x1f:
        this.modrm(); // prefetch, hint nops
        break;
      case 0x20: case 0x21: case 0x22: case 0x23: this.privileged(); throw this.unknown();
      case 0x30: case 0x32: this.privileged(); throw this.unknown(); // wrmsr, rdmsr
      case 0x31: { // rdtsc
        if (this.sregs.cr4 & CR4_TSD && this.cpl !== 0) throw new CpuFault(13, 0);
        const t = this.env.tsc();
        R[0] = t & M32;
        R[2] = (t >> 32n) & M32;
        break;
      }
      case 0x33: if (!(this.sregs.cr4 & CR4_PCE) && this.cpl !== 0) throw new CpuFault(13, 0); throw this.unknown();
      case 0xa0: this.push(BigInt(this.sregs.fs.selector), this.ss); break;
      case 0xa8: this.push(BigInt(this.sregs.gs.selector), this.ss); break;
      case 0xa1: case 0xa9: {
        const sp = R[4]!;
        const v = this.pop(this.ss);
        try { this.loadSegment(op === 0xa1 ? 'fs' : 'gs', Number(v & 0xffffn)); } catch (e) { R[4] = sp; throw e; }
        break;
      }
      case 0xa2: { // cpuid
        const [a, b, c, d] = this.env.cpuid(Number(R[0]! & M32), Number(R[1]! & M32));
        R[0] = BigInt(a >>> 0); R[3] = BigInt(b >>> 0); R[1] = BigInt(c >>> 0); R[2] = BigInt(d >>> 0);
        break;
      }
      case 0xa3: case 0xab: case 0xb3: case 0xbb: case 0xba: return this.bitTest(op);
      case 0xa4: case 0xa5: case 0xac: case 0xad: { // shld, shrd
        const size = this.opsz, bits = size * 8;
        this.modrm();
        const count = (op & 1 ? Number(R[1]! & 0xffn) : this.f8()) & (size === 8 ? 63 : 31);
        if (!count && size === 4 && !this.isMem) this.setReg(this.rmReg, 4, this.getReg(this.rmReg, 4)); // as a shift by 0
        if (count) {
          const d = this.readRM(size), s = this.getReg(this.regf, size), m = MASK[size]!, c = BigInt(count);
          let r: bigint, cf: boolean;
          if (op < 0xa8) { r = ((d << c) | (s >> BigInt(bits - count))) & m; cf = ((d >> BigInt(bits - count)) & 1n) !== 0n; }
          else { r = ((d >> c) | (s << BigInt(bits - count))) & m; cf = ((d >> (c - 1n)) & 1n) !== 0n; }
          this.writeRM(size, r);
          const of = ((r ^ d) & SIGN[size]!) !== 0n;
          this.fl.setArith(Flags.szp(r, size) | (cf ? CF : 0) | (of ? OF : 0));
        }
        break;
      }
      case 0xae: { // fences, rd/wr fs/gs base, ldmxcsr, stmxcsr (fxsave and friends are not modelled)
        this.modrm();
        if (!this.isMem && (this.regf & 7) >= 5) break; // lfence, mfence, sfence
        if (this.isMem && ((this.regf & 7) === 2 || (this.regf & 7) === 3) && !this.rep) return this.mxcsr(this.regf & 7);
        if (!this.isMem && this.rep === 0xf3 && (this.regf & 7) <= 3) {
          if (!(this.sregs.cr4 & CR4_FSGSBASE)) throw new CpuFault(6);
          const n = this.regf & 7, seg = n & 1 ? 'gs' : 'fs', size = this.opsz === 8 ? 8 : 4;
          if (n < 2) this.setReg(this.rmReg, size, this.sregs[seg].base & MASK[size]!);
          else {
            const v = this.getReg(this.rmReg, size);
            if (size === 8) this.canonical(v);
            this.sregs[seg] = { ...this.sregs[seg], base: v };
          }
          break;
        }
        if (this.sregs.cr0 & (CR0_TS | CR0_EM)) throw new CpuFault(7);
        throw new Unimplemented('fxsave, fxrstor, xsave and their kin');
      }
      case 0xaf: this.modrm(); this.imulStore(this.regf, this.getReg(this.regf, this.opsz), this.readRM(this.opsz), this.opsz); break;
      case 0xb0: case 0xb1: { // cmpxchg
        const size = this.sz(op);
        this.modrm();
        const d = this.readRM(size), a = this.getReg(0, size);
        this.alu(7, a, d, size);
        if (a === d) this.writeRM(size, this.getReg(this.regf, size));
        // On failure a memory destination is written back (the locked cycle); a register one is left whole.
        else { if (this.isMem) this.writeRM(size, d); this.setReg(0, size, d); }
        break;
      }
      case 0xb6: case 0xb7: case 0xbe: case 0xbf: { // movzx, movsx
        this.modrm();
        const from = op & 1 ? 2 : 1;
        let v = this.readRM(from);
        if (op >= 0xbe) v = BigInt.asIntN(from * 8, v) & MASK[this.opsz]!;
        this.setReg(this.regf, this.opsz, v);
        break;
      }
      case 0xbc: case 0xbd: { // bsf, bsr; with f3: tzcnt, lzcnt
        const size = this.opsz, bits = size * 8;
        this.modrm();
        const v = this.readRM(size);
        if (this.rep === 0xf3) {
          let n = 0;
          if (op === 0xbc) { while (n < bits && !((v >> BigInt(n)) & 1n)) n++; }
          else { while (n < bits && !((v >> BigInt(bits - 1 - n)) & 1n)) n++; }
          this.setReg(this.regf, size, BigInt(n));
          this.fl.setArith((n === bits ? CF : 0) | (n === 0 ? ZF : 0));
        } else {
          if (v === 0n) { this.fl.setArith(ZF); break; }
          let n = op === 0xbc ? 0 : bits - 1;
          if (op === 0xbc) { while (!((v >> BigInt(n)) & 1n)) n++; } else { while (!((v >> BigInt(n)) & 1n)) n--; }
          this.setReg(this.regf, size, BigInt(n));
          this.fl.setArith(0);
        }
        break;
      }
      case 0xc0: case 0xc1: { // xadd
        const size = this.sz(op);
        this.modrm();
        const d = this.readRM(size), s = this.getReg(this.regf, size);
        const r = this.alu(0, d, s, size);
        this.writeRM(size, r);
        this.setReg(this.regf, size, d);
        break;
      }
      case 0xc7: { // cmpxchg8b/16b
        this.modrm();
        if ((this.regf & 7) !== 1 || !this.isMem) throw this.unknown();
        const wide = this.opsz === 8;
        const a = this.ea(), half = wide ? 8 : 4, hm = MASK[half]!;
        if (wide && a & 0xfn) throw new CpuFault(13, 0);
        const lo = this.load(a, half), hi = this.load(a + BigInt(half), half);
        if (lo === (R[0]! & hm) && hi === (R[2]! & hm)) {
          this.store(a, half, R[3]! & hm);
          this.store(a + BigInt(half), half, R[1]! & hm);
          this.fl.setArith(this.fl.materialize() | ZF);
        } else {
          this.store(a, half, lo);
          this.setReg(0, half, lo);
          this.setReg(2, half, hi);
          this.fl.setArith(this.fl.materialize() & ~ZF);
        }
        break;
      }
      case 0xb8: { // popcnt
        if (this.rep !== 0xf3) throw new CpuFault(6);
        this.modrm();
        let v = this.readRM(this.opsz), n = 0n;
        const z = v === 0n;
        while (v) { n += v & 1n; v >>= 1n; }
        this.setReg(this.regf, this.opsz, n);
        this.fl.setArith(z ? ZF : 0);
        break;
      }
      default:
        if ((op >= 0x10 && op <= 0x17) || (op >= 0x28 && op <= 0x2f) || (op >= 0x50 && op <= 0x7f) || (op >= 0xc2 && op <= 0xc6) || op >= 0xd0) return this.sse(op);
        throw this.unknown();
    }
    this.rip = this.next;
    return undefined;
  }

  private bitTest(op: number): Exit | undefined {
    const size = this.opsz, bits = size * 8;
    this.modrm();
    let n: number, kind: number;
    let offset = 0n;
    if (op === 0xba) {
      kind = this.regf & 7;
      if (kind < 4) throw new CpuFault(6);
      n = this.f8() % bits;
    } else {
      kind = op === 0xa3 ? 4 : op === 0xab ? 5 : op === 0xb3 ? 6 : 7;
      const idx = BigInt.asIntN(bits, this.getReg(this.regf, size));
      if (this.isMem) {
        // A register bit offset reaches outside the operand, in whole operands.
        const words = idx >> BigInt(Math.log2(bits));
        offset = words * BigInt(size);
        n = Number(idx - words * BigInt(bits));
      } else {
        n = Number(BigInt.asUintN(bits, idx) % BigInt(bits));
      }
    }
    let v: bigint;
    let addr = 0n;
    if (this.isMem) { addr = u64(this.ea() + offset); v = this.load(addr, size); } else v = this.getReg(this.rmReg, size);
    const bit = 1n << BigInt(n);
    const was = (v & bit) !== 0n;
    let r = v;
    if (kind === 5) r = v | bit; else if (kind === 6) r = v & ~bit; else if (kind === 7) r = v ^ bit;
    if (kind !== 4) { if (this.isMem) this.store(addr, size, r); else this.setReg(this.rmReg, size, r); }
    this.fl.setArith((this.fl.materialize() & ~CF) | (was ? CF : 0));
    this.rip = this.next;
    return undefined;
  }

  private group7(): Exit | undefined {
    const m = this.f8();
    // vmcall, vmmcall: #GP(0) at CPL 3 (the host paravane was built on); the hypervisor recognises them.
    if (m === 0xc1 || m === 0xd9) throw new CpuFault(this.cpl === 0 ? 6 : 13, 0);
    if (m === 0xf9) { // rdtscp
      if (this.sregs.cr4 & CR4_TSD && this.cpl !== 0) throw new CpuFault(13, 0);
      const t = this.env.tsc();
      this.R[0] = t & M32;
      this.R[2] = (t >> 32n) & M32;
      this.R[1] = (this.msrs.get(0xc0000103) ?? 0n) & M32;
      this.rip = this.next;
      return undefined;
    }
    if (m === 0xd0) throw this.unknown(); // xgetbv
    // Everything else in this group is privileged at CPL 3 (sgdt and sidt are not, but UMIP-style hosts refuse them).
    if (m === 0xc8 || m === 0xc9 || m === 0xca || m === 0xcb) throw new CpuFault(6); // monitor, mwait, clac, stac
    const n = (m >> 3) & 7;
    if ((n === 0 || n === 1) && this.cpl === 3) { // sgdt, sidt
      this.cpos--; this.len--;
      this.modrm();
      if (!this.isMem) throw new CpuFault(6);
      const t = n === 0 ? this.sregs.gdt : this.sregs.idt;
      this.store(this.ea(), 2, BigInt(t.limit));
      this.store(this.ea() + 2n, 8, t.base);
      this.rip = this.next;
      return undefined;
    }
    if (n === 4 && this.cpl === 3) { // smsw
      this.cpos--; this.len--;
      this.modrm();
      const v = this.sregs.cr0 & 0xffffn;
      if (this.isMem) this.store(this.ea(), 2, v); else this.setReg(this.rmReg, this.opsz, v);
      this.rip = this.next;
      return undefined;
    }
    this.privileged();
    throw this.unknown();
  }
}

/** An MMIO access (thrown inside step, returned as the exit). */
export class MmioExit {
  constructor(readonly gpa: number, readonly isWrite: boolean, readonly size: number, readonly value: bigint) {}
}

