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
// The CPU is built in layers, each a file: machine.ts (state, memory,
// fetch), system.ts (steps, exceptions, privilege), float.ts, integer.ts,
// two-byte.ts, and this one, the one-byte opcode map and prefixes.
//
// Inputs: guest code and guest tables are untrusted; every access goes
// through the page tables, and nothing a guest does throws out of step()
// except as an exit.


import type { Exit } from '../types.js';
import { CF, DF, IF, IOPL, Lazy, MASK, RF, SIGN, VM } from './flags.js';
import { CpuFault } from './paging.js';
import { u64, M32, SEG_NAMES, type SegName } from './machine.js';
import { CpuTwoByte } from './two-byte.js';

export { MmioExit, Unimplemented, type CpuEnv, type PendingIo } from './machine.js';

export class SoftCpu extends CpuTwoByte {

  // --- Decoding and execution.

  protected execute(): Exit | undefined {
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

  protected execute1(op: number): Exit | undefined {
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

  protected segByIndex(i: number): SegName {
    if (i > 5) throw new CpuFault(6);
    return SEG_NAMES[i]!;
  }
}
