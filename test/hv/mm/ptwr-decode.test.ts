// Writable page tables, the pure part (src/hv/mm/ptwr-decode.ts): decoding the stores
// kernels use on page-table entries, checking that the instruction made the
// access that faulted, and what it does to the entry, the registers and the
// flags. No KVM: test/hv/mm/ptwr.test.ts runs guests. Encodings are as GNU as
// assembles them; the expected flags were worked out by hand (and agree with
// what the CPU does for the same CMP, AND and OR).

import { describe, expect, it } from 'vitest';
import {
  applyPtStore, decodePtStore, effectiveAddress, emulatePtStore, type ModrmReg, type PtInsn, type PtStoreEffect,
} from '../../../src/hv/mm/ptwr-decode.js';
import { RFLAGS as FLAGS } from '../../../src/hv/cpu/rflags.js';

const { CF, PF, AF, ZF, SF, OF } = FLAGS;
const ALL_ARITH = CF | PF | AF | ZF | SF | OF;
const RF_BASE = 0x202n; // IF and the reserved bit 1: never touched

/** Bytes from "f0 48 89 0f". */
const hexBytes = (s: string): Uint8Array => Uint8Array.from(s.split(' ').map((h) => parseInt(h, 16)));
/** Decodes `s` followed by other code (nops), which must not count. */
const dec = (s: string): PtInsn | string => decodePtStore(hexBytes(`${s} 90 90 90`));
const regs = (values: Partial<Record<ModrmReg, bigint>>) => (r: ModrmReg): bigint => values[r] ?? 0n;

/** An L1 entry: NX, frame 0x12345, P RW US A D. Bytes 67 50 34 12 00 00 00 80. */
const OLD = 0x8000_0000_1234_5067n;
/** The faulting entry's address (rdi in most cases), and the instruction's. */
const ENTRY = 0xffff_8880_0020_3040n;
const RIP = 0xffff_ffff_8100_0000n;

/** Emulates `code` against the entry at ENTRY, rdi pointing at it unless told otherwise. */
function emulate(code: string, o: { regs?: Partial<Record<ModrmReg, bigint>>; cr2?: bigint; old?: bigint; rflags?: bigint; rip?: bigint } = {}): PtStoreEffect | string {
  return emulatePtStore({
    code: hexBytes(`${code} 90 90`), rip: o.rip ?? RIP, cr2: o.cr2 ?? ENTRY, reg: regs({ rdi: ENTRY, ...o.regs }),
    old: o.old ?? OLD, rflags: o.rflags ?? RF_BASE,
  });
}
/** Like emulate, for a case that must be emulated. */
function ok(code: string, o: Parameters<typeof emulate>[1] = {}): PtStoreEffect {
  const e = emulate(code, o);
  if (typeof e === 'string') throw new Error(`refused: ${e}`);
  return e;
}

describe('decoding: forms and operand sizes', () => {
  it('decodes MOV, XCHG and CMPXCHG from a register at 1, 2, 4 and 8 bytes', () => {
    const r = (reg: ModrmReg, high = false) => ({ reg, high });
    // Rule: byte opcodes (88, 86, 0F B0) are 1 byte; 66 makes the others 2, REX.W 8, else 4.
    expect(dec('88 07')).toMatchObject({ op: 'mov', size: 1, length: 2, reg: r('rax') });                 // mov %al,(%rdi)
    expect(dec('66 89 4f 02')).toMatchObject({ op: 'mov', size: 2, length: 4, reg: r('rcx') });           // mov %cx,2(%rdi)
    expect(dec('89 4f 04')).toMatchObject({ op: 'mov', size: 4, length: 3, reg: r('rcx') });              // mov %ecx,4(%rdi)
    expect(dec('48 89 0f')).toMatchObject({ op: 'mov', size: 8, length: 3, reg: r('rcx') });              // mov %rcx,(%rdi)
    expect(dec('86 17')).toMatchObject({ op: 'xchg', size: 1, length: 2, reg: r('rdx') });               // xchg %dl,(%rdi)
    expect(dec('66 87 57 06')).toMatchObject({ op: 'xchg', size: 2, length: 4, reg: r('rdx') });          // xchg %dx,6(%rdi)
    expect(dec('87 57 04')).toMatchObject({ op: 'xchg', size: 4, length: 3, reg: r('rdx') });             // xchg %edx,4(%rdi)
    expect(dec('48 87 27')).toMatchObject({ op: 'xchg', size: 8, length: 3, reg: r('rsp') });             // xchg %rsp,(%rdi)
    expect(dec('f0 0f b0 4f 03')).toMatchObject({ op: 'cmpxchg', size: 1, length: 5, lock: true, reg: r('rcx') });
    expect(dec('66 f0 0f b1 4f 02')).toMatchObject({ op: 'cmpxchg', size: 2, length: 6, lock: true, reg: r('rcx') });
    expect(dec('0f b1 0f')).toMatchObject({ op: 'cmpxchg', size: 4, length: 3, lock: false, reg: r('rcx') });
    expect(dec('f0 4c 0f b1 27')).toMatchObject({ op: 'cmpxchg', size: 8, length: 5, reg: r('r12') });
    // Rule: 66 does not change a byte form, and REX.W wins over 66.
    expect(dec('66 88 07')).toMatchObject({ size: 1, length: 3 });
    expect(dec('66 48 89 0f')).toMatchObject({ size: 8, length: 4 });
  });

  it('decodes MOV from an immediate, sign-extending imm32 to 64 bits with REX.W and reading imm16 with 66', () => {
    expect(dec('c6 07 81')).toMatchObject({ op: 'mov', size: 1, length: 3, imm: 0x81n });
    expect(dec('66 c7 47 02 01 80')).toMatchObject({ op: 'mov', size: 2, length: 6, imm: 0x8001n });
    expect(dec('c7 47 04 01 00 00 80')).toMatchObject({ op: 'mov', size: 4, length: 7, imm: 0x8000_0001n });
    expect(dec('48 c7 07 fe ff ff ff')).toMatchObject({ op: 'mov', size: 8, length: 7, imm: 0xffff_ffff_ffff_fffen });
    expect(dec('48 c7 07 ff ff ff 7f')).toMatchObject({ imm: 0x7fff_ffffn });
  });

  it('decodes AND and OR from a register and from imm8 (80), imm16/32 (81) and sign-extended imm8 (83), with or without LOCK', () => {
    const r = (reg: ModrmReg, high = false) => ({ reg, high });
    expect(dec('f0 20 17')).toMatchObject({ op: 'and', size: 1, length: 3, lock: true, reg: r('rdx') });
    expect(dec('f0 48 21 17')).toMatchObject({ op: 'and', size: 8, length: 4, reg: r('rdx') });
    expect(dec('f0 08 7f 01')).toMatchObject({ op: 'or', size: 1, length: 4, reg: r('rbx', true) });     // or %bh,1(%rdi)
    expect(dec('66 f0 09 17')).toMatchObject({ op: 'or', size: 2, length: 4, reg: r('rdx') });
    expect(dec('09 17')).toMatchObject({ op: 'or', size: 4, length: 2, lock: false });
    expect(dec('f0 80 27 fd')).toMatchObject({ op: 'and', size: 1, length: 4, imm: 0xfdn });
    expect(dec('f0 80 0f 01')).toMatchObject({ op: 'or', size: 1, length: 4, imm: 1n });
    expect(dec('66 f0 81 27 7f ff')).toMatchObject({ op: 'and', size: 2, length: 6, imm: 0xff7fn });
    expect(dec('f0 81 4f 04 00 00 00 80')).toMatchObject({ op: 'or', size: 4, length: 8, imm: 0x8000_0000n });
    expect(dec('f0 48 81 0f 00 00 00 80')).toMatchObject({ op: 'or', size: 8, length: 8, imm: 0xffff_ffff_8000_0000n });
    expect(dec('f0 48 83 27 df')).toMatchObject({ op: 'and', size: 8, length: 5, imm: 0xffff_ffff_ffff_ffdfn });
    expect(dec('f0 83 27 fe')).toMatchObject({ op: 'and', size: 4, length: 4, imm: 0xffff_fffen });
    expect(dec('66 83 27 fe')).toMatchObject({ op: 'and', size: 2, length: 4, imm: 0xfffen });
    expect(dec('f0 48 83 0f 02')).toMatchObject({ op: 'or', size: 8, length: 5, imm: 2n });
  });

  it('decodes BTS, BTR and BTC with a register bit offset, or an immediate one taken modulo the operand width', () => {
    expect(dec('f0 48 0f ab 07')).toMatchObject({ op: 'bts', size: 8, length: 5, reg: { reg: 'rax', high: false } });
    expect(dec('f0 0f b3 07')).toMatchObject({ op: 'btr', size: 4, length: 4, reg: { reg: 'rax', high: false } });
    expect(dec('66 0f bb 07')).toMatchObject({ op: 'btc', size: 2, length: 4, lock: false });
    expect(dec('f0 48 0f ba 2f 3f')).toMatchObject({ op: 'bts', size: 8, length: 6, imm: 63n });
    expect(dec('f0 0f ba 77 04 21')).toMatchObject({ op: 'btr', size: 4, length: 6, imm: 1n });          // btrl $33: bit 1
    expect(dec('66 0f ba 7f 06 11')).toMatchObject({ op: 'btc', size: 2, length: 6, imm: 1n });          // btcw $17: bit 1
    expect(dec('f0 48 0f ba 37 01')).toMatchObject({ op: 'btr', size: 8, imm: 1n });
  });

  it('reads byte registers 4-7 as ah, ch, dh, bh without REX and as spl, bpl, sil, dil with any REX', () => {
    expect(dec('88 67 01')).toMatchObject({ reg: { reg: 'rax', high: true } });          // mov %ah,1(%rdi)
    expect(dec('86 6f 01')).toMatchObject({ reg: { reg: 'rcx', high: true } });          // xchg %ch,1(%rdi)
    expect(dec('0f b0 77 01')).toMatchObject({ reg: { reg: 'rdx', high: true } });       // cmpxchg %dh,1(%rdi)
    expect(dec('40 88 77 01')).toMatchObject({ reg: { reg: 'rsi', high: false } });      // mov %sil,1(%rdi)
    expect(dec('40 86 67 01')).toMatchObject({ reg: { reg: 'rsp', high: false } });      // xchg %spl,1(%rdi)
    expect(dec('44 88 0f')).toMatchObject({ reg: { reg: 'r9', high: false } });          // mov %r9b,(%rdi)
    expect(dec('41 88 3c 24')).toMatchObject({ reg: { reg: 'rdi', high: false }, mem: { base: 'r12' } }); // mov %dil,(%r12)
    // Rule: the wider forms never have high-byte registers.
    expect(dec('66 89 67 02')).toMatchObject({ reg: { reg: 'rsp', high: false } });
  });

  it('ignores a REX prefix that another prefix follows, as the CPU does', () => {
    expect(dec('48 66 89 0f')).toMatchObject({ size: 2, length: 4 });                     // REX.W ignored: 66 counts
    expect(dec('40 f0 86 67 01')).toMatchObject({ reg: { reg: 'rax', high: true } });      // ah, not spl
    expect(dec('f0 40 86 67 01')).toMatchObject({ reg: { reg: 'rsp', high: false } });     // spl
    expect(dec('41 48 89 0f')).toMatchObject({ size: 8, mem: { base: 'rdi' } });          // the last REX counts
  });

  it('decodes ModRM, SIB, disp8, disp32 and RIP-relative operands', () => {
    const m = (mem: object) => ({ mem: { scale: 1, disp: 0n, ripRelative: false, ...mem } });
    expect(dec('48 89 04 24')).toMatchObject(m({ base: 'rsp' }));
    expect(dec('49 89 04 24')).toMatchObject(m({ base: 'r12' }));
    expect(dec('49 89 45 00')).toMatchObject(m({ base: 'r13' }));                                     // r13 needs a disp8
    expect(dec('48 89 45 00')).toMatchObject(m({ base: 'rbp' }));
    expect(dec('48 89 84 f3 34 12 00 00')).toMatchObject({ ...m({ base: 'rbx', index: 'rsi', scale: 8, disp: 0x1234n }), length: 8 });
    expect(dec('48 89 04 25 34 12 00 00')).toMatchObject({ ...m({ disp: 0x1234n }), length: 8 });       // absolute: no base, no index
    expect(dec('48 89 04 fd 00 00 00 00')).toMatchObject({ ...m({ index: 'rdi', scale: 8 }), length: 8 }); // no base
    expect(dec('4b 89 44 a0 f8')).toMatchObject(m({ base: 'r8', index: 'r12', scale: 4, disp: -8n }));  // REX.X: r12 is an index
    expect(dec('4a 89 44 65 f0')).toMatchObject(m({ base: 'rbp', index: 'r12', scale: 2, disp: -16n }));
    expect(dec('48 89 87 00 00 00 80')).toMatchObject(m({ base: 'rdi', disp: -0x8000_0000n }));        // disp32 is signed
    expect(dec('48 89 05 10 00 00 00')).toMatchObject({ ...m({ ripRelative: true, disp: 0x10n }), length: 7 });
    expect(dec('41 c6 05 10 00 00 00 01')).toMatchObject({ ...m({ ripRelative: true, disp: 0x10n }), length: 8 }); // REX.B does not change RIP-relative
  });
});

describe('decoding: what is refused', () => {
  it('refuses fs and gs overrides and ignores the other segment overrides, as the CPU does in 64-bit mode', () => {
    expect(dec('64 48 89 0f')).toMatch(/fs segment override/);
    expect(dec('65 48 89 0f')).toMatch(/gs segment override/);
    expect(dec('f0 65 48 0f b1 0f')).toMatch(/gs segment override/);
    for (const p of ['26', '2e', '36', '3e']) expect(dec(`${p} 48 89 0f`)).toMatchObject({ op: 'mov', size: 8, length: 4 });
  });

  it('refuses 32-bit addressing, REP/XACQUIRE/XRELEASE, LOCK MOV and register operands', () => {
    expect(dec('67 48 89 0f')).toMatch(/32-bit addressing/);
    expect(dec('f3 48 89 0f')).toMatch(/prefix f3/);
    expect(dec('f2 f0 0f b1 0f')).toMatch(/prefix f2/);
    expect(dec('f0 48 89 0f')).toMatch(/lock mov/);
    expect(dec('f0 c6 07 01')).toMatch(/lock mov/);
    expect(dec('48 89 c7')).toMatch(/register operand/);
    expect(dec('f0 48 0f ab c7')).toMatch(/register operand/);
  });

  it('refuses other opcodes and the other members of the group opcodes (BT itself writes nothing)', () => {
    expect(dec('48 01 0f')).toMatch(/opcode 01 /);                  // add
    expect(dec('48 31 0f')).toMatch(/opcode 31 /);                  // xor
    expect(dec('f0 48 83 07 01')).toMatch(/opcode 83 \/0/);         // add $1
    expect(dec('f0 48 81 37 01 00 00 00')).toMatch(/opcode 81 \/6/); // xor $1
    expect(dec('48 c7 0f 01 00 00 00')).toMatch(/opcode c7 \/1/);
    expect(dec('48 0f ba 27 01')).toMatch(/opcode 0f ba \/4/);      // bt $1
    expect(dec('48 0f a3 07')).toMatch(/opcode 0f a3 /);            // bt %rax
    expect(dec('0f 0b')).toMatch(/opcode 0f 0b /);                  // ud2
  });

  it('refuses an instruction cut short at any byte, and one longer than 15 bytes', () => {
    const full = hexBytes('f0 48 81 4c 24 08 00 00 00 80'); // lock orq $imm32, 8(%rsp)
    expect(decodePtStore(full)).toMatchObject({ op: 'or', length: 10 });
    for (let n = 0; n < full.length; n++) expect(decodePtStore(full.subarray(0, n))).toBe('truncated instruction');
    const prefixes = (n: number) => new Uint8Array(n).fill(0x66);
    expect(decodePtStore(Uint8Array.from([...prefixes(12), 0x48, 0x89, 0x0f]))).toMatchObject({ length: 15 });
    expect(decodePtStore(Uint8Array.from([...prefixes(13), 0x48, 0x89, 0x0f]))).toBe('longer than 15 bytes');
  });
});

describe('the effective address', () => {
  const ea = (code: string, r: Partial<Record<ModrmReg, bigint>>, rip = RIP): bigint => {
    const insn = dec(code);
    if (typeof insn === 'string') throw new Error(insn);
    return effectiveAddress(insn.mem, rip + BigInt(insn.length), regs(r));
  };

  it('is base + index * scale + displacement, modulo 2^64', () => {
    expect(ea('48 89 84 f3 34 12 00 00', { rbx: 0x1000n, rsi: 3n })).toBe(0x1000n + 24n + 0x1234n);
    expect(ea('4b 89 44 a0 f8', { r8: 0x2000n, r12: 5n })).toBe(0x2000n + 20n - 8n);
    expect(ea('48 89 04 25 34 12 00 00', { rax: 0x999n })).toBe(0x1234n);
    expect(ea('48 89 04 fd 00 00 00 00', { rdi: 0x10n })).toBe(0x80n);
    expect(ea('48 89 87 00 00 00 80', { rdi: 0xffff_8880_0000_0000n })).toBe(0xffff_887f_8000_0000n);
    expect(ea('48 89 47 10', { rdi: 0xffff_ffff_ffff_fff8n })).toBe(8n); // wraps
    // Rule: rsp is what the getter says (the guest's, from the exception frame).
    expect(ea('48 89 44 24 08', { rsp: 0xffff_c000_0000_0ff0n })).toBe(0xffff_c000_0000_0ff8n);
  });

  it('is relative to the next instruction for RIP-relative operands, immediates included', () => {
    expect(ea('48 89 05 10 00 00 00', {})).toBe(RIP + 7n + 0x10n);
    expect(ea('c6 05 10 00 00 00 01', {})).toBe(RIP + 7n + 0x10n);               // movb $1, 0x10(%rip): the imm8 counts
    expect(ea('48 c7 05 f0 ff ff ff 01 00 00 00', {})).toBe(RIP + 11n - 0x10n);  // movq $1, -0x10(%rip)
  });
});

describe('what the store does to the entry and the registers', () => {
  it('merges 1-, 2- and 4-byte MOV stores into the entry at their offset', () => {
    expect(ok('88 07', { regs: { rax: 0x1166n } }).entry).toBe(0x8000_0000_1234_5066n);                              // mov %al,(%rdi)
    expect(ok('88 67 01', { regs: { rax: 0xab00n }, cr2: ENTRY + 1n }).entry).toBe(0x8000_0000_1234_ab67n);           // mov %ah,1(%rdi)
    expect(ok('40 88 77 01', { regs: { rsi: 0x42n, rdx: 0x7700n }, cr2: ENTRY + 1n }).entry).toBe(0x8000_0000_1234_4267n); // %sil, not %dh
    expect(ok('66 89 4f 02', { regs: { rcx: 0xffff_beefn }, cr2: ENTRY + 2n }).entry).toBe(0x8000_0000_beef_5067n);
    expect(ok('89 4f 04', { regs: { rcx: 0x1_0000_0002n }, cr2: ENTRY + 4n }).entry).toBe(0x0000_0002_1234_5067n);
    expect(ok('48 89 0f', { regs: { rcx: 0x1111_2222_3333_4444n } }).entry).toBe(0x1111_2222_3333_4444n);
    expect(ok('c6 07 81').entry).toBe(0x8000_0000_1234_5081n);
    expect(ok('66 c7 47 02 01 80', { cr2: ENTRY + 2n }).entry).toBe(0x8000_0000_8001_5067n);
    expect(ok('c7 47 04 01 00 00 80', { cr2: ENTRY + 4n }).entry).toBe(0x8000_0001_1234_5067n);
    expect(ok('48 c7 07 fe ff ff ff').entry).toBe(0xffff_ffff_ffff_fffen);
  });

  it('leaves flags and registers alone for MOV, and resumes after the instruction', () => {
    const e = ok('88 07', { rflags: RF_BASE | ALL_ARITH });
    expect(e).toMatchObject({ regs: [], rflags: RF_BASE | ALL_ARITH, length: 2 });
  });

  it('XCHG hands the old bytes to the register: byte and word keep the rest, a dword zero-extends', () => {
    let e = ok('86 6f 01', { regs: { rcx: 0xffff_ffff_ffff_ab11n }, cr2: ENTRY + 1n });            // xchg %ch,1(%rdi)
    expect(e).toMatchObject({ entry: 0x8000_0000_1234_ab67n, regs: [['rcx', 0xffff_ffff_ffff_5011n]] });
    e = ok('66 87 57 06', { regs: { rdx: 0xffff_ffff_ffff_1234n }, cr2: ENTRY + 6n });
    expect(e).toMatchObject({ entry: 0x1234_0000_1234_5067n, regs: [['rdx', 0xffff_ffff_ffff_8000n]] });
    e = ok('87 57 04', { regs: { rdx: 0xffff_ffff_0000_0001n }, cr2: ENTRY + 4n });
    expect(e).toMatchObject({ entry: 0x0000_0001_1234_5067n, regs: [['rdx', 0x8000_0000n]] });
    e = ok('48 87 27', { regs: { rsp: 0x5000n } });                                                 // xchg %rsp,(%rdi)
    expect(e).toMatchObject({ entry: 0x5000n, regs: [['rsp', OLD]] });
  });

  it('CMPXCHG writes the source when the accumulator matches, else loads the accumulator and writes nothing', () => {
    let e = ok('f0 0f b0 4f 03', { regs: { rax: 0xffff_ffff_ffff_ff12n, rcx: 0x99n }, cr2: ENTRY + 3n });
    expect(e).toMatchObject({ entry: 0x8000_0000_9934_5067n, regs: [] });
    expect(e.rflags & ZF).toBe(ZF);
    e = ok('f0 0f b0 4f 03', { regs: { rax: 0xffff_ffff_ffff_ff13n, rcx: 0x99n }, cr2: ENTRY + 3n });
    expect(e).toMatchObject({ entry: undefined, regs: [['rax', 0xffff_ffff_ffff_ff12n]] });
    expect(e.rflags & ZF).toBe(0n);
    e = ok('66 f0 0f b1 4f 02', { regs: { rax: 0xaaaa_0000_0000_0000n }, cr2: ENTRY + 2n });
    expect(e).toMatchObject({ entry: undefined, regs: [['rax', 0xaaaa_0000_0000_1234n]] });        // ax only
    // Rule: a 4-byte accumulator is zero-extended when loaded, untouched when it matched.
    e = ok('f0 0f b1 0f', { regs: { rax: 0xdead_beef_0000_0000n } });
    expect(e).toMatchObject({ entry: undefined, regs: [['rax', 0x1234_5067n]] });
    e = ok('f0 0f b1 0f', { regs: { rax: 0xdead_beef_1234_5067n, rcx: 0xffff_ffff_0000_0000n } });
    expect(e).toMatchObject({ entry: 0x8000_0000_0000_0000n, regs: [] });
    e = ok('f0 4c 0f b1 27', { regs: { rax: OLD, r12: 0n } });
    expect(e).toMatchObject({ entry: 0n, regs: [], length: 5 });
  });

  it('CMPXCHG sets CF, PF, AF, ZF, SF and OF as CMP accumulator, old value does', () => {
    // [accumulator, old value at the operand, size, flags CMP sets] (worked out by hand).
    const cases: Array<[bigint, bigint, 1 | 2 | 4 | 8, bigint]> = [
      [5n, 5n, 8, ZF | PF],                                    // 0
      [0n, 1n, 1, CF | PF | AF | SF],                          // 0xff
      [0x80n, 1n, 1, AF | OF],                                 // 0x7f: negative minus positive is positive
      [0x7fffn, 0xffffn, 2, CF | OF | SF | PF],                // 0x8000
      [1n, 2n, 4, CF | PF | AF | SF],                          // 0xffffffff
      [0x8000_0000_0000_0000n, 1n, 8, OF | AF | PF],           // 0x7fff_ffff_ffff_ffff
      [3n, 1n, 8, 0n],                                         // 2
    ];
    const code = { 1: 'f0 0f b0 0f', 2: '66 f0 0f b1 0f', 4: 'f0 0f b1 0f', 8: 'f0 48 0f b1 0f' };
    for (const [acc, old, size, flags] of cases) {
      const filler = size === 8 ? 0n : 0x5a5a_5a5a_5a5a_5a5an & ~((1n << BigInt(8 * size)) - 1n);
      for (const before of [RF_BASE, RF_BASE | ALL_ARITH]) {
        const e = ok(code[size], { regs: { rax: acc }, old: filler | old, rflags: before });
        expect([acc, old, size, e.rflags]).toEqual([acc, old, size, RF_BASE | flags]);
      }
    }
  });

  it('AND and OR set SF, ZF and PF from the result and clear CF, OF and AF', () => {
    // [code, old entry, result entry, flags] (worked out by hand).
    const cases: Array<[string, bigint, bigint, bigint]> = [
      ['f0 80 27 0f', 0xf0n, 0n, ZF | PF],                                             // andb $0x0f
      ['f0 80 0f 01', 0x80n, 0x81n, SF | PF],                                          // orb $1
      ['f0 48 83 27 df', 0x8000_0000_0000_0067n, 0x8000_0000_0000_0047n, SF | PF],     // andq $-0x21: clear A
      ['f0 83 0f 02', 1n, 3n, PF],                                                     // orl $2
      ['66 f0 81 0f 00 01', 0x1000n, 0x1100n, PF],                                     // orw $0x100
    ];
    for (const [code, old, entry, flags] of cases) {
      const e = ok(code, { old, rflags: RF_BASE | ALL_ARITH });
      expect([code, e.entry, e.rflags]).toEqual([code, entry, RF_BASE | flags]);
    }
    // Register sources, and a result whose low byte has an odd number of bits (0x67: five): no PF.
    let e = ok('f0 48 21 17', { regs: { rdx: 0xffn }, rflags: RF_BASE | CF | OF });
    expect([e.entry, e.rflags]).toEqual([0x67n, RF_BASE]);
    e = ok('f0 08 7f 01', { regs: { rbx: 0x0f00n }, cr2: ENTRY + 1n });                                  // orb %bh,1(%rdi)
    expect([e.entry, e.rflags]).toEqual([0x8000_0000_1234_5f67n, RF_BASE | PF]);                         // 0x5f: six bits
  });

  it('BTS, BTR and BTC set CF to the old bit and change no other flag', () => {
    const rest = RF_BASE | ZF | SF | OF | AF | PF;
    let e = ok('f0 48 0f ba 2f 3f', { rflags: rest });                                                   // btsq $63: already set
    expect([e.entry, e.rflags]).toEqual([OLD, rest | CF]);
    e = ok('f0 48 0f ba 37 01', { rflags: RF_BASE | CF });                                               // btrq $1: clear RW
    expect([e.entry, e.rflags]).toEqual([OLD & ~2n, RF_BASE | CF]);
    e = ok('f0 0f ba 6f 04 21', { cr2: ENTRY + 4n, rflags: RF_BASE | CF });                              // btsl $33,4(%rdi): bit 1 of the high dword
    expect([e.entry, e.rflags]).toEqual([OLD | (1n << 33n), RF_BASE]);
    e = ok('66 0f ba 7f 06 11', { cr2: ENTRY + 6n });                                                    // btcw $17,6(%rdi): entry bit 49
    expect([e.entry, e.rflags]).toEqual([OLD ^ (1n << 49n), RF_BASE]);
    e = ok('f0 48 0f ab 07', { regs: { rax: 2n } });                                                     // btsq %rax: bit 2 (US)
    expect([e.entry, e.rflags]).toEqual([OLD, RF_BASE | CF]);
    e = ok('f0 0f b3 07', { regs: { rax: 0x1_0000_0001n }, rflags: RF_BASE | CF });                      // btrl %eax: the offset is eax (1)
    expect([e.entry, e.rflags]).toEqual([OLD & ~2n, RF_BASE | CF]);
  });

  it('takes a register bit offset as signed, from the operand, and emulates it when the bit lies in the faulting entry', () => {
    // btsq %rax,(%rdi) with rax = 64 + 3: bit 3 of the next entry.
    let e = ok('f0 48 0f ab 07', { regs: { rax: 67n }, cr2: ENTRY + 8n, old: 0n });
    expect([e.entry, e.rflags]).toEqual([8n, RF_BASE]);
    // btsq %rax,8(%rdi) with rax = -64: bit 0 of the entry before the operand.
    e = ok('f0 48 0f ab 47 08', { regs: { rax: -64n & 0xffff_ffff_ffff_ffffn }, old: 0x1000n });
    expect([e.entry, e.rflags]).toEqual([0x1001n, RF_BASE]);
    // btrl %eax,4(%rdi) with eax = -1: bit 31 of the dword before, the entry's low half.
    e = ok('f0 0f b3 47 04', { regs: { rax: 0xffff_ffffn }, old: 0xffff_ffffn });
    expect([e.entry, e.rflags]).toEqual([0x7fff_ffffn, RF_BASE | CF]);
    // btcw %ax,(%rdi) with ax = 48: bit 0 of the word at +6, entry bit 48.
    e = ok('66 0f bb 07', { regs: { rax: 0xffff_0030n } });
    expect(e.entry).toBe(OLD ^ (1n << 48n));
    // Rule: a bit outside the faulting entry is refused, whatever the operand.
    expect(emulate('f0 48 0f ab 07', { regs: { rax: 64n } })).toMatch(/outside the faulting entry/);
    expect(emulate('f0 48 0f ab 07', { regs: { rax: -1n & 0xffff_ffff_ffff_ffffn } })).toMatch(/outside the faulting entry/);
    expect(emulate('66 0f bb 07', { regs: { rax: 0x40n } })).toMatch(/outside the faulting entry/);      // word at +8
  });
});

describe('the access must be the one that faulted, in one entry', () => {
  it('refuses an instruction whose effective address is not cr2', () => {
    expect(emulate('48 89 0f', { cr2: ENTRY + 8n })).toMatch(/addresses 0xffff888000203040, not the faulting address 0xffff888000203048/);
    expect(emulate('88 07', { cr2: ENTRY + 1n })).toMatch(/not the faulting address/);
    expect(emulate('48 89 0f', { regs: { rdi: ENTRY - 0x1000n } })).toMatch(/not the faulting address/);
    // RIP-relative: relative to the next instruction, immediate included.
    const rip = ENTRY - 7n - 0x10n;
    expect(ok('c6 05 10 00 00 00 01', { rip })).toMatchObject({ entry: 0x8000_0000_1234_5001n, length: 7 });
    expect(emulate('c6 05 10 00 00 00 01', { rip: rip + 1n })).toMatch(/not the faulting address/);
    // rsp-based, as the getter gives it.
    expect(ok('48 89 0c 24', { regs: { rsp: ENTRY, rcx: 0n } })).toMatchObject({ entry: 0n, length: 4 });
  });

  it('refuses unaligned stores, inside one entry or across two', () => {
    expect(emulate('48 89 4f 04', { cr2: ENTRY + 4n })).toMatch(/8-byte operand at offset 4 .*not naturally aligned/);
    expect(emulate('66 89 4f 01', { cr2: ENTRY + 1n })).toMatch(/2-byte operand at offset 1 /);
    expect(emulate('89 4f 02', { cr2: ENTRY + 2n })).toMatch(/4-byte operand at offset 2 /);
    expect(emulate('66 89 4f 07', { cr2: ENTRY + 7n })).toMatch(/2-byte operand at offset 7 /);
    expect(emulate('f0 48 0f ba 6f 04 01', { cr2: ENTRY + 4n })).toMatch(/8-byte operand at offset 4 /);
    expect(applyPtStore(dec('48 89 0f') as PtInsn, regs({}), OLD, 8, RF_BASE)).toMatch(/not naturally aligned/);
  });

  it('refuses a segment override and a truncated instruction through the whole path', () => {
    expect(emulate('65 48 89 0f')).toMatch(/gs segment override/);
    expect(emulate('64 88 07')).toMatch(/fs segment override/);
    expect(emulatePtStore({ code: hexBytes('f0 48 0f'), rip: RIP, cr2: ENTRY, reg: regs({ rdi: ENTRY }), old: OLD, rflags: RF_BASE })).toBe('truncated instruction');
    expect(ok('3e 48 89 0f', { regs: { rcx: 1n } })).toMatchObject({ entry: 1n, length: 4 });
  });
});
