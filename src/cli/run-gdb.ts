// `paravane run --gdb PORT`: one PV domain under GDB's remote protocol
// (src/toolstack/gdb-remote.ts). The domain is built and held before its
// first instruction until gdb connects and continues. A stop is a pause of
// the domain (its run waits, as for `paravane pause`): at a breakpoint the
// stub set (an int3 written into the guest's code through its page
// tables, the byte it replaced kept and shown to gdb's reads), after a
// single step (the guest's TF, the #DB taken by the core's debug hook
// before the guest could see it), or at gdb's interrupt. Registers are the
// vCPU's as the core keeps them while it is stopped; memory is read and
// written through the guest's current page tables (a breakpoint may go in
// read-only code, as a debugger's does). The domain's end is reported to
// gdb as an exit (W) or a kill (X).

import type { Domain } from '../hv/domain/domain.js';
import type { DebugHook } from '../hv/cpu/debugger.js';
import type { GuestState } from '../hv/cpu/guest-state.js';
import type { FrameTable } from '../hv/mm/frames.js';
import { GuestFault } from '../hv/mm/guest-access.js';
import { GdbServer, SIGINT, SIGSEGV, SIGTRAP, type GdbTarget } from '../toolstack/gdb-remote.js';

const TF = 0x100n;
const INT3 = 0xcc;
/** #GP((3 << 3) | 2): int3 through the hypervisor's DPL-0 gate (hardware and the software engine). */
const INT3_GP = 0x1an;

export class DomainDebugger implements GdbTarget, DebugHook {
  private readonly breakpoints = new Map<bigint, { maddr: number; byte: number }>();
  private stepping: { guestTf: boolean } | undefined;
  /** The guest's state where it stopped at a debug exception (else the vCPU's, v.stoppedState). */
  private stopFrame: GuestState | undefined;
  private interrupting = false;
  /** Why the domain was crashing when it stopped for the debugger: it crashes when the debugger lets it go on. */
  private crashing: string | undefined;
  server!: GdbServer;
  /** Resolves when gdb first lets the domain run. */
  readonly started: Promise<void>;
  private start!: () => void;
  private hasStarted = false;
  /** Resumes the paused domain's run (set by its run while it is paused). */
  resumeRun: (() => void) | undefined;

  constructor(private readonly d: Domain, private readonly frames: FrameTable) {
    this.started = new Promise((res) => { this.start = res; });
  }

  private get vcpu() {
    return this.d.vcpus[0]!;
  }

  private state(): GuestState {
    return this.stopFrame ?? this.vcpu.stoppedState;
  }

  trap(vcpu: number, vector: number, errorCode: bigint | undefined, frame: GuestState): boolean {
    if (vcpu !== 0) return false;
    if (vector === 1 && this.stepping) {
      if (!this.stepping.guestTf) frame.rflags &= ~TF;
      this.stepping = undefined;
      this.stop(frame);
      return true;
    }
    const int3 = (vector === 13 && errorCode === INT3_GP) || vector === 6 || vector === 3;
    if (int3 && this.breakpoints.has(frame.rip)) {
      this.stop(frame);
      return true;
    }
    return false;
  }

  private stop(frame: GuestState): void {
    this.stopFrame = frame;
    this.d.pause();
    this.server.report({ kind: 'stopped', signal: SIGTRAP });
  }

  holdCrash(reason: string): boolean {
    if (this.crashing !== undefined || !this.hasStarted) return false;
    this.crashing = reason;
    this.stopFrame = undefined;
    this.server.report({ kind: 'stopped', signal: SIGSEGV });
    return true;
  }

  /** A crash held for the debugger goes ahead (it let the domain go on, or killed or left it). */
  private letCrash(): boolean {
    if (this.crashing === undefined) return false;
    this.d.crash(this.crashing);
    this.resumeRun?.();
    return true;
  }

  /** The domain's run paused (at a stop, or for gdb's interrupt): an interrupt's stop is reported now. */
  paused(): void {
    if (!this.interrupting) return;
    this.interrupting = false;
    this.stopFrame = undefined;
    this.server.report({ kind: 'stopped', signal: SIGINT });
  }

  registers(): Uint8Array {
    const s = this.state();
    const r = this.vcpu.engine.regs;
    const out = new Uint8Array(16 * 8 + 8 + 4 * 7);
    const v = new DataView(out.buffer);
    const gprs = [r.rax, r.rbx, r.rcx, r.rdx, r.rsi, r.rdi, r.rbp, s.rsp, r.r8, r.r9, r.r10, r.r11, r.r12, r.r13, r.r14, r.r15];
    gprs.forEach((x, i) => v.setBigUint64(i * 8, BigInt.asUintN(64, x), true));
    v.setBigUint64(128, BigInt.asUintN(64, s.rip), true);
    v.setUint32(136, Number(s.rflags & 0xffffffffn), true);
    v.setUint32(140, Number(s.cs & 0xffffn), true);
    v.setUint32(144, Number(s.ss & 0xffffn), true);
    return out;
  }

  /** The machine address of guest-virtual `va` through the current tables, or undefined where nothing is mapped. */
  private machine(va: bigint): number | undefined {
    try {
      return this.vcpu.emulation.guest.translate(va, false);
    } catch (e) {
      if (e instanceof GuestFault) return undefined;
      throw e;
    }
  }

  private byteAt(maddr: number): { page: Uint8Array; at: number } {
    return { page: this.frames.bytes(Math.floor(maddr / 4096)), at: maddr % 4096 };
  }

  readMemory(addr: bigint, len: number): Uint8Array | undefined {
    const out = new Uint8Array(len);
    for (let i = 0; i < len; i++) {
      const va = BigInt.asUintN(64, addr + BigInt(i));
      const bp = this.breakpoints.get(va);
      if (bp) {
        out[i] = bp.byte; // gdb sees the code, not the stub's int3
        continue;
      }
      const m = this.machine(va);
      if (m === undefined) return i ? out.subarray(0, i) : undefined;
      const { page, at } = this.byteAt(m);
      out[i] = page[at]!;
    }
    return out;
  }

  writeMemory(addr: bigint, bytes: Uint8Array): boolean {
    const where: number[] = [];
    for (let i = 0; i < bytes.length; i++) {
      const m = this.machine(BigInt.asUintN(64, addr + BigInt(i)));
      if (m === undefined) return false;
      where.push(m);
    }
    where.forEach((m, i) => {
      const { page, at } = this.byteAt(m);
      page[at] = bytes[i]!;
    });
    return true;
  }

  insertBreakpoint(addr: bigint): boolean {
    if (this.breakpoints.has(addr)) return true;
    const m = this.machine(addr);
    if (m === undefined) return false;
    const { page, at } = this.byteAt(m);
    this.breakpoints.set(addr, { maddr: m, byte: page[at]! });
    page[at] = INT3;
    return true;
  }

  removeBreakpoint(addr: bigint): boolean {
    const bp = this.breakpoints.get(addr);
    if (!bp) return true;
    const { page, at } = this.byteAt(bp.maddr);
    if (page[at] === INT3) page[at] = bp.byte;
    this.breakpoints.delete(addr);
    return true;
  }

  resume(step: boolean): void {
    if (this.letCrash()) return;
    if (step) {
      const s = this.state();
      this.stepping = { guestTf: (s.rflags & TF) !== 0n };
      s.rflags |= TF;
    }
    this.stopFrame = undefined;
    if (!this.hasStarted) {
      this.hasStarted = true;
      this.start();
      return;
    }
    this.resumeRun?.();
  }

  interrupt(): void {
    this.interrupting = true;
    this.d.pause();
  }

  kill(): void {
    if (this.letCrash()) return;
    this.d.kill('killed by the debugger');
    if (!this.hasStarted) {
      this.hasStarted = true;
      this.start();
    }
    this.resumeRun?.();
  }

  /** Takes the stub's int3s out of the guest's code (the domain runs on without the debugger). */
  clear(): void {
    for (const addr of [...this.breakpoints.keys()]) this.removeBreakpoint(addr);
  }
}
