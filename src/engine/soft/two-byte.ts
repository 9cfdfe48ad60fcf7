// The software CPU's two-byte opcode map (0f xx): conditional moves and
// jumps, setcc, syscall and sysenter, bit operations and scans, cmpxchg,
// xadd, movzx/movsx, cpuid, rdtsc, and the SSE entry points.

import type { Exit } from '../types.js';
import { CF, Flags, MASK, OF, RF, SIGN, ZF } from './flags.js';
import { CpuFault } from './paging.js';
import { u64, M32, EFER_SCE, CR0_TS, CR0_EM, CR4_TSD, CR4_PCE, CR4_FSGSBASE, MSR, Unimplemented } from './machine.js';
import { CpuInteger } from './integer.js';

export abstract class CpuTwoByte extends CpuInteger {

  protected execute0f(op: number): Exit | undefined {
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
        if ((this.msrs.get(MSR.SYSENTER_CS) ?? 0n) === 0n) throw new CpuFault(13, 0);
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

  protected bitTest(op: number): Exit | undefined {
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
}
