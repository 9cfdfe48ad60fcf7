// Writable page tables, as Xen offers them to PV guests: a guest-kernel
// store that faults on a read-only mapping of one of its own L1 tables is
// emulated as a validated update of that entry. This file is the pure part:
// it decodes the instruction, checks that it is the access that faulted, and
// computes the entry, registers and flags after it; vcpu.ts (emulatePtWrite)
// walks the tables, applies the entry with modEntry and writes the rest
// back. Inputs: the guest's instruction bytes and registers (hostile).
//
// NOTES
//  1. Forms emulated (what kernels use on page-table entries), any operand
//     size the form has: MOV r->m (88, 89) and imm->m (C6 /0, C7 /0); XCHG
//     (86, 87); CMPXCHG (0F B0, 0F B1); AND and OR r->m (20, 21, 08, 09) and
//     imm->m (80, 81, 83 with /4 and /1); BTS, BTR, BTC with a register bit
//     offset (0F AB, 0F B3, 0F BB) or an immediate one (0F BA /5 /6 /7).
//     LOCK is accepted wherever the CPU accepts it (all but MOV).
//  2. Operand size: 1 for the byte opcodes; else 8 with REX.W, 2 with 66,
//     4 otherwise. A 4-byte register result zero-extends into the whole
//     register, a 1- or 2-byte one keeps the rest, as the CPU does. Byte
//     registers 4-7 are ah, ch, dh, bh without a REX prefix and spl, bpl,
//     sil, dil with one (any REX, even 40). A REX prefix followed by another
//     prefix is ignored, as the CPU ignores it.
//  3. Immediates: imm8 of the byte forms as is; imm16/imm32 (81, C7) of the
//     operand size, imm32 sign-extended to 64 with REX.W; 83's imm8
//     sign-extended to the operand size; 0F BA's bit number modulo the
//     operand width.
//  4. Flags: CMPXCHG sets CF, PF, AF, ZF, SF, OF as CMP acc, old does. AND
//     and OR set SF, ZF, PF from the result and clear CF and OF; AF, which
//     the CPU leaves undefined, is cleared. BTS/BTR/BTC set CF to the old
//     bit and leave every other flag as it was (OF, SF, AF, PF are
//     undefined on the CPU, ZF unchanged). MOV and XCHG change no flag.
//  5. The access must be the one that faulted: the effective address
//     (base + index * scale + disp, or RIP-relative from the next
//     instruction) must equal cr2. For BTS/BTR/BTC the CPU may access less
//     than the operand around the addressed bit, and a register bit offset
//     is signed and may reach outside the operand, so there the rule is that
//     the operand-size word holding the bit lies in the faulting 8-byte
//     entry.
//  6. The write stays in one entry: the operand must be naturally aligned
//     (so it lies in one 8-byte entry); its bytes are merged into the old
//     entry and the whole entry goes to modEntry. A CMPXCHG that fails
//     writes nothing (the CPU writes the old value back).
//  7. Refused (not emulated; the fault stands): FS and GS overrides (64,
//     65); the other segment overrides (26, 2E, 36, 3E) are ignored, as the
//     CPU does in 64-bit mode; 32-bit addresses (67); REP, XACQUIRE and
//     XRELEASE (F2, F3); LOCK MOV (#UD on the CPU); a register operand;
//     every other opcode (BT itself writes nothing); an instruction that does
//     not fit in the bytes given (truncated, or over 15 bytes); an address
//     that is not cr2 (5) or an operand that is not aligned (6).

import { ARITH, RFLAGS } from '../cpu/rflags.js';
import { hex } from '../format.js';

/** The general registers in ModRM order (rax, rcx, rdx, rbx, rsp, rbp, rsi, rdi, r8-r15). */
export const MODRM_REGS = ['rax', 'rcx', 'rdx', 'rbx', 'rsp', 'rbp', 'rsi', 'rdi', 'r8', 'r9', 'r10', 'r11', 'r12', 'r13', 'r14', 'r15'] as const;
export type ModrmReg = (typeof MODRM_REGS)[number];

/** Reads a guest register, all 64 bits (rsp as the guest had it when it faulted). */
export type RegisterGetter = (r: ModrmReg) => bigint;

/** What the instruction does to its memory operand. */
export type PtOp = 'mov' | 'xchg' | 'cmpxchg' | 'and' | 'or' | 'bts' | 'btr' | 'btc';

export type OperandSize = 1 | 2 | 4 | 8;

/** A register operand: the low `size` bytes of `reg`, or its bits 8-15 (ah, ch, dh, bh) when `high`. */
export interface RegOperand {
  reg: ModrmReg;
  high: boolean;
}

/** The memory operand: base + index * scale + disp, or the next instruction's address + disp. */
export interface MemOperand {
  base?: ModrmReg;
  index?: ModrmReg;
  scale: 1 | 2 | 4 | 8;
  /** The displacement, sign-extended. */
  disp: bigint;
  ripRelative: boolean;
}

/** A decoded store to memory. */
export interface PtInsn {
  op: PtOp;
  size: OperandSize;
  /** Instruction length, to resume after it. */
  length: number;
  lock: boolean;
  mem: MemOperand;
  /** The source register; for bts/btr/btc, the register holding the (signed) bit offset. */
  reg?: RegOperand;
  /** The immediate, sign-extended as the CPU does and truncated to the operand size; for bts/btr/btc, the bit number. */
  imm?: bigint;
}

/** What the emulated instruction does. */
export interface PtStoreEffect {
  /** The whole 8-byte entry after the store, or undefined when memory keeps its value (a CMPXCHG that failed). */
  entry: bigint | undefined;
  /** Registers the instruction writes, whole 64-bit values. */
  regs: Array<[ModrmReg, bigint]>;
  /** RFLAGS after the instruction. */
  rflags: bigint;
  /** Instruction length. */
  length: number;
}

/** Everything the emulation reads. */
export interface PtStoreInput {
  /** The instruction's bytes: up to 15, fewer when the next page is not mapped. */
  code: Uint8Array;
  /** The instruction's address. */
  rip: bigint;
  /** The faulting address (cr2). */
  cr2: bigint;
  reg: RegisterGetter;
  /** The naturally aligned 8-byte entry cr2 lies in, before the store. */
  old: bigint;
  rflags: bigint;
}

const MAX_LENGTH = 15;
const RAX: RegOperand = { reg: 'rax', high: false };
const mask = (size: OperandSize): bigint => (1n << BigInt(size * 8)) - 1n;

/** The instruction ran past the bytes given (internal to decodePtStore). */
class Truncated extends Error {}

/** Where each supported opcode's source comes from. */
type Source = 'reg' | 'imm8' | 'immz' | 'imm8s' | 'bitreg' | 'bitimm';
interface Form {
  op: PtOp;
  byte: boolean;
  src: Source;
}
const form = (op: PtOp, byte: boolean, src: Source): Form => ({ op, byte, src });

/** One-byte opcodes with the operation in the opcode; group opcodes take it from ModRM.reg. */
const ONE_BYTE: Record<number, Form | Record<number, Form>> = {
  0x88: form('mov', true, 'reg'), 0x89: form('mov', false, 'reg'),
  0x86: form('xchg', true, 'reg'), 0x87: form('xchg', false, 'reg'),
  0x08: form('or', true, 'reg'), 0x09: form('or', false, 'reg'),
  0x20: form('and', true, 'reg'), 0x21: form('and', false, 'reg'),
  0xc6: { 0: form('mov', true, 'imm8') },
  0xc7: { 0: form('mov', false, 'immz') },
  0x80: { 1: form('or', true, 'imm8'), 4: form('and', true, 'imm8') },
  0x81: { 1: form('or', false, 'immz'), 4: form('and', false, 'immz') },
  0x83: { 1: form('or', false, 'imm8s'), 4: form('and', false, 'imm8s') },
};
/** Opcodes after 0F. */
const TWO_BYTE: Record<number, Form | Record<number, Form>> = {
  0xb0: form('cmpxchg', true, 'reg'), 0xb1: form('cmpxchg', false, 'reg'),
  0xab: form('bts', false, 'bitreg'), 0xb3: form('btr', false, 'bitreg'), 0xbb: form('btc', false, 'bitreg'),
  0xba: { 5: form('bts', false, 'bitimm'), 6: form('btr', false, 'bitimm'), 7: form('btc', false, 'bitimm') },
};

const hex8 = (b: number): string => b.toString(16).padStart(2, '0');

/**
 * Decodes the store at the start of `bytes` (guest code; only the first 15
 * bytes count). Returns the instruction, or why it is not emulated.
 */
export function decodePtStore(bytes: Uint8Array): PtInsn | string {
  const code = bytes.subarray(0, MAX_LENGTH);
  let i = 0;
  const next = (): number => {
    const b = code[i];
    if (b === undefined) throw new Truncated();
    i++;
    return b;
  };
  const signed = (n: 1 | 2 | 4): bigint => {
    let v = 0n;
    for (let k = 0; k < n; k++) v |= BigInt(next()) << BigInt(8 * k);
    return BigInt.asIntN(8 * n, v);
  };
  try {
    // Legacy prefixes, then at most one REX that counts (the last, right before the opcode).
    let lock = false, opsize16 = false, rex = 0;
    for (;;) {
      const p = next();
      if ((p & 0xf0) === 0x40) {
        rex = p;
        continue;
      }
      if (p === 0xf0) lock = true;
      else if (p === 0x66) opsize16 = true;
      else if (p === 0x26 || p === 0x2e || p === 0x36 || p === 0x3e) { /* ignored in 64-bit mode */ }
      else if (p === 0x64 || p === 0x65) return `a ${p === 0x64 ? 'fs' : 'gs'} segment override is not emulated`;
      else if (p === 0x67) return '32-bit addressing (prefix 67) is not emulated';
      else if (p === 0xf2 || p === 0xf3) return `prefix ${hex8(p)} (rep, xacquire, xrelease) is not emulated`;
      else {
        i--;
        break;
      }
      rex = 0; // a REX prefix followed by another prefix is ignored
    }
    let op = next();
    let table = ONE_BYTE;
    let name = hex8(op);
    if (op === 0x0f) {
      op = next();
      table = TWO_BYTE;
      name = `0f ${hex8(op)}`;
    }
    const entry = table[op];
    if (entry === undefined) return `opcode ${name} is not a store kernels use on page-table entries`;
    const modrm = next();
    const mod = modrm >> 6, regField = (modrm >> 3) & 7, rm = modrm & 7;
    const f: Form | undefined = 'op' in entry ? (entry as Form) : (entry as Record<number, Form>)[regField];
    if (f === undefined) return `opcode ${name} /${regField} is not a store kernels use on page-table entries`;
    if (lock && f.op === 'mov') return 'lock mov is invalid';
    if (mod === 3) return 'a register operand: not a store to memory';
    const size: OperandSize = f.byte ? 1 : rex & 8 ? 8 : opsize16 ? 2 : 4;

    const mem: MemOperand = { scale: 1, disp: 0n, ripRelative: false };
    const b = rex & 1 ? 8 : 0;
    let disp: 0 | 1 | 4 = mod === 1 ? 1 : mod === 2 ? 4 : 0;
    if (rm === 4) {
      const sib = next();
      const index = ((sib >> 3) & 7) | (rex & 2 ? 8 : 0);
      if (index !== 4) {
        mem.index = MODRM_REGS[index]!;
        mem.scale = (1 << (sib >> 6)) as MemOperand['scale'];
      }
      if ((sib & 7) === 5 && mod === 0) disp = 4; // no base
      else mem.base = MODRM_REGS[(sib & 7) | b]!;
    } else if (rm === 5 && mod === 0) {
      mem.ripRelative = true;
      disp = 4;
    } else {
      mem.base = MODRM_REGS[rm | b]!;
    }
    if (disp) mem.disp = signed(disp);

    const insn: PtInsn = { op: f.op, size, length: 0, lock, mem };
    switch (f.src) {
      case 'reg':
      case 'bitreg': {
        const n = regField | (rex & 4 ? 8 : 0);
        insn.reg = f.byte && !rex && n >= 4 ? { reg: MODRM_REGS[n - 4]!, high: true } : { reg: MODRM_REGS[n]!, high: false };
        break;
      }
      case 'imm8':
      case 'imm8s':
        insn.imm = BigInt.asUintN(size * 8, signed(1));
        break;
      case 'immz':
        insn.imm = BigInt.asUintN(size * 8, signed(size === 2 ? 2 : 4));
        break;
      case 'bitimm':
        insn.imm = BigInt(next() & (size * 8 - 1));
        break;
    }
    insn.length = i;
    return insn;
  } catch (e) {
    if (e instanceof Truncated) return code.length === MAX_LENGTH ? 'longer than 15 bytes' : 'truncated instruction';
    throw e;
  }
}

/** The effective address of the memory operand; `nextRip` is the address after the instruction. */
export function effectiveAddress(mem: MemOperand, nextRip: bigint, reg: RegisterGetter): bigint {
  let ea = mem.ripRelative ? nextRip : 0n;
  if (mem.base) ea += reg(mem.base);
  if (mem.index) ea += reg(mem.index) * BigInt(mem.scale);
  return BigInt.asUintN(64, ea + mem.disp);
}

const isBitOp = (op: PtOp): boolean => op === 'bts' || op === 'btr' || op === 'btc';

/**
 * The address of the operand-size word the instruction reads and writes:
 * the effective address, or for bts/btr/btc with a register bit offset, the
 * word holding the bit (the offset is signed and counts from the operand).
 */
function operandAddress(insn: PtInsn, rip: bigint, reg: RegisterGetter): bigint {
  const ea = effectiveAddress(insn.mem, rip + BigInt(insn.length), reg);
  if (!isBitOp(insn.op) || !insn.reg) return ea;
  const bits = insn.size * 8;
  const offset = BigInt.asIntN(bits, readReg(reg, insn.reg, insn.size));
  return BigInt.asUintN(64, ea + (offset >> BigInt(Math.log2(bits))) * BigInt(insn.size));
}

function readReg(reg: RegisterGetter, o: RegOperand, size: OperandSize): bigint {
  return (reg(o.reg) >> (o.high ? 8n : 0n)) & mask(size);
}

/** The whole register after writing `value` to its `size`-byte part, as the CPU does (4 bytes zero-extend). */
function writeReg(reg: RegisterGetter, o: RegOperand, size: OperandSize, value: bigint): bigint {
  if (size === 8 || size === 4) return value & mask(size);
  const shift = o.high ? 8n : 0n;
  const m = mask(size) << shift;
  return (BigInt.asUintN(64, reg(o.reg)) & ~m) | ((value << shift) & m);
}

/** PF: the result's low byte has an even number of set bits. */
function parity(v: bigint): bigint {
  let b = Number(v & 0xffn);
  b ^= b >> 4;
  b ^= b >> 2;
  b ^= b >> 1;
  return b & 1 ? 0n : RFLAGS.PF;
}

/** SF, ZF and PF of a `size`-byte result. */
function resultFlags(r: bigint, size: OperandSize): bigint {
  const sign = (r >> BigInt(size * 8 - 1)) & 1n ? RFLAGS.SF : 0n;
  return sign | (r === 0n ? RFLAGS.ZF : 0n) | parity(r);
}

/** The six arithmetic flags of `a - b` (CMP a, b) at `size` bytes. */
function cmpFlags(a: bigint, b: bigint, size: OperandSize): bigint {
  const r = (a - b) & mask(size);
  const top = BigInt(size * 8 - 1);
  return resultFlags(r, size)
    | (a < b ? RFLAGS.CF : 0n)
    | ((a ^ b ^ r) & 0x10n ? RFLAGS.AF : 0n)
    | (((a ^ b) & (a ^ r)) >> top & 1n ? RFLAGS.OF : 0n);
}

/**
 * Applies a decoded instruction to the entry `old`, whose operand starts
 * `offset` bytes into it. Returns the effect, or why it is not emulated.
 */
export function applyPtStore(insn: PtInsn, reg: RegisterGetter, old: bigint, offset: number, rflags: bigint): PtStoreEffect | string {
  const size = insn.size;
  if (!Number.isInteger(offset) || offset < 0 || offset + size > 8 || offset % size) {
    return `a ${size}-byte operand at offset ${offset} of an entry is not naturally aligned`;
  }
  const m = mask(size);
  const shift = BigInt(offset * 8);
  const part = (old >> shift) & m;
  const src = insn.reg ? readReg(reg, insn.reg, size) : insn.imm!;
  const regs: Array<[ModrmReg, bigint]> = [];
  let value: bigint | undefined;
  let flags = rflags;
  switch (insn.op) {
    case 'mov':
      value = src;
      break;
    case 'xchg':
      value = src;
      regs.push([insn.reg!.reg, writeReg(reg, insn.reg!, size, part)]);
      break;
    case 'cmpxchg': {
      const acc = readReg(reg, RAX, size);
      flags = (rflags & ~ARITH) | cmpFlags(acc, part, size);
      if (acc === part) value = src;
      else regs.push(['rax', writeReg(reg, RAX, size, part)]);
      break;
    }
    case 'and':
    case 'or':
      value = insn.op === 'and' ? part & src : part | src;
      flags = (rflags & ~ARITH) | resultFlags(value, size);
      break;
    case 'bts':
    case 'btr':
    case 'btc': {
      const bit = 1n << (src & BigInt(size * 8 - 1));
      flags = (rflags & ~RFLAGS.CF) | (part & bit ? RFLAGS.CF : 0n);
      value = insn.op === 'bts' ? part | bit : insn.op === 'btr' ? part & ~bit : part ^ bit;
      break;
    }
  }
  const entry = value === undefined ? undefined : (old & ~(m << shift)) | (value << shift);
  return { entry, regs, rflags: flags, length: insn.length };
}

/**
 * Emulates the store that faulted at cr2 on the entry `old`: decodes it,
 * checks that it accessed cr2 (NOTES 5, 6), and applies it. Returns the
 * effect, or why it is not emulated.
 */
export function emulatePtStore(s: PtStoreInput): PtStoreEffect | string {
  const insn = decodePtStore(s.code);
  if (typeof insn === 'string') return insn;
  const at = operandAddress(insn, s.rip, s.reg);
  if (isBitOp(insn.op)) {
    if ((at & ~7n) !== (s.cr2 & ~7n)) return `the bit addressed (in the word at ${hex(at)}) is outside the faulting entry at ${hex(s.cr2 & ~7n)}`;
  } else if (at !== s.cr2) {
    return `the instruction addresses ${hex(at)}, not the faulting address ${hex(s.cr2)}`;
  }
  return applyPtStore(insn, s.reg, s.old, Number(at & 7n), s.rflags);
}
