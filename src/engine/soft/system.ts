// The software CPU's system layer: one step with its faults and traps,
// exception delivery through the IDT, descriptors and segment loads, the
// I/O permission check, and transfers between privilege levels (iret,
// far jumps, calls and returns) and group 7's system instructions.

import type { Exit, Segment } from '../types.js';
import { AC, ARITH, DF, ID, IF, IOPL, NT, RF, TF, VM } from './flags.js';
import { ACC_USER, CpuFault } from './paging.js';
import { u64, M32, ERROR_CODE, CONTRIBUTORY, CR4_TSD, type SegName, Unimplemented, MmioExit, CpuMachine, MSR } from './machine.js';

export abstract class CpuSystem extends CpuMachine {
  /** Decodes and executes the instruction at rip (the decoder, cpu.ts). */
  protected abstract execute(): Exit | undefined;


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
  protected heldDb = 0;

  /** An enabled execute breakpoint at rip: #DB before the instruction, unless RF says it was taken. */
  protected instructionBreakpoint(): void {
    if (this.fl.bits & RF) return;
    let hits = 0;
    for (const b of this.breakpoints) if (b.rw === 0 && b.lo === this.rip) hits |= 1 << b.n;
    if (!hits) return;
    this.dbg.dr6 |= BigInt(hits);
    throw new CpuFault(1);
  }

  protected fault(e: unknown): Exit | undefined {
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
  protected deliver(vector: number, errorCode: number | undefined, rip: bigint, cr2?: bigint, software = false): void {
    this.delivering = true;
    try {
      this.deliverGate(vector, errorCode, rip, cr2, software);
    } finally {
      this.delivering = false;
    }
  }

  protected deliverGate(vector: number, errorCode: number | undefined, rip: bigint, cr2: bigint | undefined, software: boolean): void {
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
  protected codeDescriptor(selector: number): Segment {
    const d = this.descriptor(selector, 13);
    if (!d || !d.s || !(d.type & 8)) throw new CpuFault(13, selector & ~3);
    if (!d.present) throw new CpuFault(11, selector & ~3);
    return d;
  }

  /** The descriptor `selector` names (undefined for a null selector); past the table's limit: fault `vector`. */
  protected descriptor(selector: number, vector: number): Segment | undefined {
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
  protected loadSegment(name: SegName, selector: number): void {
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
  protected ioAllowed(port: number, size: number): boolean {
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

  protected privileged(): void {
    if (this.cpl !== 0) throw new CpuFault(13, 0);
  }

  protected unknown(): Unimplemented {
    return new Unimplemented('this instruction');
  }

  protected popFlags(v: bigint, width: bigint): void {
    const old = this.fl.materialize();
    let changeable = ARITH | TF | DF | NT | AC | ID;
    if (this.cpl === 0) changeable |= IOPL | IF;
    else if (this.cpl <= ((old & IOPL) >> 12)) changeable |= IF;
    changeable &= Number(width);
    this.fl.bits = ((old & ~changeable) | (Number(v & M32) & changeable)) & ~(RF | VM) | 2;
  }

  protected iret(): Exit | undefined {
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
  protected farTransfer(call: boolean): Exit | undefined {
    if (!this.isMem) throw new CpuFault(6);
    const width = this.opsz === 8 ? 8 : this.opsz === 2 ? 2 : 4;
    const a = this.ea();
    const offset = this.load(a, width), selector = Number(this.load(u64(a + BigInt(width)), 2));
    return this.farJump(offset, selector, call ? width : 0);
  }

  /** To `selector`:`offset`, a code segment of the current privilege; with `push` (bytes) a call, pushing cs and the return address. */
  protected farJump(offset: bigint, selector: number, push = 0): Exit | undefined {
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
  protected farReturn(release: number): Exit | undefined {
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

  protected group7(): Exit | undefined {
    const m = this.f8();
    // vmcall, vmmcall: #GP(0) at CPL 3 (the host paravane was built on); the hypervisor recognises them.
    if (m === 0xc1 || m === 0xd9) throw new CpuFault(this.cpl === 0 ? 6 : 13, 0);
    if (m === 0xf9) { // rdtscp
      if (this.sregs.cr4 & CR4_TSD && this.cpl !== 0) throw new CpuFault(13, 0);
      const t = this.env.tsc();
      this.R[0] = t & M32;
      this.R[2] = (t >> 32n) & M32;
      this.R[1] = (this.msrs.get(MSR.TSC_AUX) ?? 0n) & M32;
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
