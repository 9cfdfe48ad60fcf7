// The CPU of the scripted engine: what hardware does around a guest that a
// test scripts. It walks the page tables in machine memory (4 levels, the
// P, RW and US bits), delivers exceptions as a 64-bit CPU does at CPL 3
// (through the IDT's gate onto the TSS's rsp0 stack, cr2 for a #PF), and
// executes the few instructions of code the CPU runs on the guest's behalf:
// the hypervisor's stubs (exception stubs, LSTAR stub, hypercall page, wait
// stub), found at the IDT's gate targets, the LSTAR/CSTAR targets and the
// pages a test registers (codePages). Any other instruction there is a
// test bug and throws. Inputs: trusted (tests and the hypervisor's tables).

import type { Exit, MachineMemory, RegisterFile, SpecialRegisters } from '../types.js';

/** What the CPU works on: its vCPU's state and guest, and the engine's memory and clock hooks. */
export interface CpuVcpu {
  readonly id: number;
  readonly regs: RegisterFile;
  /** The special registers in place. */
  readonly special: SpecialRegisters;
  readonly msrs: Map<number, bigint>;
  tscNow(): { tsc: bigint; hostNs: bigint };
  /** The guest's next step, when the CPU returns to guest code. */
  nextStep(): Exit;
}
export interface CpuEngine {
  readonly machine: MachineMemory;
  onPause(): void;
  /** Model kvm_pvm's quirk: any guest access in L4 slot 256 faults, whatever the tables say. */
  readonly slot256Faults: boolean;
}

const SLOT256 = 0xffff800000000000n, SLOT257 = 0xffff808000000000n;

const MSR_LSTAR = 0xc0000082, MSR_CSTAR = 0xc0000083, MSR_FMASK = 0xc0000084;
/** Vectors that push an error code. */
const ERROR_CODE = new Set([8, 10, 11, 12, 13, 14, 17, 21, 29, 30]);
const P = 1n, RW = 2n, US = 4n;
const ADDR = 0x000ffffffffff000n;
const PAGE = ~0xfffn & 0xffffffffffffffffn;
/** Instructions one resume may execute before the CPU decides the stub loops. */
const MAX_STEPS = 10_000;
const CF = 1n, PF = 4n, AF = 0x10n, ZF = 0x40n, SF = 0x80n, OF = 0x800n;

/** An access the page tables refuse: the #PF the CPU raises. */
export class PageFault extends Error {
  constructor(readonly address: bigint, readonly errorCode: bigint) {
    super(`#PF at 0x${address.toString(16)} (error code ${errorCode})`);
  }
}

const sx = (v: bigint, bits: number): bigint => BigInt.asIntN(bits, v);
const u64 = (v: bigint): bigint => BigInt.asUintN(64, v);

export class ScriptedCpu {
  /** Guest-virtual pages (page-aligned) whose code the CPU executes itself, beside the IDT's and LSTAR's targets. */
  readonly codePages = new Set<bigint>();
  /** The hypercall page's guest-virtual address (for the 'page' transport). */
  hypercallPage = 0n;

  constructor(private readonly v: CpuVcpu, private readonly engine: CpuEngine) {}

  private get mem(): MachineMemory {
    return this.engine.machine;
  }

  get regs() {
    return this.v.regs;
  }

  // --- Memory through the page tables.

  /** The machine address of `va`, or a PageFault; `user` and `write` as the access is (the guest kernel is at CPL 3: user). */
  translate(va: bigint, write: boolean, user = true): bigint {
    if (user && this.engine.slot256Faults && va >= SLOT256 && va < SLOT257) throw new PageFault(va, (write ? 2n : 0n) | 4n);
    let table = this.v.special.cr3 & ADDR;
    let allowW = true, allowU = true;
    for (let level = 4; level >= 1; level--) {
      const i = (va >> BigInt(12 + 9 * (level - 1))) & 0x1ffn;
      const e = this.readPhys64(table + i * 8n);
      const err = (write ? 2n : 0n) | (user ? 4n : 0n);
      if (!(e & P)) throw new PageFault(va, err);
      allowW &&= (e & RW) !== 0n;
      allowU &&= (e & US) !== 0n;
      if (level > 1 && e & 0x80n) throw new Error('the scripted CPU does not walk superpages');
      table = e & ADDR;
    }
    if ((write && !allowW) || (user && !allowU)) throw new PageFault(va, 1n | (write ? 2n : 0n) | (user ? 4n : 0n));
    return table | (va & 0xfffn);
  }

  private readPhys64(maddr: bigint): bigint {
    const a = Number(maddr);
    const c = this.mem.chunkAt(a);
    return c.view.getBigUint64(a - c.base, true);
  }

  /** Reads guest memory; `user` false reads as the CPU does for itself (ring 0). */
  read(va: bigint, n: number, user = true): Uint8Array {
    const out = new Uint8Array(n);
    for (let i = 0; i < n; i++) {
      const a = Number(this.translate(va + BigInt(i), false, user));
      const c = this.mem.chunkAt(a);
      out[i] = c.bytes[a - c.base]!;
    }
    return out;
  }

  /** Writes guest memory, with the guest's rights (a refused write throws PageFault: see store()). */
  write(va: bigint, bytes: Uint8Array, user = true): void {
    for (let i = 0; i < bytes.length; i++) this.translate(va + BigInt(i), true, user);
    this.poke(va, bytes, user);
  }

  /** Writes through the tables without the RW check (a loader or debugger placing code). */
  poke(va: bigint, bytes: Uint8Array, user = false): void {
    for (let i = 0; i < bytes.length; i++) {
      const a = Number(this.translate(va + BigInt(i), false, user));
      const c = this.mem.chunkAt(a);
      c.bytes[a - c.base] = bytes[i]!;
    }
  }

  readU64(va: bigint, user = true): bigint {
    return new DataView(this.read(va, 8, user).buffer).getBigUint64(0, true);
  }

  private writeU64(va: bigint, v: bigint, user: boolean): void {
    const b = new Uint8Array(8);
    new DataView(b.buffer).setBigUint64(0, u64(v), true);
    this.write(va, b, user);
  }

  /** Pushes on the current stack (the guest's, unless the CPU is in ring 0). */
  push(v: bigint, user = true): void {
    this.regs.rsp = u64(this.regs.rsp - 8n);
    this.writeU64(this.regs.rsp, v, user);
  }

  pop(user = true): bigint {
    const v = this.readU64(this.regs.rsp, user);
    this.regs.rsp = u64(this.regs.rsp + 8n);
    return v;
  }

  // --- What the guest does (each returns the exit that ends the run).

  /**
   * The guest stores `bytes` at `va` with the instruction whose bytes are at
   * rip. Done if the page tables allow it (then the guest continues: the
   * step returns `then`); a refused store raises #PF at rip.
   */
  store(va: bigint, bytes: Uint8Array, then: () => Exit): Exit {
    try {
      this.write(va, bytes);
    } catch (e) {
      if (e instanceof PageFault) return this.raise(14, e.errorCode, e.address);
      throw e;
    }
    return then();
  }

  /**
   * A hypercall through a transport: 'page' calls the hypercall page's
   * stub (pushing rip as the return address), 'syscall' enters the LSTAR
   * stub as `syscall` does, 'vmcall' executes a vmcall placed at rip
   * (which raises #GP(0) at CPL 3 on KVM hosts like the one paravane
   * targets). The arguments go in rdi, rsi, rdx, r10, r8 (rax for syscall
   * and vmcall).
   */
  hypercall(nr: number, args: readonly bigint[] = [], via: 'page' | 'syscall' | 'vmcall' = 'page'): Exit {
    const r = this.regs;
    [r.rdi, r.rsi, r.rdx, r.r10, r.r8] = [0, 1, 2, 3, 4].map((i) => u64(args[i] ?? 0n)) as [bigint, bigint, bigint, bigint, bigint];
    if (via === 'page') {
      if (!this.hypercallPage) throw new Error('the scripted CPU was not told where the hypercall page is');
      this.codePages.add(this.hypercallPage);
      this.push(r.rip);
      r.rip = this.hypercallPage + BigInt(32 * nr);
      return this.execute();
    }
    r.rax = BigInt(nr);
    if (via === 'syscall') return this.syscall();
    this.poke(r.rip, Uint8Array.of(0x0f, 0x01, 0xc1));
    return this.raise(13, 0n);
  }

  /** `syscall` at rip: rcx = return rip (after the 2-byte instruction), r11 = rflags, rflags masked by FMASK, into LSTAR (at CPL 3, as on kvm_pvm). */
  syscall(): Exit {
    const r = this.regs;
    r.rcx = r.rip + 2n;
    r.r11 = r.rflags;
    r.rflags &= ~(this.v.msrs.get(MSR_FMASK) ?? 0n);
    r.rip = this.v.msrs.get(MSR_LSTAR) ?? 0n;
    return this.execute();
  }

  /**
   * The instruction `bytes`, placed at rip, faults with `vector` as it does
   * at CPL 3 (a privileged instruction: #GP(0); ud2 or a prefix the CPU
   * does not know: #UD).
   */
  faulting(bytes: readonly number[], vector: number, errorCode = 0n): Exit {
    this.poke(this.regs.rip, Uint8Array.from(bytes));
    return this.raise(vector, errorCode);
  }

  /** `int $n` at rip: on kvm_pvm a CPL-3 `int` raises #UD at the instruction (the bytes are placed at rip). */
  softwareInterrupt(n: number): Exit {
    this.poke(this.regs.rip, Uint8Array.of(0xcd, n));
    return this.raise(6);
  }

  /** `iret` through the hypercall page's iret slot (the guest pushed its frame and flags first). */
  jumpTo(va: bigint): Exit {
    this.codePages.add(va & PAGE);
    this.regs.rip = va;
    return this.execute();
  }

  /**
   * Raises exception `vector` at rip, as a 64-bit CPU at CPL 3: the frame
   * (ss, rsp, rflags, cs, rip, and the error code if the vector has one)
   * goes on the TSS's rsp0, cr2 is set for a #PF, and the CPU continues at
   * the IDT gate's target (which runs until it exits).
   */
  raise(vector: number, errorCode = 0n, cr2?: bigint): Exit {
    this.deliver(vector, errorCode, cr2);
    return this.execute();
  }

  /**
   * As raise, but a kick stops the vCPU at the instruction boundary after
   * the CPU delivered the exception and before the gate's first
   * instruction: the run ends 'interrupted' with the frame pushed and rip
   * at the stub, which runs when the vCPU next resumes.
   */
  raiseThenInterrupted(vector: number, errorCode = 0n, cr2?: bigint): Exit {
    this.deliver(vector, errorCode, cr2);
    return { kind: 'interrupted' };
  }

  /** What the CPU does to take exception `vector`: the frame on rsp0, cr2, and ring 0 at the IDT gate's target. */
  private deliver(vector: number, errorCode: bigint, cr2: bigint | undefined): void {
    const s = this.v.special;
    const r = this.regs;
    if (vector === 14) s.cr2 = cr2 ?? 0n;
    const rsp0 = this.readU64(s.tr.base + 4n, false);
    const gateLo = this.readU64(s.idt.base + BigInt(16 * vector), false);
    const gateHi = this.readU64(s.idt.base + BigInt(16 * vector) + 8n, false);
    const target = (gateLo & 0xffffn) | ((gateLo >> 32n) & 0xffff0000n) | ((gateHi & 0xffffffffn) << 32n);
    const old = { ss: BigInt(s.ss.selector), rsp: r.rsp, rflags: r.rflags, cs: BigInt(s.cs.selector), rip: r.rip };
    r.rsp = rsp0 & ~0xfn;
    this.push(old.ss, false);
    this.push(old.rsp, false);
    this.push(old.rflags, false);
    this.push(old.cs, false);
    this.push(old.rip, false);
    if (ERROR_CODE.has(vector)) this.push(errorCode, false);
    // Into ring 0 on the gate's code selector, with a null stack selector (64-bit mode).
    const sel = Number((gateLo >> 16n) & 0xffffn);
    s.cs = { ...s.cs, selector: sel, dpl: sel & 3 };
    s.ss = { ...s.ss, selector: 0, dpl: sel & 3 };
    r.rip = target;
    this.codePages.add(target & PAGE);
  }

  // --- The CPU's own code.

  /** At run(): if the vCPU resumes in code the CPU runs (a hypervisor stub), run it; an exit there ends the run. */
  resume(): Exit | undefined {
    return this.inCode(this.regs.rip) ? this.run() : undefined;
  }

  private inCode(rip: bigint): boolean {
    const page = rip & PAGE;
    if (this.codePages.has(page)) return true;
    const lstar = this.v.msrs.get(MSR_LSTAR), cstar = this.v.msrs.get(MSR_CSTAR);
    return (lstar !== undefined && (lstar & PAGE) === page) || (cstar !== undefined && (cstar & PAGE) === page);
  }

  /** Executes from rip until an exit, or until rip leaves the CPU's code (back to the guest: undefined). */
  private run(): Exit | undefined {
    for (let n = 0; n < MAX_STEPS; n++) {
      const exit = this.step();
      if (exit) return exit;
      if (!this.inCode(this.regs.rip)) return undefined;
    }
    throw new Error(`the scripted CPU ran ${MAX_STEPS} instructions of stub code at 0x${this.regs.rip.toString(16)}`);
  }

  /** Executes the CPU's code from rip; back in the guest's code, the guest goes on with its next step. */
  private execute(): Exit {
    return this.run() ?? this.v.nextStep();
  }

  /** An indirect jump from the instruction at `at`: a non-canonical target faults there (#GP(0)), as on hardware. */
  private branch(target: bigint, at: bigint): Exit | undefined {
    const top = target >> 47n;
    if (top !== 0n && top !== 0x1ffffn) {
      this.regs.rip = at;
      return this.raise(13, 0n);
    }
    this.regs.rip = target;
    return undefined;
  }

  /** Whether the TSS's I/O bitmap lets CPL 3 use `port`. */
  private portAllowed(port: number): boolean {
    const tss = this.v.special.tr.base;
    const base = BigInt(new DataView(this.read(tss + 0x66n, 2, false).buffer).getUint16(0, true));
    if (base + BigInt(port >> 3) >= BigInt(this.v.special.tr.limit)) return false;
    return (this.read(tss + base + BigInt(port >> 3), 1, false)[0]! & (1 << (port & 7))) === 0;
  }

  /** One instruction of stub code; returns the exit it causes, if any. */
  private step(): Exit | undefined {
    const r = this.regs;
    const s = this.v.special;
    const user = (s.cs.selector & 3) === 3;
    const b = this.read(r.rip, 15, false);
    const at = r.rip;
    const rel32 = (o: number) => BigInt(new DataView(b.buffer).getInt32(o, true));
    const ripRel = (len: number, dispAt: number) => at + BigInt(len) + rel32(dispAt);
    const hex = [...b.subarray(0, 4)].map((x) => x.toString(16).padStart(2, '0')).join(' ');
    switch (b[0]) {
      case 0xf4: // hlt (ring 0 only)
        if (user) return this.raise(13, 0n);
        r.rip = at + 1n;
        return { kind: 'halt' };
      case 0xe6: { // out %al,$imm8: at CPL 3 only where the TSS I/O bitmap allows the port (IOPL is ignored on kvm_pvm)
        if (user && !this.portAllowed(b[1]!)) return this.raise(13, 0n);
        r.rip = at + 2n;
        const data = Uint8Array.of(Number(r.rax & 0xffn));
        return { kind: 'io', direction: 'out', port: b[1]!, size: 1, count: 1, data };
      }
      case 0xb8: // mov $imm32,%eax (zero-extends)
        r.rax = BigInt(new DataView(b.buffer).getUint32(1, true));
        r.rip = at + 5n;
        return undefined;
      case 0xc3: // ret
        r.rip = this.pop(user);
        return undefined;
      case 0x50: case 0x51: // push %rax, %rcx
        r.rip = at + 1n;
        this.push(b[0] === 0x50 ? r.rax : r.rcx, user);
        return undefined;
      case 0x9d: // popfq
        r.rflags = (this.pop(user) & 0x3f7fd5n) | 2n;
        r.rip = at + 1n;
        return undefined;
      case 0x9e: // sahf
        r.rflags = (r.rflags & ~0xffn) | ((r.rax >> 8n) & 0xd5n) | 2n;
        r.rip = at + 1n;
        return undefined;
      case 0x41:
        if (b[1] === 0x53) { // push %r11
          r.rip = at + 2n;
          this.push(r.r11, user);
          return undefined;
        }
        break;
      case 0xff:
        if (b[1] === 0xe1) return this.branch(r.rcx, at); // jmp *%rcx
        if (b[1] === 0x25) return this.branch(this.readU64(ripRel(6, 2), user), at); // jmp *rel(%rip)
        break;
      case 0x0f:
        if (b[1] === 0x0b) return this.raise(6); // ud2
        if (b[1] === 0x31) { // rdtsc
          const { tsc } = this.v.tscNow();
          r.rax = tsc & 0xffffffffn;
          r.rdx = tsc >> 32n;
          r.rip = at + 2n;
          return undefined;
        }
        break;
      case 0xf3:
        if (b[1] === 0x90) { this.engine.onPause(); r.rip = at + 2n; return undefined; } // pause
        break;
      case 0x72: // jb rel8
        r.rip = at + 2n + (r.rflags & CF ? BigInt(sx(BigInt(b[1]!), 8)) : 0n);
        return undefined;
      case 0x8a: // mov rel(%rip),%al / %ah
        if (b[1] === 0x05 || b[1] === 0x25) {
          const v = BigInt(this.read(ripRel(6, 2), 1, user)[0]!);
          r.rax = b[1] === 0x05 ? (r.rax & ~0xffn) | v : (r.rax & ~0xff00n) | (v << 8n);
          r.rip = at + 6n;
          return undefined;
        }
        break;
      case 0x04: { // add $imm8,%al: the flags as the wait stub relies on (OF, and the rest)
        const a = r.rax & 0xffn, imm = BigInt(b[1]!), sum = (a + imm) & 0xffn;
        const of = ((a ^ sum) & (imm ^ sum) & 0x80n) !== 0n;
        r.rax = (r.rax & ~0xffn) | sum;
        r.rflags = (r.rflags & ~(CF | PF | AF | ZF | SF | OF)) | (a + imm > 0xffn ? CF : 0n) | (sum === 0n ? ZF : 0n) | (sum & 0x80n ? SF : 0n) | (of ? OF : 0n);
        r.rip = at + 2n;
        return undefined;
      }
      case 0x48:
        if (b[1] === 0xcf) { // iretq
          const rip = this.pop(user), cs = this.pop(user), rflags = this.pop(user), rsp = this.pop(user), ss = this.pop(user);
          r.rip = rip;
          r.rflags = rflags | 2n;
          r.rsp = rsp;
          s.cs = { ...s.cs, selector: Number(cs & 0xffffn), dpl: Number(cs & 3n) };
          s.ss = { ...s.ss, selector: Number(ss & 0xffffn), dpl: Number(ss & 3n) };
          return undefined;
        }
        if (b[1] === 0x83 && b[2] === 0xc4) { r.rsp = u64(r.rsp + BigInt(sx(BigInt(b[3]!), 8))); r.rip = at + 4n; return undefined; } // add $imm8,%rsp
        if (b[1] === 0xc1 && b[2] === 0xe2) { r.rdx = u64(r.rdx << BigInt(b[3]!)); r.rip = at + 4n; return undefined; } // shl $imm8,%rdx
        if (b[1] === 0x09 && b[2] === 0xd0) { r.rax |= r.rdx; r.rip = at + 3n; return undefined; } // or %rdx,%rax
        if (b[1] === 0x3b && b[2] === 0x05) { // cmp rel(%rip),%rax: CF as unsigned below
          const m = this.readU64(ripRel(7, 3), user);
          r.rflags = (r.rflags & ~(CF | ZF)) | (r.rax < m ? CF : 0n) | (r.rax === m ? ZF : 0n);
          r.rip = at + 7n;
          return undefined;
        }
        if (b[1] === 0x8b && (b[2] === 0x05 || b[2] === 0x15)) { // mov rel(%rip),%rax / %rdx
          const m = this.readU64(ripRel(7, 3), user);
          if (b[2] === 0x05) r.rax = m; else r.rdx = m;
          r.rip = at + 7n;
          return undefined;
        }
        break;
    }
    throw new Error(`the scripted CPU cannot execute ${hex} at 0x${at.toString(16)}`);
  }
}
