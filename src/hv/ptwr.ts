// Writable page tables, as Xen offers them to PV guests: a guest-kernel
// store that faults on a read-only mapping of one of its own L1 tables is
// emulated as a validated mmu_update of that entry (Xen's ptwr emulation).
// Only the stores kernels use on page-table entries are decoded: MOV from a
// register or an immediate, XCHG and (LOCK) CMPXCHG, 4 or 8 bytes, naturally
// aligned; anything else is not emulated and the fault stands. Inputs: the
// guest's instruction bytes and registers (hostile).

/** The general registers in ModRM order (rax, rcx, rdx, rbx, rsp, rbp, rsi, rdi, r8-r15). */
export const MODRM_REGS = ['rax', 'rcx', 'rdx', 'rbx', 'rsp', 'rbp', 'rsi', 'rdi', 'r8', 'r9', 'r10', 'r11', 'r12', 'r13', 'r14', 'r15'] as const;
export type ModrmReg = (typeof MODRM_REGS)[number];

/** A decoded store to memory. */
export interface PtStore {
  kind: 'mov' | 'xchg' | 'cmpxchg';
  /** Bytes written: 4 or 8. */
  size: 4 | 8;
  /** Instruction length, to resume after it. */
  length: number;
  /** The source register (mov/xchg/cmpxchg), or undefined for an immediate. */
  reg?: ModrmReg;
  /** The immediate (mov $imm32), sign-extended to the operand size. */
  imm?: bigint;
}

/** Bytes of the memory operand's encoding after the ModRM byte (SIB and displacement). */
function modrmTail(bytes: Uint8Array, at: number): number | undefined {
  const modrm = bytes[at];
  if (modrm === undefined) return undefined;
  const mod = modrm >> 6, rm = modrm & 7;
  if (mod === 3) return undefined; // a register operand: not a store to memory
  let n = 0;
  let base = rm;
  if (rm === 4) {
    const sib = bytes[at + 1];
    if (sib === undefined) return undefined;
    n += 1;
    base = sib & 7;
  }
  if (mod === 0 && base === 5) n += 4; // disp32 (RIP-relative without a SIB)
  else if (mod === 1) n += 1;
  else if (mod === 2) n += 4;
  return n;
}

/** Decodes the store at the start of `bytes` (up to 15 bytes of guest code). */
export function decodePtStore(bytes: Uint8Array): PtStore | undefined {
  let i = 0;
  let lock = false;
  let rex = 0;
  let opsize16 = false;
  for (; i < bytes.length && i < 4; i++) {
    const b = bytes[i]!;
    if (b === 0xf0) lock = true;
    else if (b === 0x66) opsize16 = true;
    else break;
  }
  if (opsize16) return undefined; // 2-byte stores cannot write a PTE naturally aligned the way we merge
  if (bytes[i] !== undefined && (bytes[i]! & 0xf0) === 0x40) rex = bytes[i++]!;
  const size: 4 | 8 = rex & 8 ? 8 : 4;
  const regOf = (modrm: number): ModrmReg => MODRM_REGS[((modrm >> 3) & 7) | (rex & 4 ? 8 : 0)]!;
  const op = bytes[i];
  if (op === undefined) return undefined;
  if (op === 0x89 || op === 0x87) {
    const tail = modrmTail(bytes, i + 1);
    if (tail === undefined || (lock && op === 0x89)) return undefined;
    return { kind: op === 0x89 ? 'mov' : 'xchg', size, length: i + 2 + tail, reg: regOf(bytes[i + 1]!) };
  }
  if (op === 0xc7) {
    const modrm = bytes[i + 1];
    if (modrm === undefined || (modrm >> 3) & 7 || lock) return undefined;
    const tail = modrmTail(bytes, i + 1);
    if (tail === undefined) return undefined;
    const at = i + 2 + tail;
    if (at + 4 > bytes.length) return undefined;
    const imm32 = new DataView(bytes.buffer, bytes.byteOffset + at, 4).getInt32(0, true);
    const imm = size === 8 ? BigInt.asUintN(64, BigInt(imm32)) : BigInt(imm32 >>> 0);
    return { kind: 'mov', size, length: at + 4, imm };
  }
  if (op === 0x0f && bytes[i + 1] === 0xb1) {
    const tail = modrmTail(bytes, i + 2);
    if (tail === undefined) return undefined;
    return { kind: 'cmpxchg', size, length: i + 3 + tail, reg: regOf(bytes[i + 2]!) };
  }
  return undefined;
}
