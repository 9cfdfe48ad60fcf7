// The software CPU's integer operations: the ALU and its flags, shifts and
// rotates, multiply and divide, near and indirect transfers, inc/dec and
// the string instructions.

import type { Exit } from '../types.js';
import { CF, DF, Flags, Lazy, MASK, OF, SIGN } from './flags.js';
import { CpuFault } from './paging.js';
import { u64, M32 } from './machine.js';
import { CpuFloat } from './float.js';

export abstract class CpuInteger extends CpuFloat {

  /** Operand size of a byte/other pair: opcode bit 0 clear means a byte operation. */
  protected sz(op: number): number {
    return op & 1 ? this.opsz : 1;
  }

  protected alu(n: number, a: bigint, b: bigint, size: number): bigint {
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

  protected jump(target: bigint): undefined {
    this.rip = this.compat ? target & M32 : this.canonical(u64(target));
    return undefined;
  }

  protected shift(n: number, size: number, countIn: number): void {
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

  protected imulStore(reg: number, a: bigint, b: bigint, size: number): void {
    const bits = size * 8;
    const full = BigInt.asIntN(bits, a) * BigInt.asIntN(bits, b);
    const r = full & MASK[size]!;
    const over = BigInt.asIntN(bits, r) !== full;
    this.setReg(reg, size, r);
    this.fl.setArith(Flags.szp(r, size) | (over ? CF | OF : 0));
  }

  protected group3(size: number): Exit | undefined {
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

  protected group45(op: number): Exit | undefined {
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
  protected string(op: number): Exit | undefined {
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
}
