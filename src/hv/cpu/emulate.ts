// The privileged-instruction emulator: what a PV guest kernel, at CPL 3,
// executes and Xen emulates for it, decoded by iced-x86 (a maintained x86
// decoder, WebAssembly) and done as Xen's PV emulation does it:
//   - CPUID through Xen's forced-emulation prefix (`ud2a; .ascii "xen";
//     cpuid`, a #UD), answered by the PV CPUID policy;
//   - `mov` from and to CR0 (only TS may change: fpu_taskswitch), CR2 (the
//     vCPU's, as vcpu_info.arch.cr2 holds it), CR3 (the current base
//     pointer; a write loads a new one, as MMUEXT_NEW_BASEPTR), CR4 (a
//     virtual copy; writes keep only what a PV kernel may set);
//   - rdmsr and wrmsr of the MSRs Xen lets a PV domU use (the FS, GS and
//     kernel GS bases, EFER read-only, a few read as zero).
// Anything else is not emulated: the guest gets the fault it raised, as
// before. Inputs: the instruction bytes and registers are the guest's
// (hostile); a bad MSR or CR value gets the guest #GP, never a crash.

import { Decoder, DecoderOptions, MemorySize, Mnemonic, OpKind, Register, type Instruction } from 'iced-x86';
import type { GprName, Vcpu } from '../../engine/types.js';
import type { MmContext } from '../hypercalls/context.js';
import { newBasePointer } from '../hypercalls/mmu.js';
import { GuestFault, isCanonical, type GuestMemory } from '../mm/guest-access.js';
import { PageTypeError } from '../mm/page-types.js';
import { M2P_VIRT_START, MSR } from '../mm/xen-space.js';
import type { PvCpuidPolicy } from './cpuid-policy.js';
import type { StoreFrame } from '../mm/ptwr.js';
import type { VcpuDebugRegisters } from './debug-registers.js';
import { fixupGuestCr4 } from './cr4.js';
import type { LegacyPorts } from '../devices/legacy-ports.js';

/** Xen's forced-emulation prefix: ud2a, then "xen". */
const FORCED_PREFIX = [0x0f, 0x0b, 0x78, 0x65, 0x6e];
const CR0_TS = 8n;
const MSR_EFER = 0xc0000080;
/** IA32_BIOS_SIGN_ID: the microcode revision (read as zero: READ_AS_ZERO). */
const MSR_UCODE_REV = 0x8b;
/** MSRs a PV domU reads as zero (Xen: platform and power-management state it does not expose). */
const READ_AS_ZERO = new Set([0x17 /* IA32_PLATFORM_ID */, 0x8b /* IA32_BIOS_SIGN_ID */, 0xce /* PLATFORM_INFO */, 0x140 /* MISC_FEATURES_ENABLES */,
  0x1d9 /* IA32_DEBUGCTL: no branch or LBR tracing for a PV guest; XTF's debug-regs reads it as 0 */]);

const GPRS: Partial<Record<number, GprName>> = {
  [Register.RAX]: 'rax', [Register.RCX]: 'rcx', [Register.RDX]: 'rdx', [Register.RBX]: 'rbx', [Register.RSP]: 'rsp', [Register.RBP]: 'rbp',
  [Register.RSI]: 'rsi', [Register.RDI]: 'rdi', [Register.R8]: 'r8', [Register.R9]: 'r9', [Register.R10]: 'r10', [Register.R11]: 'r11',
  [Register.R12]: 'r12', [Register.R13]: 'r13', [Register.R14]: 'r14', [Register.R15]: 'r15',
};
const CRS: Partial<Record<number, number>> = { [Register.CR0]: 0, [Register.CR2]: 2, [Register.CR3]: 3, [Register.CR4]: 4 };

/** What the emulator works on: the vCPU's registers and its virtual CPU state. */
export interface EmulationTarget {
  readonly engine: Vcpu;
  readonly index: number;
  readonly domid: number;
  readonly cpuid: PvCpuidPolicy;
  /** Memory through the current page tables (the instruction's bytes). */
  readonly guest: GuestMemory;
  readonly userMode: boolean;
  readonly mm: MmContext;
  /** The guest's view of CR2 (vcpu_info.arch.cr2). */
  cr2: bigint;
  /** The guest's virtual CR4. */
  cr4: bigint;
  readonly taskSwitched: boolean;
  setTaskSwitched(on: boolean): void;
  /** The virtual IOPL (0-3), and whether VMASST_TYPE_architectural_iopl is on (the kernel is then vCPL 0, else 1). */
  readonly iopl: number;
  readonly architecturalIopl: boolean;
  /** The event mask, which cli and sti set and clear (the guest's virtual IF). */
  eventsMasked: boolean;
  /** The host cannot map the M2P at Xen's address (L4 slot 256): reads there are completed here. */
  readonly m2pReadsEmulated: boolean;
  /** The vCPU's debug registers (mov to and from DRn). */
  readonly debug: VcpuDebugRegisters;
  /** The domain's I/O ports (in, out). */
  readonly ports: LegacyPorts;
}

/**
 * The outcome: 'done' (the instruction's effect is in the registers and
 * `frame.rip` is past it), or the fault the guest gets instead
 * ({ vector, errorCode }), or undefined: not an instruction the emulator
 * takes (the original fault stands).
 */
export type Emulated = 'done' | { vector: number; errorCode: bigint } | undefined;
const GP0 = { vector: 13, errorCode: 0n } as const;

/** One instruction at `rip`, up to 15 bytes (fewer where the next page is not mapped). */
function fetch(guest: GuestMemory, rip: bigint): Uint8Array | undefined {
  try {
    return guest.read(rip, 15);
  } catch (e) {
    if (!(e instanceof GuestFault)) throw e;
    try { return guest.read(rip, Math.min(15, 4096 - Number(rip & 0xfffn))); } catch { return undefined; }
  }
}

function decode(bytes: Uint8Array, rip: bigint): Instruction | undefined {
  const d = new Decoder(64, bytes, DecoderOptions.None);
  try {
    d.ip = rip;
    const insn = d.decode();
    if (insn.isInvalid) {
      insn.free();
      return undefined;
    }
    return insn;
  } finally {
    d.free();
  }
}

/**
 * Emulates the instruction at `frame.rip` that raised `vector` (6: #UD,
 * for the forced-emulation prefix; 13: #GP(0), for a privileged
 * instruction; 12: #SS(0), which may be the guest's #GP).
 */
export function emulatePrivileged(t: EmulationTarget, vector: number, frame: StoreFrame): Emulated {
  const bytes = fetch(t.guest, frame.rip);
  if (!bytes) return undefined;
  if (vector === 6) {
    // The forced-emulation prefix, then the instruction it forces (only CPUID, as Xen).
    if (!FORCED_PREFIX.every((b, i) => bytes[i] === b)) return undefined;
    const insn = decode(bytes.subarray(FORCED_PREFIX.length), frame.rip + BigInt(FORCED_PREFIX.length));
    if (!insn) return undefined;
    try {
      if (insn.mnemonic !== Mnemonic.Cpuid) return undefined;
      cpuid(t);
      frame.rip += BigInt(FORCED_PREFIX.length + insn.length);
      return 'done';
    } finally {
      insn.free();
    }
  }
  if (vector === 12) return stackFault(bytes, frame.rip);
  if (vector !== 13) return undefined;
  const insn = decode(bytes, frame.rip);
  if (!insn) return undefined;
  try {
    // What the virtual IOPL governs (cli, sti, in, out) is emulated in either mode; the rest in kernel mode only.
    const r = ioplInstruction(t, insn) ?? (t.userMode ? undefined : privileged(t, insn, frame));
    if (r === 'done') frame.rip += BigInt(insn.length);
    return r;
  } finally {
    insn.free();
  }
}

const GPR_ORDER: readonly GprName[] = ['rax', 'rcx', 'rdx', 'rbx', 'rsp', 'rbp', 'rsi', 'rdi', 'r8', 'r9', 'r10', 'r11', 'r12', 'r13', 'r14', 'r15'];

/** A general register operand: its name and width in bits (AH-BH are not taken). */
export function gprOperand(reg: number): { name: GprName; bits: 8 | 16 | 32 | 64 } | undefined {
  if (reg >= Register.RAX && reg <= Register.R15) return { name: GPR_ORDER[reg - Register.RAX]!, bits: 64 };
  if (reg >= Register.EAX && reg <= Register.R15D) return { name: GPR_ORDER[reg - Register.EAX]!, bits: 32 };
  if (reg >= Register.AX && reg <= Register.R15W) return { name: GPR_ORDER[reg - Register.AX]!, bits: 16 };
  if (reg >= Register.AL && reg <= Register.BL) return { name: GPR_ORDER[reg - Register.AL]!, bits: 8 };
  if (reg >= Register.SPL && reg <= Register.R15L) return { name: GPR_ORDER[reg - Register.SPL + 4]!, bits: 8 };
  return undefined;
}

/** Bytes and signedness of a load's memory operand. */
const LOAD_SIZES: Partial<Record<number, { bytes: 1 | 2 | 4 | 8; signed: boolean }>> = {
  [MemorySize.UInt8]: { bytes: 1, signed: false }, [MemorySize.UInt16]: { bytes: 2, signed: false },
  [MemorySize.UInt32]: { bytes: 4, signed: false }, [MemorySize.UInt64]: { bytes: 8, signed: false },
  [MemorySize.Int8]: { bytes: 1, signed: true }, [MemorySize.Int16]: { bytes: 2, signed: true },
  [MemorySize.Int32]: { bytes: 4, signed: true }, [MemorySize.Int64]: { bytes: 8, signed: true },
};

/**
 * A #PF at `cr2` in the M2P at Xen's address, on a host that cannot map L4
 * slot 256 there (kvm_pvm): a load (mov, movzx, movsx, movsxd into a
 * general register) is completed from the M2P and the guest resumes after
 * it, as if the read-only mapping were there; a write, or a load past the
 * M2P's end, gets the #PF a read-only or absent page gives. Undefined: not
 * an access to that range.
 */
export function m2pAccess(t: EmulationTarget, frame: StoreFrame, cr2: bigint, errorCode: bigint): Emulated {
  if (!t.m2pReadsEmulated || cr2 < M2P_VIRT_START || cr2 >= M2P_VIRT_START + (1n << 39n)) return undefined;
  const ft = t.mm.pt.ft;
  const end = BigInt(ft.m2pFrames * 4096);
  const offset = cr2 - M2P_VIRT_START;
  if (errorCode & 2n) return { vector: 14, errorCode: offset < end ? 3n : 2n }; // read-only where it exists, absent beyond
  const bytes = fetch(t.guest, frame.rip);
  const insn = bytes && decode(bytes, frame.rip);
  if (!insn) return undefined;
  try {
    const m = insn.mnemonic;
    if (m !== Mnemonic.Mov && m !== Mnemonic.Movzx && m !== Mnemonic.Movsx && m !== Mnemonic.Movsxd) return undefined;
    if (insn.op1Kind !== OpKind.Memory) return undefined;
    const dst = gprOperand(insn.op0Register);
    const size = LOAD_SIZES[insn.memorySize];
    if (!dst || !size) return undefined;
    if (offset + BigInt(size.bytes) > end) return { vector: 14, errorCode: 0n };
    let v = 0n;
    for (let i = size.bytes - 1; i >= 0; i--) {
      const at = Number(offset) + i;
      v = (v << 8n) | BigInt(ft.bytes(ft.m2pFirst + Math.floor(at / 4096))[at % 4096]!);
    }
    if (size.signed) v = BigInt.asUintN(64, BigInt.asIntN(size.bytes * 8, v));
    const r = t.engine.regs;
    const mask = (1n << BigInt(dst.bits)) - 1n;
    const set = (x: bigint) => { if (dst.name === 'rsp') frame.rsp = x; else r[dst.name] = x; };
    const old = dst.name === 'rsp' ? frame.rsp : r[dst.name];
    // A 32-bit write zero-extends; 8 and 16 bits keep the rest of the register.
    set(dst.bits === 64 ? v : dst.bits === 32 ? v & mask : (old & ~mask) | (v & mask));
    frame.rip += BigInt(insn.length);
    return 'done';
  } finally {
    insn.free();
  }
}

/**
 * A #SS(0) the host raised for a non-canonical address through an explicit
 * %ss override: in 64-bit mode the override is ignored (only rsp- and
 * rbp-based operands use the stack segment), and Xen's guests get #GP(0)
 * for it, as Xen's memop-seg test checks. Undefined: a genuine #SS.
 */
function stackFault(bytes: Uint8Array, rip: bigint): Emulated {
  const insn = decode(bytes, rip);
  if (!insn) return undefined;
  try {
    for (let i = 0; i < insn.opCount; i++) {
      if (insn.opKind(i) !== OpKind.Memory) continue;
      const base = insn.memoryBase;
      return base === Register.RSP || base === Register.RBP ? undefined : { vector: 13, errorCode: 0n };
    }
    return undefined;
  } finally {
    insn.free();
  }
}

/**
 * Whether the virtual IOPL admits the current mode, as Xen's iopl_ok: the
 * guest kernel runs at virtual CPL 1 (0 with architectural IOPL), user
 * mode at 3, and the instruction is allowed when CPL <= IOPL.
 */
function ioplAdmits(t: EmulationTarget): boolean {
  const cpl = t.userMode ? 3 : t.architecturalIopl ? 0 : 1;
  return cpl <= t.iopl;
}

/** The bits of rax an access of 1, 2 or 4 bytes reads or writes. */
const WIDTH_MASK = { 1: 0xffn, 2: 0xffffn, 4: 0xffffffffn } as const;
const ACC: Partial<Record<number, { reg: 'rax'; size: 1 | 2 | 4 }>> = {
  [Register.AL]: { reg: 'rax', size: 1 }, [Register.AX]: { reg: 'rax', size: 2 }, [Register.EAX]: { reg: 'rax', size: 4 },
};

/** The port of an in or out: its immediate, or DX. */
function ioPort(t: EmulationTarget, insn: Instruction, operand: 0 | 1): number | undefined {
  const kind = operand === 0 ? insn.op0Kind : insn.op1Kind;
  if (kind === OpKind.Immediate8) return insn.immediate8;
  return (operand === 0 ? insn.op0Register : insn.op1Register) === Register.DX ? Number(t.engine.regs.rdx & 0xffffn) : undefined;
}

/**
 * cli, sti, and in/out to an immediate or DX port (not the string forms):
 * under the virtual IOPL, cli and sti set and clear the event mask, and
 * ports answer as Xen answers a domain without physical ports
 * (devices/legacy-ports.ts: the PIT's counter 2, the RTC index, PCI's
 * CONFIG_ADDRESS; all else absent hardware); a mode the IOPL does not
 * admit gets #GP(0). Undefined: not one of these.
 */
function ioplInstruction(t: EmulationTarget, insn: Instruction): Emulated {
  const m = insn.mnemonic;
  if (m !== Mnemonic.Cli && m !== Mnemonic.Sti && m !== Mnemonic.In && m !== Mnemonic.Out) return undefined;
  const acc = ACC[m === Mnemonic.In ? insn.op0Register : insn.op1Register];
  const port = m === Mnemonic.In ? ioPort(t, insn, 1) : m === Mnemonic.Out ? ioPort(t, insn, 0) : 0;
  if ((m === Mnemonic.In || m === Mnemonic.Out) && (!acc || port === undefined)) return undefined;
  if (!ioplAdmits(t)) return GP0;
  const r = t.engine.regs;
  switch (m) {
    case Mnemonic.Cli:
      t.eventsMasked = true;
      break;
    case Mnemonic.Sti:
      t.eventsMasked = false; // a pending upcall is delivered as the vCPU resumes
      break;
    case Mnemonic.In: {
      // A 32-bit read zero-extends into rax; 8 and 16 bits keep the rest.
      const mask = WIDTH_MASK[acc!.size];
      const v = BigInt(t.ports.read(port!, acc!.size));
      r.rax = acc!.size === 4 ? v : (r.rax & ~mask) | v;
      break;
    }
    default:
      t.ports.write(port!, acc!.size, Number(r.rax & WIDTH_MASK[acc!.size]));
      break;
  }
  return 'done';
}

function cpuid(t: EmulationTarget): void {
  const r = t.engine.regs;
  const [a, b, c, d] = t.cpuid.cpuid(Number(r.rax & 0xffffffffn), Number(r.rcx & 0xffffffffn), t.index);
  r.rax = BigInt(a >>> 0);
  r.rbx = BigInt(b >>> 0);
  r.rcx = BigInt(c >>> 0);
  r.rdx = BigInt(d >>> 0);
}

function privileged(t: EmulationTarget, insn: Instruction, frame: StoreFrame): Emulated {
  const r = t.engine.regs;
  // The guest's rsp is in the exception frame; the registers hold the ring-0 stack's.
  const get = (g: GprName): bigint => (g === 'rsp' ? frame.rsp : r[g]);
  const set = (g: GprName, v: bigint): void => { if (g === 'rsp') frame.rsp = v; else r[g] = v; };
  switch (insn.mnemonic) {
    case Mnemonic.Mov: {
      const fromCr = CRS[insn.op1Register], toCr = CRS[insn.op0Register];
      if (fromCr !== undefined) {
        const dst = GPRS[insn.op0Register];
        if (!dst) return undefined;
        set(dst, readCr(t, fromCr));
        return 'done';
      }
      if (toCr !== undefined) {
        const src = GPRS[insn.op1Register];
        if (!src) return undefined;
        return writeCr(t, toCr, get(src));
      }
      // Debug registers, as set_debugreg and get_debugreg (an errno there is #GP here).
      if (insn.op1Register >= Register.DR0 && insn.op1Register <= Register.DR7) {
        const dst = GPRS[insn.op0Register];
        const v = t.debug.get(insn.op1Register - Register.DR0);
        if (!dst || v < 0n) return dst ? GP0 : undefined;
        set(dst, v);
        return 'done';
      }
      if (insn.op0Register >= Register.DR0 && insn.op0Register <= Register.DR7) {
        const src = GPRS[insn.op1Register];
        if (!src) return undefined;
        return t.debug.set(insn.op0Register - Register.DR0, get(src)) === 0n ? 'done' : GP0;
      }
      return undefined;
    }
    case Mnemonic.Rdmsr: {
      const v = readMsr(t, Number(r.rcx & 0xffffffffn));
      if (v === undefined) return GP0;
      r.rax = v & 0xffffffffn;
      r.rdx = v >> 32n;
      return 'done';
    }
    case Mnemonic.Wrmsr:
      return writeMsr(t, Number(r.rcx & 0xffffffffn), ((r.rdx & 0xffffffffn) << 32n) | (r.rax & 0xffffffffn));
    case Mnemonic.Cpuid:
      cpuid(t);
      return 'done';
    default:
      return undefined;
  }
}

/** mov from CRn, as Xen's PV read_cr. */
function readCr(t: EmulationTarget, n: number): bigint {
  switch (n) {
    case 0: {
      const cr0 = t.engine.getSpecialRegisters().cr0;
      return t.taskSwitched ? cr0 | CR0_TS : cr0 & ~CR0_TS;
    }
    case 2:
      return t.cr2;
    case 3:
      return BigInt(t.userMode ? t.mm.userCr3 : t.mm.cr3) << 12n;
    default:
      return t.cr4;
  }
}

/** mov to CRn, as Xen's PV write_cr: CR0 only its TS bit, CR3 a new base pointer, CR4 the guest's bits. */
function writeCr(t: EmulationTarget, n: number, v: bigint): Emulated {
  switch (n) {
    case 0: {
      const now = readCr(t, 0);
      if ((v ^ now) & ~CR0_TS) return GP0; // Xen: only TS may change
      t.setTaskSwitched((v & CR0_TS) !== 0n);
      return 'done';
    }
    case 2:
      t.cr2 = v;
      return 'done';
    case 3:
      // A new kernel base pointer, as MMUEXT_NEW_BASEPTR: a validated L4 of the domain, or #GP.
      if (v >> 12n >= BigInt(t.mm.pt.ft.count)) return GP0;
      try {
        newBasePointer(t.mm, t.domid, Number(v >> 12n), false);
      } catch (e) {
        if (e instanceof PageTypeError) return GP0;
        throw e;
      }
      return 'done';
    default:
      t.cr4 = fixupGuestCr4(v, t.cpuid.fsgsbase); // never a fault: bits the guest may not choose are dropped, as Xen drops them
      return 'done';
  }
}

/** rdmsr: the value, or undefined for #GP. */
function readMsr(t: EmulationTarget, msr: number): bigint | undefined {
  switch (msr) {
    case MSR.FS_BASE:
    case MSR.GS_BASE:
    case MSR.KERNEL_GS_BASE:
      return t.engine.getMsrs([msr])[0]!;
    case MSR_EFER:
      // The guest sees long mode, syscall and NX: what a 64-bit PV vCPU runs with.
      return 0x1n | 0x100n | 0x400n | 0x800n; // SCE | LME | LMA | NXE
    default:
      return READ_AS_ZERO.has(msr) ? 0n : undefined;
  }
}

/** wrmsr: FS, GS and kernel GS bases (canonical, else #GP); EFER unchanged only; 0 to the microcode revision on Intel; the rest #GP. */
function writeMsr(t: EmulationTarget, msr: number, v: bigint): Emulated {
  switch (msr) {
    case MSR.FS_BASE:
    case MSR.GS_BASE:
    case MSR.KERNEL_GS_BASE:
      if (!isCanonical(v)) return GP0;
      t.engine.setMsrs([[msr, v]]);
      return 'done';
    case MSR_EFER:
      return v === readMsr(t, MSR_EFER) ? 'done' : GP0;
    case MSR_UCODE_REV:
      // As Xen: on Intel a write of 0 is the architectural step before reading the microcode
      // revision (Linux's early_init_intel does it), taken and ignored; anything else is #GP.
      return v === 0n && t.cpuid.intel ? 'done' : GP0;
    default:
      return GP0;
  }
}
