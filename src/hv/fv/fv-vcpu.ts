// The virtual CPU of fv-trap mode: a plain kernel, written for CPL 0, runs
// at CPL 3 and every privileged instruction it executes faults into the
// monitor, which does what the instruction would have done to a virtual
// CPU state kept here (classic trap-and-emulate, no binary translation):
//   - the virtual CPL (0 or 3), interrupt flag, CR0, CR2, CR3, CR4, EFER,
//     GDTR, IDTR, task register, segment selectors and the syscall MSRs;
//   - cli, sti, hlt, in, out, mov to and from CR0/2/3/4/8, lgdt, lidt, ltr,
//     mov to a segment register, invlpg, rdmsr, wrmsr, iretq, sysretq and
//     `int n`, decoded by iced-x86 as the PV emulator decodes;
//   - exceptions and interrupts delivered through the guest's own IDT, as
//     the CPU would: the TSS's rsp0 or IST stack on a change to CPL 0, the
//     five-word frame (and error code), IF cleared by an interrupt gate;
//   - `syscall` from virtual user mode to the guest's LSTAR.
// Known holes, as in every trap-and-emulate monitor on x86 without
// binary translation (Popek and Goldberg's sensitive but unprivileged
// instructions): pushf shows the real IF (always set) and popf cannot
// change it, `mov` from a segment register shows the monitor's selector,
// cpuid and rdtsc run unmodified. The kit's kernels do not depend on them.
// Inputs: the guest's registers, memory and tables (hostile): a state the
// monitor cannot continue from crashes the domain with the reason.

import { Decoder, DecoderOptions, Mnemonic, OpKind, Register, type Instruction } from 'iced-x86';
import type { Vcpu } from '../../engine/types.js';
import { hex } from '../format.js';
import { MSR } from '../mm/xen-space.js';
import { gprOperand } from '../cpu/emulate.js';
import type { PcPlatform } from './pc.js';
import type { ShadowTables, WalkMode } from './shadow.js';

/** Where the interrupted guest's rip, rflags and rsp are: an exception frame, or the registers. */
export interface GuestFrame {
  rip: bigint;
  rflags: bigint;
  rsp: bigint;
}

export class FvFault extends Error {}

const MSR_EFER = 0xc0000080;
const EFER_SCE = 1n, EFER_LME = 0x100n, EFER_LMA = 0x400n, EFER_NXE = 0x800n;
const CR0_WP = 1n << 16n, CR0_PG = 1n << 31n, CR0_PE = 1n;
const IF = 0x200n, TF = 0x100n, NT = 0x4000n, RF = 0x10000n, IOPL = 0x3000n, VM = 0x20000n;
/** RFLAGS bits an iret or sysret may set in the real register (not IF, IOPL, VM: the monitor's). */
const GUEST_FLAGS = 0x3f7fd5n & ~(IF | IOPL | VM);
const ERROR_CODE_VECTORS = new Set([8, 10, 11, 12, 13, 14, 17, 21, 29, 30]);
const SREGS: Partial<Record<number, 'es' | 'ss' | 'ds' | 'fs' | 'gs'>> = {
  [Register.ES]: 'es', [Register.SS]: 'ss', [Register.DS]: 'ds', [Register.FS]: 'fs', [Register.GS]: 'gs',
};

/** What an emulated instruction did: completed, a fault for the guest, or not one the monitor takes. */
type Outcome = 'done' | 'halt' | 'delivered' | { vector: number; errorCode: bigint } | undefined;

export class FvVcpu {
  cpl: 0 | 3 = 0;
  vif = false;
  cr0 = CR0_PG | CR0_WP | CR0_PE | 0x10n | 0x20n;
  cr2 = 0n;
  cr3: bigint;
  cr4 = 0x20n; // PAE
  efer = EFER_LME | EFER_LMA;
  /** CR8, the task priority: interrupts of priority class (vector >> 4) at or below it are held. */
  tpr = 0;
  gdt = { base: 0n, limit: 0 };
  idt = { base: 0n, limit: 0 };
  tr = 0;
  readonly sel = { cs: 0x08, ss: 0x10, ds: 0x10, es: 0x10, fs: 0, gs: 0 };
  star = 0n;
  lstar = 0n;
  cstar = 0n;
  fmask = 0n;
  /** An `sti` just ran: no interrupt until the next instruction has (here: until the next trap). */
  stiShadow = false;
  /** Instructions emulated, by mnemonic name (for --stats). */
  readonly emulated = new Map<string, number>();

  constructor(
    readonly engine: Vcpu, private readonly shadow: ShadowTables, private readonly pc: PcPlatform,
    /** Loads the shadow root for the current CR3 and mode into the engine. */
    private readonly loadRoot: () => void,
    /** Drops the engine's cached translations of one page (invlpg). */
    private readonly invalidate: () => void,
    cr3: bigint,
  ) {
    this.cr3 = cr3;
  }

  get walkMode(): WalkMode {
    return { cr3: this.cr3, wp: (this.cr0 & CR0_WP) !== 0n, nxe: (this.efer & EFER_NXE) !== 0n };
  }

  /** Guest-virtual memory as the virtual CPU at CPL 0 sees it: `len` bytes at `va`, or a fault. */
  read(va: bigint, len: number, user = false): Uint8Array {
    const out = new Uint8Array(len);
    this.copy(va, len, false, user, (phys, at, n) => out.set(phys.subarray(0, n), at));
    return out;
  }

  write(va: bigint, bytes: Uint8Array, user = false): void {
    this.copy(va, bytes.length, true, user, (phys, at, n) => phys.set(bytes.subarray(at, at + n)), (gpfn, off, n) => {
      if (!this.shadow.isTable(gpfn)) return;
      for (let i = off >> 3; i <= (off + n - 1) >> 3; i++) this.shadow.entryWritten(gpfn, i);
    });
  }

  readU64(va: bigint): bigint {
    const b = this.read(va, 8);
    return new DataView(b.buffer).getBigUint64(0, true);
  }

  private copy(va: bigint, len: number, write: boolean, user: boolean, each: (page: Uint8Array, at: number, n: number) => void,
    after?: (gpfn: number, off: number, n: number) => void): void {
    let done = 0;
    while (done < len) {
      const at = BigInt.asUintN(64, va + BigInt(done));
      const off = Number(at & 0xfffn);
      const n = Math.min(len - done, 4096 - off);
      const t = this.shadow.walk(at, { write, user, fetch: false }, this.walkMode);
      if ('fault' in t) throw new GuestPageFault(at, t.fault);
      if ('outside' in t) throw new FvFault(`the guest's page tables lead outside its memory (guest-physical ${hex(t.outside)})`);
      const mfn = this.shadow.ram.mfn(t.gpfn);
      if (mfn === undefined) throw new FvFault(`guest-physical ${hex(BigInt(t.gpfn) << 12n)} is outside the guest's memory`);
      each(this.shadow.ram.ft.bytes(mfn).subarray(off), done, n);
      after?.(t.gpfn, off, n);
      done += n;
    }
  }

  /** The guest rflags as the virtual CPU has them: the real ones with the virtual IF. */
  virtualFlags(real: bigint): bigint {
    return (real & ~(IF | IOPL)) | (this.vif ? IF : 0n);
  }

  /**
   * Delivers `vector` through the guest's IDT to the state in `f` (which
   * it replaces): `errorCode` for the exceptions that push one, `soft` for
   * `int n` (the gate's DPL is checked against the CPL).
   */
  deliver(f: GuestFrame, vector: number, errorCode?: bigint, soft = false): void {
    if (vector * 16 + 15 > this.idt.limit) throw new FvFault(`vector ${vector} is past the guest's IDT (limit ${this.idt.limit}): a triple fault`);
    let lo: bigint, hi: bigint;
    try {
      lo = this.readU64(this.idt.base + BigInt(vector * 16));
      hi = this.readU64(this.idt.base + BigInt(vector * 16 + 8));
    } catch (e) {
      if (e instanceof GuestPageFault) throw new FvFault(`the guest's IDT at ${hex(this.idt.base)} is not mapped: a triple fault`);
      throw e;
    }
    const type = Number((lo >> 40n) & 0xfn), dpl = Number((lo >> 45n) & 3n), present = (lo >> 47n) & 1n;
    if (!present || (type !== 0xe && type !== 0xf)) throw new FvFault(`vector ${vector} has no gate in the guest's IDT: a triple fault`);
    if (soft && dpl < this.cpl) return this.deliver(f, 13, BigInt((vector << 3) | 2));
    const target = (lo & 0xffffn) | (((lo >> 48n) & 0xffffn) << 16n) | ((hi & 0xffffffffn) << 32n);
    const selector = Number((lo >> 16n) & 0xffffn);
    const ist = Number((lo >> 32n) & 7n);
    const from = { rip: f.rip, rsp: f.rsp, rflags: this.virtualFlags(f.rflags), cs: this.sel.cs, ss: this.sel.ss };
    let rsp = f.rsp;
    if (ist) rsp = this.tssStack(FvVcpu.istOffset(ist));
    else if (this.cpl === 3) rsp = this.tssStack(4);
    rsp &= ~0xfn;
    const words = [BigInt(from.ss), from.rsp, from.rflags, BigInt(from.cs), from.rip];
    if (errorCode !== undefined) words.push(errorCode);
    const frame = new Uint8Array(8 * words.length);
    const view = new DataView(frame.buffer);
    words.forEach((w, i) => view.setBigUint64(8 * (words.length - 1 - i), BigInt.asUintN(64, w), true));
    rsp -= BigInt(frame.length);
    try {
      this.write(rsp, frame);
    } catch (e) {
      if (e instanceof GuestPageFault) throw new FvFault(`the guest's stack at ${hex(rsp)} is not mapped for vector ${vector}: a double fault`);
      throw e;
    }
    if (this.cpl === 3) this.sel.ss = 0;
    this.sel.cs = selector;
    const wasUser = this.cpl === 3;
    this.cpl = 0;
    if (type === 0xe) this.vif = false;
    f.rip = target;
    f.rsp = rsp;
    f.rflags &= ~(TF | NT | RF);
    if (wasUser) this.loadRoot();
  }

  /** A stack pointer from the guest's TSS: rsp0 at offset 4, IST n at 0x24 + 8 (n - 1). */
  private tssStack(offset: number): bigint {
    const index = this.tr >> 3;
    if (!this.tr || index * 8 + 15 > this.gdt.limit) throw new FvFault('an interrupt from user mode with no task register loaded: a triple fault');
    const lo = this.readU64(this.gdt.base + BigInt(index * 8)), hi = this.readU64(this.gdt.base + BigInt(index * 8 + 8));
    const base = ((lo >> 16n) & 0xffffffn) | (((lo >> 56n) & 0xffn) << 24n) | ((hi & 0xffffffffn) << 32n);
    return this.readU64(base + BigInt(offset));
  }

  /** The IST offset in the TSS for stack n (1-7): 0x24 + 8 (n - 1). */
  static istOffset(n: number): number {
    return 0x24 + 8 * (n - 1);
  }

  /**
   * `syscall` from the guest (the engine's LSTAR stub exited): rcx and r11
   * hold the return rip and the real rflags. Virtual user mode goes to the
   * guest's LSTAR at CPL 0 with its FMASK applied; false: EFER.SCE is off (#UD).
   */
  syscall(): boolean {
    if (!(this.efer & EFER_SCE)) return false;
    const r = this.engine.regs;
    r.r11 = this.virtualFlags(r.r11);
    const wasUser = this.cpl === 3;
    this.cpl = 0;
    this.sel.cs = Number((this.star >> 32n) & 0xfffcn);
    this.sel.ss = this.sel.cs + 8;
    if (this.fmask & IF) this.vif = false;
    r.rflags &= ~(this.fmask & ~IF);
    r.rip = this.lstar;
    if (wasUser) this.loadRoot();
    this.count('syscall');
    return true;
  }

  private count(what: string): void {
    this.emulated.set(what, (this.emulated.get(what) ?? 0) + 1);
  }

  /**
   * The instruction at f.rip raised #GP(errorCode) at CPL 3. Emulates it
   * if the virtual CPU may execute it, else says which fault the guest gets.
   */
  emulate(f: GuestFrame, errorCode: bigint): Outcome {
    let bytes: Uint8Array;
    try {
      bytes = this.read(f.rip, 15);
    } catch (e) {
      if (!(e instanceof GuestPageFault)) throw e;
      bytes = this.read(f.rip, 4096 - Number(f.rip & 0xfffn));
    }
    const d = new Decoder(64, bytes, DecoderOptions.None);
    d.ip = f.rip;
    const insn = d.decode();
    d.free();
    try {
      if (insn.isInvalid) return undefined;
      const r = this.execute(insn, f, errorCode);
      if (r === 'done' || r === 'halt') f.rip = insn.nextIP;
      if (r === 'done' || r === 'halt' || r === 'delivered') this.count(Mnemonic[insn.mnemonic] ?? String(insn.mnemonic));
      return r;
    } finally {
      insn.free();
    }
  }

  private execute(insn: Instruction, f: GuestFrame, errorCode: bigint): Outcome {
    const r = this.engine.regs;
    const m = insn.mnemonic;
    // `int n` and int3 through the monitor's DPL-0 gates: #GP((n << 3) | 2).
    if ((m === Mnemonic.Int || m === Mnemonic.Int3) && errorCode === BigInt(((m === Mnemonic.Int3 ? 3 : insn.immediate8) << 3) | 2)) {
      const n = m === Mnemonic.Int3 ? 3 : insn.immediate8;
      f.rip = insn.nextIP;
      this.deliver(f, n, undefined, true);
      return 'delivered';
    }
    if (m === Mnemonic.Iretq && this.cpl === 0) return this.iretq(f);
    if (this.cpl !== 0) return undefined; // the rest is CPL 0's alone: the guest's user mode gets its #GP
    const GP0 = { vector: 13, errorCode: 0n };
    switch (m) {
      case Mnemonic.Cli:
        this.vif = false;
        return 'done';
      case Mnemonic.Sti:
        if (!this.vif) this.stiShadow = true;
        this.vif = true;
        return 'done';
      case Mnemonic.Hlt:
        return 'halt';
      case Mnemonic.In:
      case Mnemonic.Out:
        return this.io(insn);
      case Mnemonic.Mov: {
        const toSeg = SREGS[insn.op0Register];
        if (toSeg) {
          const src = gprOperand(insn.op1Register);
          if (!src) return undefined;
          this.sel[toSeg] = Number(r[src.name] & 0xffffn);
          return 'done';
        }
        const crFrom = crNumber(insn.op1Register), crTo = crNumber(insn.op0Register);
        if (crFrom !== undefined) {
          const dst = gprOperand(insn.op0Register);
          if (!dst) return undefined;
          const v = crFrom === 0 ? this.cr0 : crFrom === 2 ? this.cr2 : crFrom === 3 ? this.cr3 : crFrom === 8 ? BigInt(this.tpr) : this.cr4;
          if (dst.name === 'rsp') f.rsp = v; else r[dst.name] = v;
          return 'done';
        }
        if (crTo !== undefined) {
          const src = gprOperand(insn.op1Register);
          if (!src) return undefined;
          return this.writeCr(crTo, src.name === 'rsp' ? f.rsp : r[src.name]);
        }
        return undefined;
      }
      case Mnemonic.Lgdt:
      case Mnemonic.Lidt: {
        const at = this.address(insn, f);
        const b = this.read(at, 10);
        const v = new DataView(b.buffer);
        const table = { limit: v.getUint16(0, true), base: v.getBigUint64(2, true) };
        if (m === Mnemonic.Lgdt) this.gdt = table; else this.idt = table;
        return 'done';
      }
      case Mnemonic.Ltr: {
        const src = insn.op0Kind === OpKind.Register ? gprOperand(insn.op0Register) : undefined;
        if (!src) return undefined;
        this.tr = Number(r[src.name] & 0xffffn);
        return 'done';
      }
      case Mnemonic.Invlpg:
        this.invalidate();
        return 'done';
      case Mnemonic.Rdmsr: {
        const v = this.readMsr(Number(r.rcx & 0xffffffffn));
        if (v === undefined) return GP0;
        r.rax = v & 0xffffffffn;
        r.rdx = v >> 32n;
        return 'done';
      }
      case Mnemonic.Wrmsr:
        return this.writeMsr(Number(r.rcx & 0xffffffffn), ((r.rdx & 0xffffffffn) << 32n) | (r.rax & 0xffffffffn)) ? 'done' : GP0;
      case Mnemonic.Sysretq: {
        if (!(this.efer & EFER_SCE)) return { vector: 6, errorCode: -1n };
        const base = Number((this.star >> 48n) & 0xfffcn);
        this.sel.cs = (base + 16) | 3;
        this.sel.ss = (base + 8) | 3;
        this.cpl = 3;
        this.vif = (r.r11 & IF) !== 0n;
        f.rip = r.rcx;
        f.rflags = (r.r11 & GUEST_FLAGS) | IF | 2n;
        this.loadRoot();
        return 'delivered';
      }
      case Mnemonic.Wbinvd:
      case Mnemonic.Invd:
      case Mnemonic.Clts:
        return 'done';
      default:
        return undefined;
    }
  }

  /** iretq at virtual CPL 0: the five-word frame at rsp. */
  private iretq(f: GuestFrame): Outcome {
    const b = this.read(f.rsp, 40);
    const v = new DataView(b.buffer);
    const [rip, cs, rflags, rsp, ss] = [0, 1, 2, 3, 4].map((i) => v.getBigUint64(8 * i, true)) as [bigint, bigint, bigint, bigint, bigint];
    const rpl = Number(cs & 3n);
    if (rpl !== 0 && rpl !== 3) throw new FvFault(`iretq to ring ${rpl}: fv-trap runs rings 0 and 3 only`);
    this.sel.cs = Number(cs & 0xffffn);
    this.sel.ss = Number(ss & 0xffffn);
    this.vif = (rflags & IF) !== 0n;
    f.rip = rip;
    f.rsp = rsp;
    f.rflags = (rflags & GUEST_FLAGS) | IF | 2n;
    const changed = rpl !== this.cpl;
    this.cpl = rpl as 0 | 3;
    if (changed) this.loadRoot();
    return 'delivered';
  }

  private address(insn: Instruction, f: GuestFrame): bigint {
    const r = this.engine.regs;
    const val = (reg: number): bigint => {
      if (reg === Register.None || reg === Register.RIP) return 0n;
      const g = gprOperand(reg);
      if (!g || g.bits !== 64) throw new FvFault(`an address with register ${reg} is not emulated`);
      return g.name === 'rsp' ? f.rsp : r[g.name];
    };
    return BigInt.asUintN(64, insn.memoryDisplacementU64 + val(insn.memoryBase) + val(insn.memoryIndex) * BigInt(insn.memoryIndexScale));
  }

  private io(insn: Instruction): Outcome {
    const r = this.engine.regs;
    const isIn = insn.mnemonic === Mnemonic.In;
    const accReg = isIn ? insn.op0Register : insn.op1Register;
    const size = accReg === Register.AL ? 1 : accReg === Register.AX ? 2 : accReg === Register.EAX ? 4 : 0;
    if (!size) return undefined;
    const portOp = isIn ? insn.op1Kind : insn.op0Kind;
    const port = portOp === OpKind.Immediate8 ? insn.immediate8 : Number(r.rdx & 0xffffn);
    const mask = size === 1 ? 0xffn : size === 2 ? 0xffffn : 0xffffffffn;
    if (isIn) {
      const v = BigInt(this.pc.read(port, size));
      r.rax = size === 4 ? v : (r.rax & ~mask) | v;
    } else {
      this.pc.write(port, size, Number(r.rax & mask));
    }
    return 'done';
  }

  private writeCr(n: number, v: bigint): Outcome {
    const GP0 = { vector: 13, errorCode: 0n };
    switch (n) {
      case 0:
        if (!(v & CR0_PG) || !(v & CR0_PE)) throw new FvFault('the kernel turned paging off: fv-trap runs long mode only');
        this.cr0 = v;
        return 'done';
      case 2:
        this.cr2 = v;
        return 'done';
      case 3:
        this.cr3 = v & 0x000ffffffffff000n;
        this.loadRoot();
        return 'done';
      case 4:
        if (!(v & 0x20n)) return GP0; // PAE cannot go off in long mode
        this.cr4 = v;
        return 'done';
      case 8:
        if (v > 15n) return GP0; // reserved bits
        this.tpr = Number(v);
        return 'done';
      default:
        return undefined;
    }
  }

  private readMsr(msr: number): bigint | undefined {
    switch (msr) {
      case MSR_EFER: return this.efer;
      case MSR.STAR: return this.star;
      case MSR.LSTAR: return this.lstar;
      case MSR.CSTAR: return this.cstar;
      case MSR.FMASK: return this.fmask;
      case MSR.FS_BASE: case MSR.GS_BASE: case MSR.KERNEL_GS_BASE: return this.engine.getMsrs([msr])[0]!;
      default: return undefined;
    }
  }

  private writeMsr(msr: number, v: bigint): boolean {
    switch (msr) {
      case MSR_EFER:
        if ((v & ~(EFER_SCE | EFER_LME | EFER_LMA | EFER_NXE)) !== 0n || !(v & EFER_LME)) return false;
        this.efer = v | EFER_LMA;
        return true;
      case MSR.STAR: this.star = v; return true;
      case MSR.LSTAR: this.lstar = v; return true;
      case MSR.CSTAR: this.cstar = v; return true;
      case MSR.FMASK: this.fmask = v & 0xffffffffn; return true;
      case MSR.FS_BASE: case MSR.GS_BASE: case MSR.KERNEL_GS_BASE:
        this.engine.setMsrs([[msr, v]]);
        return true;
      default:
        return false;
    }
  }

  /** Whether `vector` pushes an error code. */
  static hasErrorCode(vector: number): boolean {
    return ERROR_CODE_VECTORS.has(vector);
  }
}

/** A guest-virtual access the guest's own tables refuse: the guest gets #PF(code) at `va`. */
export class GuestPageFault extends Error {
  constructor(readonly va: bigint, readonly code: number) {
    super(`page fault at ${hex(va)}`);
  }
}

function crNumber(reg: number): number | undefined {
  switch (reg) {
    case Register.CR0: return 0;
    case Register.CR2: return 2;
    case Register.CR3: return 3;
    case Register.CR4: return 4;
    case Register.CR8: return 8;
    default: return undefined;
  }
}
