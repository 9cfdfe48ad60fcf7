// The software CPU's floating point decode: x87 (d8-df, 9b), the SSE
// opcodes of the 0f map and ldmxcsr/stmxcsr, over the state in fpu.ts.

import type { Exit } from '../types.js';
import { MASK } from './flags.js';
import { CpuFault } from './paging.js';
import { bitsToFloat, floatToBits, Fpu, MXCSR_MASK } from './fpu.js';
import { M32, CR0_MP, CR0_TS, CR0_EM, CR4_OSFXSR, CR4_OSXMMEXCPT, Unimplemented } from './machine.js';
import { CpuSystem } from './system.js';

export abstract class CpuFloat extends CpuSystem {
  /** The x87 and SSE state (fpu.ts). */
  readonly fpu = new Fpu();

  /** x87 (d8-df, 9b): the sliver fpu.ts models; #NM with CR0.TS or EM, #MF for a pending unmasked fault. */
  protected x87(op: number): Exit | undefined {
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
  protected sse(op: number): Exit | undefined {
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
  protected mxcsr(n: number): Exit | undefined {
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
}
