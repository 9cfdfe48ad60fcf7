// The virtual CPU a PV guest kernel sees in place of the real one's
// exception machinery, as Xen gives it: a trap table (set_trap_table), the
// callbacks (event, failsafe, syscall), the kernel stack for events that
// interrupt user mode (stack_switch), the virtual CR0.TS, the segment
// bases; and what the hypervisor does with them: bounce frames (Xen's
// create_bounce_frame) that deliver exceptions, event upcalls and user
// system calls to the guest kernel's handlers, and the iret hypercall that
// returns from them, switching between guest kernel and user mode. Inputs:
// the guest's registers, stack and iret frames (hostile); a frame that
// cannot be written or used is a reason to crash the domain, returned to
// the caller.

import type { TraceSink } from './trace-sink.js';
import type { Vcpu } from '../../engine/types.js';
import { IretContext, SegmentBase as Segbase, VcpuGuestContextFlags as Vgcf } from '../../abi/generated/arch-x86.js';
import { CallbackType } from '../../abi/generated/callback.js';
import { errno, type CallbackEntry, type CpuContext } from '../hypercalls/context.js';
import { GuestFault, isCanonical } from '../mm/guest-access.js';
import { CR4, MSR, SEL } from '../mm/xen-space.js';
import { hex } from '../format.js';
import { EXIT } from './exit-counts.js';
import type { GuestState, RegsState } from './guest-state.js';
import type { VcpuAddressSpace } from './address-space.js';
import type { VcpuInfoArea } from './vcpu-info.js';
import type { VcpuDescriptorTables } from './descriptor-tables.js';
import type { VcpuDebugRegisters } from './debug-registers.js';
import { ARITH, RFLAGS } from './rflags.js';
import { CR4_FSGSBASE } from './cr4.js';
import type { PvCpuidPolicy } from './cpuid-policy.js';

const { IF, DF } = RFLAGS;
const CR0_TS = 8n;
/** RFLAGS bits a bounce clears on entry to the handler. */
const BOUNCE_CLEARS = RFLAGS.TF | RFLAGS.NT | RFLAGS.RF | RFLAGS.VM | RFLAGS.AC;
/** RFLAGS bits an iret frame may set: the arithmetic flags, TF, DF, AC, ID (not IOPL, NT, RF, VM). */
const IRET_KEEPS = ARITH | RFLAGS.TF | RFLAGS.DF | RFLAGS.AC | RFLAGS.ID;
/** What a guest-supplied rflags (an iret frame's, a syscall's r11) becomes: filtered, IF and the fixed bit set. */
export const guestRflags = (v: bigint): bigint => (v & IRET_KEEPS) | IF | RFLAGS.FIXED;

/** Where bounce frames are built (at most 11 words: the failsafe frame); one core thread, one buffer. */
const frameBytes = new Uint8Array(11 * 8);
const frameView = new DataView(frameBytes.buffer);
const NO_EXTRA: readonly bigint[] = [];

/**
 * A frame the iret hypercall asked to resume: to guest user mode if
 * `toUser`. `failsafe`: why its selectors cannot be loaded; the failsafe
 * callback then gets it instead.
 */
export interface IretFrame {
  rax: bigint; r11: bigint; rcx: bigint; inSyscall: boolean; rip: bigint; cs: bigint; rflags: bigint; rsp: bigint; ss: bigint;
  toUser: boolean; failsafe?: string;
}

/** What the virtual traps use of their vCPU. */
export interface TrapsHost {
  readonly engine: Vcpu;
  /** VMASST_TYPE_architectural_iopl is on: iret frames carry the virtual IOPL, and bounce frames report it. */
  readonly architecturalIopl: boolean;
  readonly space: VcpuAddressSpace;
  readonly info: VcpuInfoArea;
  /** The vCPU's registers as a GuestState. */
  readonly regsState: RegsState;
  readonly descriptors: VcpuDescriptorTables;
  readonly debug: VcpuDebugRegisters;
  /** What the machine offers guests (compatibility mode among it). */
  readonly cpuid: Pick<PvCpuidPolicy, 'compatMode'>;
  count(kind: number): void;
  /** The vCPU's number, and where its upcalls are recorded when the run is traced. */
  readonly index: number;
  readonly trace: TraceSink | undefined;
}

export class VirtualTraps implements CpuContext {
  /** The virtual IDT (set_trap_table): per vector the handler (0: none), its selector and flags. */
  private readonly address: bigint[] = new Array<bigint>(256).fill(0n);
  private readonly flags = new Uint8Array(256);
  private readonly cs = new Uint16Array(256);
  /** stack_switch: the kernel stack for events that interrupt guest user mode (64-bit frames always get Xen's flat ss). */
  kernelSp = 0n;
  /** The virtual CR0.TS (fpu_taskswitch). */
  taskSwitched = false;
  private guestCr4 = CR4;

  /** The guest's virtual CR4 (what `mov` from CR4 reads): at first the CR4 the vCPU runs with. */
  get cr4(): bigint {
    return this.guestCr4;
  }

  /** Sets the virtual CR4; its FSGSBASE bit is the one the vCPU runs with (fixupGuestCr4 admits it only where offered). */
  set cr4(v: bigint) {
    const changed = (v ^ this.guestCr4) & CR4_FSGSBASE;
    this.guestCr4 = v;
    if (!changed) return;
    const e = this.v.engine;
    const s = e.getSpecialRegisters();
    s.cr4 = (s.cr4 & ~CR4_FSGSBASE) | (v & CR4_FSGSBASE);
    e.setSpecialRegisters(s);
  }
  /**
   * The virtual IOPL (0-3): whether the guest's cli, sti, in and out are
   * emulated (emulate.ts). Set by PHYSDEVOP_set_iopl, or, with
   * VMASST_TYPE_architectural_iopl, by the IOPL field of an iret frame.
   */
  iopl = 0;
  /** Callback entry points by CALLBACKTYPE_*. */
  readonly callbacks = new Map<number, CallbackEntry>();
  /** The guest's rsp when the hypercall in progress was made (the iret hypercall reads its frame there). */
  callRsp = 0n;
  /** A frame the iret hypercall asked to resume, applied by the transport when the call returns. */
  private pendingIret: IretFrame | undefined;

  constructor(private readonly v: TrapsHost) {}

  // --- CpuContext: what the trap hypercalls record.

  setTrap(vector: number, flags: number, cs: number, address: bigint): void {
    this.address[vector] = address;
    this.flags[vector] = flags;
    this.cs[vector] = cs;
  }

  clearTraps(): void {
    this.address.fill(0n);
    this.flags.fill(0);
    this.cs.fill(0);
  }

  setKernelStack(sp: bigint): void {
    this.kernelSp = sp;
  }

  setCallback(type: number, entry: CallbackEntry): void {
    this.callbacks.set(type, entry);
  }

  setIopl(iopl: number): void {
    this.iopl = iopl;
  }

  setGdt(frames: readonly bigint[], entries: number): bigint {
    return this.v.descriptors.setGdt(frames, entries);
  }

  setDebugreg(reg: number, value: bigint): bigint {
    return this.v.debug.set(reg, value);
  }

  getDebugreg(reg: number): bigint {
    return this.v.debug.get(reg);
  }

  /** fpu_taskswitch: the virtual CR0.TS, and the real one (an FPU instruction then raises #NM). */
  setTaskSwitched(on: boolean): void {
    if (on === this.taskSwitched) return;
    this.taskSwitched = on;
    const e = this.v.engine;
    const s = e.getSpecialRegisters();
    s.cr0 = on ? s.cr0 | CR0_TS : s.cr0 & ~CR0_TS;
    e.setSpecialRegisters(s);
  }

  /** set_segment_base (kernel mode): FS, the user GS (the swapped-out base), the kernel GS. */
  setSegmentBase(which: number, base: bigint): bigint {
    switch (which) {
      case Segbase.SEGBASE_FS:
      case Segbase.SEGBASE_GS_USER:
      case Segbase.SEGBASE_GS_KERNEL: {
        if (!isCanonical(base)) return errno('XEN_EINVAL');
        const msr = which === Segbase.SEGBASE_FS ? MSR.FS_BASE : which === Segbase.SEGBASE_GS_USER ? MSR.KERNEL_GS_BASE : MSR.GS_BASE;
        this.v.engine.setMsrs([[msr, base]]);
        return 0n;
      }
      case Segbase.SEGBASE_GS_USER_SEL: {
        // Loading a user GS selector (RPL forced to 3), as Xen: the user GS base becomes its
        // descriptor's (Xen's flat selectors and the guest's GDT; no LDT is loaded here), and a
        // selector whose load would fault becomes the null one (base 0). It never fails: Linux
        // BUG()s if it does, and loads __USER_DS this way at every context switch on AMD hosts.
        const sel = Number(base & 0xffffn);
        const gsBase = (sel & ~3) !== 0 ? this.v.descriptors.dataBase(sel) ?? 0n : 0n;
        this.v.engine.setMsrs([[MSR.KERNEL_GS_BASE, gsBase]]);
        return 0n;
      }
      default:
        return errno('XEN_EINVAL');
    }
  }

  /**
   * The iret hypercall: reads struct iret_context at the guest's rsp (rax,
   * r11, rcx, flags, rip, cs, rflags, rsp, ss, pushed by the guest and the
   * hypercall page's iret stub) and checks it; the transport applies it
   * (applyIret) when the call returns. Returns a reason to crash the domain
   * instead.
   */
  iret(): string | undefined {
    let c: IretContext;
    try {
      c = IretContext.over(this.v.space.guest.read(this.callRsp, IretContext.SIZE).buffer);
    } catch (e) {
      if (e instanceof GuestFault) return `the frame at ${hex(this.callRsp)} cannot be read (${e.reason})`;
      throw e;
    }
    const cs = Number(c.cs & 0xffffn), ss = Number(c.ss & 0xffffn);
    // RPL 3 returns to guest user mode (the kernel's own frames have RPL 0), as Xen's do_iret.
    const toUser = (cs & 3) === 3;
    if (toUser && !this.v.space.userCr3Mfn) return 'a return to guest user mode with no user page tables (MMUEXT_NEW_USER_BASEPTR)';
    const rip = c.rip;
    if (!isCanonical(rip)) return `rip ${hex(rip)} is not canonical`;
    // Selectors the return cannot load (the CPU's iretq to CPL 3 would fault): Xen's failsafe callback gets the frame.
    // Xen's flat ones and the guest's own (set_gdt) load: a 64-bit code segment, and a writable data segment or null.
    const d = this.v.descriptors;
    // A 32-bit code selector returns to compatibility mode, as on Xen, where the engine runs 32-bit code.
    const kind = d.selectorKind(cs);
    const loadable = kind === 'code64' || (kind === 'code32' && this.v.cpuid.compatMode);
    const failsafe = !loadable ? `code selector ${hex(cs)} (not a present DPL 3 ${this.v.cpuid.compatMode ? '' : '64-bit '}code segment)`
      : (ss & ~3) !== 0 && d.selectorKind(ss) !== 'data' ? `stack selector ${hex(ss)}` : undefined;
    if (failsafe && !this.callbacks.get(CallbackType.CALLBACKTYPE_failsafe)?.address) return `${failsafe}, and no failsafe callback`;
    this.pendingIret = {
      rax: c.rax, r11: c.r11, rcx: c.rcx, inSyscall: (c.flags & BigInt(Vgcf.VGCF_in_syscall)) !== 0n,
      rip, cs: c.cs & 0xffffn, rflags: c.rflags, rsp: c.rsp, ss: c.ss & 0xffffn, toUser, failsafe,
    };
    return undefined;
  }

  /** The frame an iret hypercall prepared, if the call just made was one (taken once). */
  takeIret(): IretFrame | undefined {
    const f = this.pendingIret;
    this.pendingIret = undefined;
    return f;
  }

  /**
   * Resumes an iret frame into `state` (the ring-0 frame for vmcall, the
   * registers otherwise), switching to guest user mode for a user frame. A
   * frame whose selectors cannot be loaded goes to the failsafe callback
   * instead: Xen's frame of rcx, r11, ds, es, fs, gs (null here: paravane
   * loads no data selectors), rip, cs, rflags, rsp, ss. Returns a reason
   * to crash the domain when that callback cannot be entered.
   */
  applyIret(f: IretFrame, state: GuestState): string | undefined {
    const r = this.v.engine.regs;
    r.rax = f.rax;
    if (!f.inSyscall) {
      r.rcx = f.rcx;
      r.r11 = f.r11;
    }
    // The guest's virtual IF: events masked unless the frame's IF was set.
    this.v.info.masked = !(f.rflags & IF);
    // With architectural IOPL, the frame's IOPL field is the new virtual IOPL (Xen's do_iret).
    if (this.v.architecturalIopl) this.iopl = Number((f.rflags & RFLAGS.IOPL) >> 12n);
    // Where the vCPU goes: the frame, or the failsafe callback's entry with the frame saved on its stack.
    const to: GuestState = { rip: f.rip, cs: f.cs, rflags: guestRflags(f.rflags), rsp: f.rsp, ss: f.ss };
    if (f.failsafe) {
      const cb = this.callbacks.get(CallbackType.CALLBACKTYPE_failsafe)!;
      const problem = this.createBounceFrame(to, cb.address, SEL.CS64, cb.maskEvents, [0n, 0n, 0n, 0n], f.toUser);
      if (problem) return `iret hypercall: ${f.failsafe}; the failsafe callback could not be entered: ${problem}`;
    } else if (f.toUser) {
      this.v.space.toggle();
    }
    // The frame's selectors (RPL 3, as Xen's iret) where the CPU loads them, from the ring-0 frame.
    // Through the registers Xen's flat ones go in their place: in 64-bit mode a DPL 3 64-bit code
    // segment and a DPL 3 data segment behave alike whatever their entry; only the selector value the
    // guest could read back differs. A 32-bit code selector is loaded either way: it changes the mode.
    // (A failsafe frame keeps the guest's in memory.)
    state.rip = to.rip;
    const compat = !f.failsafe && this.v.cpuid.compatMode && this.v.descriptors.selectorKind(Number(f.cs)) === 'code32';
    if (!state.flat) {
      state.cs = f.failsafe ? BigInt(SEL.CS64) : f.cs | 3n;
      state.ss = f.failsafe || (f.ss & ~3n) === 0n ? BigInt(SEL.DS) : f.ss | 3n;
    } else {
      state.cs = compat ? f.cs | 3n : BigInt(SEL.CS64);
    }
    state.rflags = to.rflags;
    state.rsp = to.rsp;
    return undefined;
  }

  /** Whether vector `v` has a handler. */
  hasHandler(vector: number): boolean {
    return this.address[vector] !== 0n;
  }

  /** Whether `int $n` is permitted from the current mode by its gate's DPL (1: kernel, 3: user too). */
  intPermitted(n: number): boolean {
    return (this.flags[n]! & 3) >= (this.v.space.userMode ? 3 : 1);
  }

  /**
   * Delivers exception `vector` to the guest's handler, as Xen's
   * create_bounce_frame: on the guest kernel stack (16-byte aligned), low to
   * high, rcx, r11, [error code], rip, cs (RPL cleared: interrupted kernel
   * mode; the event mask in bits 32-39), rflags (IF = events unmasked), rsp,
   * ss; then the vCPU continues at the handler on that frame, with TF, NT,
   * RF and AC cleared, and events masked if the trap's flags ask; a #PF's
   * address (`cr2`) goes to vcpu_info.arch.cr2. Returns a reason when it
   * cannot be done (the domain is then crashed).
   */
  bounce(vector: number, errorCode: bigint | undefined, state: GuestState, cr2: bigint): string | undefined {
    if (vector === 14) {
      this.v.info.cr2 = cr2;
      // U: whether guest user mode faulted, as Xen reports it (at CPL 3 the CPU always sets it).
      errorCode = this.v.space.userMode ? errorCode! | 4n : errorCode! & ~4n;
    }
    if (vector === 7 && this.taskSwitched) this.setTaskSwitched(false); // as Xen: the #NM clears the virtual TS
    const cs = state.flat ? SEL.CS64 : this.cs[vector] || SEL.CS64;
    const problem = this.createBounceFrame(state, this.address[vector]!, cs, (this.flags[vector]! & 4) !== 0,
      errorCode === undefined ? NO_EXTRA : [errorCode]);
    if (!problem) this.v.count(EXIT.bounce);
    return problem;
  }

  /**
   * Xen's create_bounce_frame: writes rcx, r11, `extra` (an error code, or
   * the failsafe callback's data selectors), rip, cs (the event mask in
   * bits 32-39), rflags (IF = events unmasked), rsp and ss, 16-byte
   * aligned, and makes `state` resume at `handler` on that frame in guest
   * kernel mode, with TF, NT, RF and AC cleared; with `maskEvents`, events
   * are then masked. From kernel mode the frame goes below the interrupted
   * stack and cs has its RPL cleared; from user mode (`fromUser`) it goes
   * on the kernel stack (stack_switch), cs keeps RPL 3, and the vCPU
   * switches to kernel mode. Returns a reason when the frame cannot be
   * written (nothing changed).
   */
  createBounceFrame(state: GuestState, handler: bigint, cs: number, maskEvents: boolean, extra: readonly bigint[] = NO_EXTRA,
    fromUser = this.v.space.userMode): string | undefined {
    const r = this.v.engine.regs;
    const info = this.v.info;
    const rflags = state.rflags;
    const rsp = state.rsp;
    if (fromUser && !this.kernelSp) return 'guest user mode was interrupted and there is no kernel stack (stack_switch)';
    const base = fromUser ? this.kernelSp : rsp;
    const mask = info.masked ? 1n : 0n;
    const savedCs = fromUser ? state.cs & 0xffffn : state.cs & 0xfffcn;
    // Low to high: rcx, r11, extra, rip, cs, rflags, rsp, ss (built in one buffer: this runs for every upcall).
    const f = frameView;
    const words = 7 + extra.length;
    f.setBigUint64(0, r.rcx, true);
    f.setBigUint64(8, r.r11, true);
    extra.forEach((w, i) => f.setBigUint64(16 + 8 * i, BigInt.asUintN(64, w), true));
    const tail = 16 + 8 * extra.length;
    f.setBigUint64(tail, BigInt.asUintN(64, state.rip), true);
    f.setBigUint64(tail + 8, savedCs | (mask << 32n), true);
    // The saved rflags: IF is the virtual one; with architectural IOPL, so is the IOPL field.
    const saved = this.v.architecturalIopl ? (rflags & ~RFLAGS.IOPL) | (BigInt(this.iopl) << 12n) : rflags;
    f.setBigUint64(tail + 16, BigInt.asUintN(64, mask ? saved & ~IF : saved | IF), true);
    f.setBigUint64(tail + 24, BigInt.asUintN(64, rsp), true);
    f.setBigUint64(tail + 32, BigInt.asUintN(64, state.ss), true);
    const sp = (base & ~0xfn) - BigInt(words * 8);
    try {
      this.v.space.kernelMemory.write(sp, frameBytes.subarray(0, words * 8));
    } catch (e) {
      if (e instanceof GuestFault) return `the bounce frame at ${hex(sp)} cannot be written (${e.reason})`;
      throw e;
    }
    if (this.v.space.userMode) this.v.space.toggle();
    state.rip = handler;
    state.cs = BigInt(cs);
    state.rflags = rflags & ~BOUNCE_CLEARS;
    state.rsp = sp;
    state.ss = BigInt(SEL.DS);
    if (maskEvents) info.masked = true;
    return undefined;
  }

  /**
   * Delivers a pending event upcall (Xen: on every return to the guest when
   * evtchn_upcall_pending is set and evtchn_upcall_mask clear) to the
   * event callback, with events masked, into `state`: the registers, or
   * the ring-0 frame the vCPU is about to iretq to. Returns a reason to
   * crash the domain when the frame cannot be written.
   */
  deliverUpcall(state: GuestState): string | undefined {
    if (!this.v.info.upcallDeliverable()) return undefined;
    const cb = this.callbacks.get(CallbackType.CALLBACKTYPE_event);
    if (!cb || !cb.address) return undefined;
    const at = state.rip;
    const problem = this.createBounceFrame(state, cb.address, SEL.CS64, true);
    if (problem) return `the event upcall could not be delivered: ${problem}`;
    this.v.count(EXIT.upcall);
    this.v.trace?.upcall(this.v.index, at);
    return undefined;
  }

  /**
   * `sysenter`, which faults at CPL 3 (#GP(0); #UD on AMD in long mode), as
   * Xen's sysenter entry takes it: the calling state is discarded (the
   * frame holds rip 0, cs 3, a null selector of RPL 3, rsp 0 and Xen's user
   * ss, with NT cleared; rcx and rdx carry the SYSEXIT ABI's values), and
   * the vCPU enters the sysenter callback in kernel mode, events masked if
   * it was registered so. With no callback it gets #GP(0) with that frame.
   * Returns a reason to crash the domain when neither can be delivered.
   */
  sysenter(state: GuestState): string | undefined {
    const at = state.rip;
    state.rip = 0n;
    state.cs = 3n;
    state.rsp = 0n;
    state.ss = BigInt(SEL.DS);
    state.rflags &= ~RFLAGS.NT;
    const cb = this.callbacks.get(CallbackType.CALLBACKTYPE_sysenter);
    if (!cb?.address) {
      if (!this.hasHandler(13)) return `sysenter at rip ${hex(at)}: no sysenter callback, and no #GP handler`;
      const problem = this.bounce(13, 0n, state, 0n);
      return problem && `#GP for a sysenter at rip ${hex(at)} with no sysenter callback could not be delivered: ${problem}`;
    }
    const problem = this.createBounceFrame(state, cb.address, SEL.CS64, cb.maskEvents);
    if (problem) return `sysenter at rip ${hex(at)} could not be delivered: ${problem}`;
    this.v.count(EXIT.bounce);
    return undefined;
  }

  /**
   * `syscall` from 32-bit code in guest user mode (it reached the CSTAR
   * stub, which faulted): as Xen's cstar entry for a 64-bit PV guest, the
   * frame is put back to the syscall's return (rcx, r11's flags, the 32-bit
   * user code selector) and bounced in kernel mode to the syscall32
   * callback, or the syscall callback if there is none, DF cleared. With
   * neither the guest gets #UD at the syscall instruction. Returns a
   * reason to crash the domain when nothing can be delivered.
   */
  compatSyscall(state: GuestState): string | undefined {
    const r = this.v.engine.regs;
    state.rip = r.rcx & 0xffffffffn;
    state.rflags = guestRflags(r.r11);
    state.cs = BigInt(SEL.CS32);
    const cb = [CallbackType.CALLBACKTYPE_syscall32, CallbackType.CALLBACKTYPE_syscall].map((t) => this.callbacks.get(t)).find((c) => c?.address);
    if (!cb) {
      state.rip -= 2n;
      if (!this.hasHandler(6)) return `32-bit syscall at rip ${hex(state.rip)} in guest user mode: no syscall callback, and no #UD handler`;
      const problem = this.bounce(6, undefined, state, 0n);
      return problem && `#UD for a 32-bit syscall at rip ${hex(state.rip)} with no syscall callback could not be delivered: ${problem}`;
    }
    const problem = this.createBounceFrame(state, cb.address, SEL.CS64, cb.maskEvents);
    if (problem) return `32-bit syscall at rip ${hex((r.rcx & 0xffffffffn) - 2n)} in guest user mode could not be delivered: ${problem}`;
    state.rflags &= ~DF;
    this.v.count(EXIT.bounce);
    return undefined;
  }

  /**
   * `syscall` in guest user mode, which the LSTAR stub's `out` brought here:
   * not a hypercall but the guest kernel's system call. As Xen does, it is
   * bounced in kernel mode on the kernel stack to the syscall callback, the
   * frame holding the user's return rip (rcx) and rflags (r11), with DF
   * cleared and events masked if the callback was registered so. With no
   * callback the guest gets #UD at the syscall instruction. Returns a
   * reason to crash the domain when neither can be delivered.
   */
  userSyscall(): string | undefined {
    const r = this.v.engine.regs;
    // Back to the state at the syscall (rflags kept to what the guest may set: r11 is its own to forge).
    r.rip = r.rcx;
    r.rflags = guestRflags(r.r11);
    const cb = this.callbacks.get(CallbackType.CALLBACKTYPE_syscall);
    if (!cb?.address) {
      r.rip = r.rcx - 2n;
      if (!this.hasHandler(6)) return `syscall at rip ${hex(r.rip)} in guest user mode: no syscall callback, and no #UD handler`;
      const problem = this.bounce(6, undefined, this.v.regsState, 0n);
      return problem && `#UD for a syscall at rip ${hex(r.rip)} with no syscall callback could not be delivered: ${problem}`;
    }
    const problem = this.createBounceFrame(this.v.regsState, cb.address, SEL.CS64, cb.maskEvents);
    if (problem) return `syscall at rip ${hex(r.rcx - 2n)} in guest user mode could not be delivered: ${problem}`;
    r.rflags &= ~DF;
    this.v.count(EXIT.bounce);
    return undefined;
  }
}
