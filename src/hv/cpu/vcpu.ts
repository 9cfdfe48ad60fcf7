// A PV vCPU: an engine vCPU set up as Xen sets up a 64-bit PV guest's, and
// the exit handler that turns engine exits into hypercalls, faults and
// stops. The loop is run -> decode -> handle (handleExit); the guest's
// registers are untrusted, and nothing it does may throw out of here except
// a bug in paravane: a guest that cannot continue is crashed (the domain is
// destroyed with the reason) and the hypervisor goes on.

import type { Exit, Segment, SpecialRegisters, Vcpu } from '../../engine/types.js';
import { GuestFault, GuestMemory, isCanonical } from '../mm/guest-access.js';
import { errno, type HypercallArgs, type HypercallContext, type HypercallTable } from '../hypercalls/table.js';
import type { MmContext } from '../hypercalls/mmu.js';
import { entryFrame, PageTypeError, type PageTypes } from '../mm/page-types.js';
import { emulatePtStore, type ModrmReg } from '../mm/ptwr-decode.js';
import { l1For, modEntry, recordStale } from '../hypercalls/mmu.js';
import type { DomainTranslations } from '../mm/tlb.js';
import type { CallbackEntry, TrapContext } from '../hypercalls/traps.js';
import type { SchedContext } from '../hypercalls/vcpu-op.js';
import type { EventChannels } from '../events/channels.js';
import { earlier, tscAt, VcpuTimers, writeVcpuTime, type SystemClock } from '../sched/time.js';
import { IretContext, SegmentBase as Segbase, VcpuGuestContextFlags as Vgcf } from '../../abi/generated/arch-x86.js';
import { VcpuInfo, Virq } from '../../abi/generated/xen.js';
import { CallbackType } from '../../abi/generated/callback.js';
import { PageType } from '../mm/frames.js';
import { HYPERCALL_SLOTS } from '../hypercalls/table.js';
import {
  CR0, CR4, CSTAR_OFFSET, EFER, GDT_LIMIT, SYSCALL_FMASK, HYPERCALL_PORT, IDT_VIRT, LSTAR_VIRT, MSR, PerDomainSpace, SEL, STUB_SIZE, STUBS_VIRT,
  SYSCALL_PORT, TSS_LIMIT, WAIT, hasErrorCode,
} from '../mm/xen-space.js';
import { PAGE_SIZE } from '../mm/frames.js';
import { ARITH, RFLAGS } from './rflags.js';

/** Exit kinds counted per domain (`paravane run --stats`). */
export const EXIT_KINDS = ['hypercall (page)', 'hypercall (syscall)', 'hypercall (vmcall)', 'page-table write', 'exception', 'interrupted', 'exception delivered', 'event upcall', 'timer wait in guest', 'run started at wake-up'] as const;
const EXIT = { page: 0, syscall: 1, vmcall: 2, ptwr: 3, exception: 4, interrupted: 5, bounce: 6, upcall: 7, timerWait: 8, wakeStart: 9 } as const;

/** Exit counts in a typed array: counting is on every exit's path. */
export class ExitCounts {
  readonly n = new Float64Array(EXIT_KINDS.length);
  get(kind: (typeof EXIT_KINDS)[number]): number {
    return this.n[EXIT_KINDS.indexOf(kind)]!;
  }
  /** The kinds seen, with their counts. */
  entries(): Array<[string, number]> {
    return EXIT_KINDS.flatMap((k, i) => (this.n[i] ? [[k, this.n[i]!] as [string, number]] : []));
  }
}

/** What a vCPU needs from its domain. */
export interface VcpuHost {
  readonly hypercalls: HypercallTable;
  /** Calls per hypercall number, this domain only. */
  readonly hypercallCounts: Float64Array;
  /** Exits by kind, this domain only. */
  readonly exitCounts: ExitCounts;
  /** The domain is still running (not shutting down, crashed or killed). */
  readonly running: boolean;
  /** The domain cannot go on: destroy it with this reason. */
  crash(reason: string): void;
  context(vcpu: PvVcpu): HypercallContext;
  readonly pageTypes: PageTypes;
  readonly id: number;
  /** The domain's stale-translation tracker. */
  readonly tlb: DomainTranslations;
  /** The domain's machine frame of shared_info. */
  readonly sharedInfoMfn: number;
  /** The hypervisor's system time. */
  readonly clock: SystemClock;
  /** The domain's event channels. */
  readonly events: EventChannels;
  /** Holds a general and writable type reference on one of the domain's frames until it dies (register_vcpu_info). */
  holdWritable(mfn: number): bigint;
}

/** Initial state of vCPU 0, from the builder. */
export interface VcpuBoot {
  rip: bigint;
  rsp: bigint;
  rsi: bigint;
  cr3: bigint;
}

const EXCEPTION_NAMES = ['#DE divide error', '#DB debug', 'NMI', '#BP breakpoint', '#OF overflow', '#BR bound range',
  '#UD invalid opcode', '#NM device not available', '#DF double fault', 'coprocessor overrun', '#TS invalid TSS',
  '#NP segment not present', '#SS stack fault', '#GP general protection', '#PF page fault', 'vector 15',
  '#MF x87 error', '#AC alignment check', '#MC machine check', '#XM SIMD error', '#VE virtualization exception',
  '#CP control protection'];
const SLOTS_N = BigInt(HYPERCALL_SLOTS);
const { IF, DF, OF } = RFLAGS;
const CR0_TS = 8n;
/** RFLAGS bits a bounce clears on entry to the handler. */
const BOUNCE_CLEARS = RFLAGS.TF | RFLAGS.NT | RFLAGS.RF | RFLAGS.VM | RFLAGS.AC;
/** RFLAGS bits an iret frame may set: the arithmetic flags, TF, DF, AC, ID (not IOPL, NT, RF, VM). */
const IRET_KEEPS = ARITH | RFLAGS.TF | RFLAGS.DF | RFLAGS.AC | RFLAGS.ID;
/** What a guest-supplied rflags (an iret frame's, a syscall's r11) becomes: filtered, IF and the fixed bit set. */
const guestRflags = (v: bigint): bigint => (v & IRET_KEEPS) | IF | RFLAGS.FIXED;

/**
 * The interrupted guest state a bounce frame saves and replaces. `flat`:
 * it is the registers, where only the flat selectors can be loaded.
 */
interface GuestState { rip: bigint; cs: bigint; rflags: bigint; rsp: bigint; ss: bigint; readonly flat?: true }

/** GuestState over a ring-0 exception frame (rip, cs, rflags, rsp, ss at ripAt). Accessors on the prototype: nothing made per use but the object. */
class FrameState implements GuestState {
  constructor(private readonly frame: DataView, private readonly ripAt: number) {}
  private get(i: number): bigint { return this.frame.getBigUint64(this.ripAt + 8 * i, true); }
  private set(i: number, v: bigint): void { this.frame.setBigUint64(this.ripAt + 8 * i, BigInt.asUintN(64, v), true); }
  get rip() { return this.get(0); } set rip(v) { this.set(0, v); }
  get cs() { return this.get(1); } set cs(v) { this.set(1, v); }
  get rflags() { return this.get(2); } set rflags(v) { this.set(2, v); }
  get rsp() { return this.get(3); } set rsp(v) { this.set(3, v); }
  get ss() { return this.get(4); } set ss(v) { this.set(4, v); }
}

/** GuestState over the registers (the vCPU in its own code: CS and SS are the flat kernel selectors). One per vCPU. */
class RegsState implements GuestState {
  readonly flat = true;
  constructor(private readonly r: Vcpu['regs']) {}
  get rip() { return this.r.rip; } set rip(v) { this.r.rip = v; }
  get cs() { return BigInt(SEL.CS64); } set cs(v) { if (v !== BigInt(SEL.CS64)) throw new Error(`cannot load cs ${v} through the registers`); }
  get rflags() { return this.r.rflags; } set rflags(v) { this.r.rflags = v; }
  get rsp() { return this.r.rsp; } set rsp(v) { this.r.rsp = v; }
  get ss() { return BigInt(SEL.DS); } set ss(v) { if (v !== BigInt(SEL.DS)) throw new Error(`cannot load ss ${v} through the registers`); }
}


/**
 * A frame the iret hypercall resumes: to guest user mode if `toUser`.
 * `failsafe`: why its selectors cannot be loaded; the failsafe callback
 * then gets it instead.
 */
interface IretFrame {
  rax: bigint; r11: bigint; rcx: bigint; inSyscall: boolean; rip: bigint; cs: bigint; rflags: bigint; rsp: bigint; ss: bigint;
  toUser: boolean; failsafe?: string;
}
/** Where bounce frames are built (at most 11 words: the failsafe frame); one core thread, one buffer. */
const frameBytes = new Uint8Array(11 * 8);
const frameView = new DataView(frameBytes.buffer);
const NO_EXTRA: readonly bigint[] = [];
const VMCALL = [0x0f, 0x01, 0xc1];
const VMMCALL = [0x0f, 0x01, 0xd9];
const hex = (v: bigint | number): string => `0x${v.toString(16)}`;
/** The stub page syscall lands in: a guest halting or faulting there tried a syscall paravane refuses. */
const inSyscallStubs = (rip: bigint): boolean => rip >= LSTAR_VIRT && rip < LSTAR_VIRT + 4096n;
/** Whether `rip` is inside the ring-0 exception stubs (the vCPU is halted there, about to iretq). */
const inExceptionStubs = (rip: bigint): boolean => rip >= STUBS_VIRT && rip < STUBS_VIRT + 256n * BigInt(STUB_SIZE);
const SYSCALL_REFUSED = 'syscall is refused on this host (it leaves CPL 3 here, or was a 32-bit syscall); use the hypercall page or vmcall';

function seg(selector: number, type: number, code: boolean): Segment {
  return {
    base: 0n, limit: 0xffffffff, selector, type, present: true, dpl: selector & 3,
    db: !code, s: true, l: code, g: true, avl: false, unusable: false,
  };
}

const NULL_SEG: Segment = {
  base: 0n, limit: 0, selector: 0, type: 0, present: false, dpl: 0, db: false, s: false, l: false, g: false, avl: false, unusable: true,
};

export class PvVcpu {
  /** Memory through the kernel's page tables, and through the user's (NEW_USER_BASEPTR; none until set). */
  private guestKernel: GuestMemory;
  private guestUser: GuestMemory | undefined;
  /**
   * Guest user mode (Xen's !TF_kernel_mode): the vCPU runs on the user page
   * tables with the GS bases swapped. Entered by an iret to a frame whose cs
   * has RPL 3; left by every exception, event upcall and syscall.
   */
  userMode = false;

  /** The guest's view of memory through its current page tables (the kernel's or, in guest user mode, the user's). */
  get guest(): GuestMemory {
    return this.userMode ? this.guestUser! : this.guestKernel;
  }
  private readonly stackTop: bigint;
  /** The ring-0 stack page, where the CPU pushes the exception frames the stubs halt on. */
  private readonly stack: DataView;
  private readonly regsState: RegsState;
  private ctx: HypercallContext | undefined;
  private continuation: HypercallArgs | undefined;
  /** Kernel and user page-table roots (machine frames; user 0 = none). */
  cr3Mfn: number;
  userCr3Mfn = 0;
  private cr3Pending = false;
  /** The LDT set with MMUEXT_SET_LDT (loaded when descriptor tables are supported). */
  ldt = { base: 0n, entries: 0 };
  /** The virtual IDT (set_trap_table): per vector the handler (0: none), its selector and flags. */
  private readonly trapAddress: bigint[] = new Array<bigint>(256).fill(0n);
  private readonly trapFlags = new Uint8Array(256);
  private readonly trapCs = new Uint16Array(256);
  /**
   * stack_switch: the kernel stack for events that interrupt guest user
   * mode (its ss is not kept: 64-bit frames always get Xen's flat one).
   */
  kernelSp = 0n;
  /** The virtual CR0.TS (fpu_taskswitch). */
  taskSwitched = false;
  /** Callback entry points by CALLBACKTYPE_*. */
  readonly callbacks = new Map<number, CallbackEntry>();
  /** The trap hypercalls' view of this vCPU. */
  readonly cpu: TrapContext;
  /** A frame the iret hypercall asked to resume, applied when the call returns. */
  private pendingIret: IretFrame | undefined;
  /** The guest's rsp and how the hypercall in progress arrived (the iret hypercall reads its frame there). */
  private callRsp = 0n;
  /**
   * vcpu_info (shared_info's slot, until VCPUOP_register_vcpu_info moves it),
   * as bytes and as words of its page: views made when it moves, read on
   * every resume.
   */
  private info!: DataView;
  private infoWords!: { words: Int32Array; base: number };
  private infoMoved = false;
  /** Timers, in system time (a 10 ms periodic timer runs from the start, as on Xen). */
  /** Changed by the guest: the run loop sets the engine's deadline from the timers, so end this run for it to do so again. */
  readonly timers = new VcpuTimers(() => { this.stopRun = true; });
  /** Why the vCPU is not running (SCHEDOP_block or poll), until it is woken. */
  blocked: { kind: 'block' } | { kind: 'poll'; ports: number[]; timeout: bigint } | undefined;
  /** The scheduling hypercalls' view of this vCPU. */
  readonly sched: SchedContext;
  /** The run loop must look at this vCPU again before running it on (its timers changed). */
  stopRun = false;
  /** SCHEDOP_yield: end the slice now. */
  yielded = false;
  /** Set by advanceTimer: the system time the next run waits for in the wait stub. */
  private waitUntil: bigint | undefined;
  /** The wait stub's address, and the data it reads (this vCPU's wait page at WAIT). */
  private readonly waitVirt: bigint;
  private readonly waitData: DataView;

  constructor(
    private readonly host: VcpuHost,
    readonly engine: Vcpu,
    readonly index: number,
    private readonly perDomain: PerDomainSpace,
    frames: ConstructorParameters<typeof GuestMemory>[0],
    boot: VcpuBoot,
  ) {
    const at = PerDomainSpace.vcpuLayout(index);
    this.stackTop = at.stackTop;
    const stack = perDomain.stackPage(index);
    this.stack = new DataView(stack.buffer, stack.byteOffset, PAGE_SIZE);
    this.regsState = new RegsState(engine.regs);
    this.waitVirt = at.wait;
    const wait = perDomain.waitPage(index);
    this.waitData = new DataView(wait.buffer, wait.byteOffset, PAGE_SIZE);
    // What the hypervisor writes into guest memory, the stale-translation tracker hears of.
    const wrote = (mfn: number): void => host.tlb.hostWrote(mfn);
    this.guestKernel = new GuestMemory(frames, boot.cr3, wrote);
    this.cr3Mfn = Number(boot.cr3 >> 12n);
    const v = this;
    this.mm = {
      pt: host.pageTypes,
      get cr3() { return v.cr3Mfn; },
      get userCr3() { return v.userCr3Mfn; },
      // Both only from hypercalls, so in guest kernel mode.
      setCr3(mfn) {
        v.cr3Mfn = mfn;
        v.guestKernel = new GuestMemory(host.pageTypes.ft, BigInt(mfn) << 12n, wrote);
        v.cr3Pending = true;
      },
      setUserCr3(mfn) {
        v.userCr3Mfn = mfn;
        v.guestUser = mfn ? new GuestMemory(host.pageTypes.ft, BigInt(mfn) << 12n, wrote) : undefined;
      },
      tlb: host.tlb,
      setLdt: (base, entries) => { v.ldt = { base, entries }; },
    };
    this.placeInfo(host.sharedInfoMfn, index * VcpuInfo.SIZE);
    // Xen starts every vCPU with a 10 ms periodic timer.
    this.timers.period = 10_000_000n;
    this.timers.next = host.clock.now() + this.timers.period;
    this.sched = {
      vcpu: index,
      get vcpus() { return v.perDomain.vcpus; },
      now: () => host.clock.now(),
      timers: this.timers,
      // Blocked, then at once woken if what it waits for is already there (wakeable's rule).
      block: () => {
        v.vcpuInfo().setUint8(VcpuInfo.OFFSETS.evtchn_upcall_mask, 0); // as Xen: block enables event delivery
        v.blocked = { kind: 'block' };
        v.wakeable();
      },
      poll: (ports, timeout) => {
        v.blocked = { kind: 'poll', ports, timeout };
        v.wakeable();
      },
      portValid: (port) => host.events.inValidRange(port),
      registerVcpuInfo: (mfn, offset) => v.registerVcpuInfo(mfn, offset),
    };
    this.cpu = {
      setTrap: (vector, flags, cs, address) => {
        v.trapAddress[vector] = address;
        v.trapFlags[vector] = flags;
        v.trapCs[vector] = cs;
      },
      clearTraps: () => {
        v.trapAddress.fill(0n);
        v.trapFlags.fill(0);
        v.trapCs.fill(0);
      },
      setKernelStack: (_ss, sp) => { v.kernelSp = sp; },
      setTaskSwitched: (on) => v.setTaskSwitched(on),
      setSegmentBase: (which, base) => v.setSegmentBase(which, base),
      setCallback: (type, entry) => { v.callbacks.set(type, entry); },
      iret: () => v.prepareIret(),
    };
    const s: SpecialRegisters = engine.getSpecialRegisters();
    const data = seg(SEL.DS, 3, false);
    Object.assign(s, {
      cs: seg(SEL.CS64, 11, true), ss: data, ds: NULL_SEG, es: NULL_SEG, fs: NULL_SEG, gs: NULL_SEG,
      tr: { base: at.tss, limit: TSS_LIMIT, selector: SEL.TSS, type: 11, present: true, dpl: 0, db: false, s: false, l: false, g: false, avl: false, unusable: false },
      ldt: NULL_SEG,
      gdt: { base: at.gdt, limit: GDT_LIMIT },
      idt: { base: IDT_VIRT, limit: 256 * 16 - 1 },
      cr0: CR0, cr3: boot.cr3, cr4: CR4, efer: EFER,
    });
    engine.setSpecialRegisters(s);
    engine.setMsrs([
      [MSR.STAR, (BigInt(SEL.CS32 & ~3) << 48n) | (BigInt(SEL.HV_CS) << 32n)],
      [MSR.LSTAR, LSTAR_VIRT], [MSR.CSTAR, LSTAR_VIRT + BigInt(CSTAR_OFFSET)], [MSR.FMASK, SYSCALL_FMASK],
      [MSR.FS_BASE, 0n], [MSR.GS_BASE, 0n], [MSR.KERNEL_GS_BASE, 0n],
    ]);
    const r = engine.regs;
    for (const k of ['rax', 'rbx', 'rcx', 'rdx', 'rdi', 'rbp', 'r8', 'r9', 'r10', 'r11', 'r12', 'r13', 'r14', 'r15'] as const) r[k] = 0n;
    r.rip = boot.rip;
    r.rsp = boot.rsp;
    r.rsi = boot.rsi;
    r.rflags = 0x200n;
  }

  private count(kind: number): void {
    this.host.exitCounts.n[kind]! += 1;
  }

  /**
   * Issues the hypercall in the guest's registers and puts the result in
   * rax. Returns 'continue' when the call was cut short (a continuation):
   * the argument registers then hold the rest of the work and rax the
   * number, and the caller makes the guest issue it again. Returns 'iret'
   * when an iret hypercall replaced the guest's state (rip included: the
   * caller must not move it). `frame` is the ring-0 exception frame of a
   * vmcall (whose rip, rflags and rsp are the guest's), at `ripAt`.
   */
  private hypercall(frame?: DataView, ripAt = 0): 'done' | 'continue' | 'iret' {
    const r = this.engine.regs;
    const nr = r.rax;
    if (nr >= 0n && nr < SLOTS_N) this.host.hypercallCounts[Number(nr)]! += 1;
    const args: HypercallArgs = [r.rdi, r.rsi, r.rdx, r.r10, r.r8];
    this.callRsp = frame ? frame.getBigUint64(ripAt + 24, true) : r.rsp;
    const result = this.host.hypercalls.dispatch(this.ctx ??= this.host.context(this), nr, args);
    const iret = this.pendingIret;
    if (iret) {
      this.pendingIret = undefined;
      if (this.host.running) this.applyIret(iret, frame, ripAt);
      return 'iret';
    }
    const next = this.continuation;
    if (next) {
      this.continuation = undefined;
      r.rdi = next[0];
      r.rsi = next[1];
      r.rdx = next[2];
      r.r10 = next[3];
      r.r8 = next[4];
      r.rax = nr;
      return 'continue';
    }
    r.rax = BigInt.asUintN(64, result);
    return 'done';
  }

  /** Called by a handler through HypercallContext.continueWith. */
  requestContinuation(args: HypercallArgs): void {
    this.continuation = args;
  }

  /** The memory-management view the MMU hypercalls use. */
  readonly mm: MmContext;

  /**
   * Runs the vCPU once, first delivering a pending upcall and then loading
   * the page tables of its mode if a hypercall or a mode switch changed them.
   * After start(), takes that run's exit.
   */
  run(): Exit {
    if (this.started) this.started = false;
    else this.enter();
    return this.engine.run();
  }

  /**
   * Begins a run (as run() does) on the engine's thread and returns at
   * once: the core goes on with other work, and run() takes the exit.
   * Until then the vCPU is the guest's: an event for it kicks it
   * (eventPending), and nothing else may touch its registers.
   */
  start(): void {
    this.enter();
    this.engine.start();
    this.started = true;
    this.count(EXIT.wakeStart);
  }

  /** Set between start() and run(). */
  started = false;

  private enter(): void {
    this.deliverUpcall();
    if (this.cr3Pending) {
      const s = this.engine.getSpecialRegisters();
      s.cr3 = BigInt(this.userMode ? this.userCr3Mfn : this.cr3Mfn) << 12n;
      this.engine.setSpecialRegisters(s);
      this.cr3Pending = false; // only once loaded: a failed load is tried again at the next entry
    }
    if (this.waitUntil !== undefined) this.waitInGuest();
  }

  /**
   * Timer advance, as KVM's for its LAPIC timer: the run loop calls this
   * shortly before a blocked vCPU's timer falls due, while the vCPU's entry
   * would otherwise start only after the deadline (an entry after a sleep
   * costs 40-50 us here). The timers are expired as of their deadline, which
   * raises VIRQ_TIMER and so wakes the vCPU as usual, with its upcall frame
   * built at the next run; that run then starts in the wait stub, which
   * spins on the TSC until the deadline and resumes the guest exactly where
   * it would have resumed. Nothing the guest can see happens before the
   * deadline: its only vCPU is not running its code meanwhile. Returns
   * whether the vCPU woke (no VIRQ_TIMER bound: it sleeps on).
   */
  advanceTimer(): boolean {
    const due = this.advanceableTimer();
    if (due === undefined || !this.expireAt(due)) return false;
    if (!this.wakeable()) return false;
    this.waitUntil = due;
    return true;
  }

  /**
   * The deadline (system time) a blocked vCPU's timer advance would wait
   * for: its timer, when that is what wakes it (not a poll timeout) and it
   * can wait in the wait stub. It cannot when it resumes in a ring-0
   * exception stub (the vmcall path: that iretq must run first) or in user
   * mode (block is a kernel-mode hypercall); the core wakes such a vCPU at
   * its deadline, without the advance.
   */
  advanceableTimer(): bigint | undefined {
    const due = this.timers.deadline();
    if (!this.blocked || due === undefined || due !== this.wakeDeadline()) return undefined;
    return this.userMode || inExceptionStubs(this.engine.regs.rip) ? undefined : due;
  }

  /** Points the vCPU at its wait stub, with the guest's rax, rdx, flags and rip in the stub's page. */
  private waitInGuest(): void {
    const due = this.waitUntil!;
    this.waitUntil = undefined;
    const r = this.engine.regs;
    const v = this.waitData;
    v.setBigUint64(WAIT.DEADLINE, tscAt(this.vcpuInfo(), due), true);
    const flags = r.rflags;
    v.setUint8(WAIT.OF_AL, flags & OF ? 0x7f : 0);
    v.setUint8(WAIT.FLAGS_AH, Number(flags & 0xffn));
    v.setBigUint64(WAIT.RAX, r.rax, true);
    v.setBigUint64(WAIT.RDX, r.rdx, true);
    v.setBigUint64(WAIT.TARGET, r.rip, true);
    r.rip = this.waitVirt;
    this.count(EXIT.timerWait);
  }

  /**
   * Xen's toggle_guest_mode: between guest kernel and user mode, the page
   * tables (loaded by run()) and the GS bases (the kernel's and the user's
   * swap, as swapgs would) change places. Entering user mode needs user
   * page tables: the caller checks.
   */
  private toggleMode(): void {
    this.userMode = !this.userMode;
    this.cr3Pending = true;
    this.perDomain.setHypercallPortOpen(this.index, !this.userMode);
    const [gs, shadow] = this.engine.getMsrs([MSR.GS_BASE, MSR.KERNEL_GS_BASE]);
    this.engine.setMsrs([[MSR.GS_BASE, shadow!], [MSR.KERNEL_GS_BASE, gs!]]);
  }

  /**
   * Handles one exit. Returns false when the vCPU should stop running for
   * now (deadline or kick, or the domain stopped).
   */
  handleExit(exit: Exit): boolean {
    switch (exit.kind) {
      case 'io':
        if (exit.direction === 'out' && exit.port === HYPERCALL_PORT) {
          this.count(EXIT.page);
          // The port is closed in user mode (toggleMode), so this is a kernel-mode call.
          if (this.userMode) this.host.crash('the hypercall port was reached from guest user mode (the I/O bitmap should have refused it)');
          else if (this.hypercall() === 'continue') this.engine.regs.rip -= 2n; // re-execute the stub's out
        } else if (exit.direction === 'out' && exit.port === SYSCALL_PORT) {
          this.count(EXIT.syscall);
          if (this.userMode) this.userSyscall();
          else if (this.hypercall() === 'continue') this.engine.regs.rip -= 2n; // the LSTAR stub's out again
        } else {
          this.host.crash(`port I/O ${exit.direction} 0x${exit.port.toString(16)} (the I/O bitmap should have refused it)`);
        }
        return this.host.running && !this.blocked && !this.takeStop();
      case 'halt':
        this.exception();
        return this.host.running && !this.blocked && !this.takeStop();
      case 'interrupted':
        this.count(EXIT.interrupted);
        return false;
      case 'shutdown':
        this.host.crash(`triple fault at rip ${hex(this.engine.regs.rip)}`);
        return false;
      case 'mmio':
        this.host.crash(`${exit.isWrite ? 'write to' : 'read from'} machine address ${hex(exit.address)}, outside machine memory`);
        return false;
      case 'internal-error':
        this.host.crash(`the engine could not emulate an instruction at rip ${hex(this.engine.regs.rip)} (suberror ${exit.suberror})`);
        return false;
      case 'entry-failed':
        this.host.crash(`the engine could not enter the guest (reason ${hex(exit.reason)})`);
        return false;
      case 'unknown':
        this.host.crash(`unexpected exit ${exit.code}`);
        return false;
      default:
        return assertNever(exit);
    }
  }

  /**
   * A guest exception reached a ring-0 stub, which halted. The frame the
   * CPU pushed is on this vCPU's ring-0 stack; the stub's iretq resumes.
   */
  private exception(): void {
    const r = this.engine.regs;
    if (inSyscallStubs(r.rip - 1n)) {
      this.host.crash(SYSCALL_REFUSED);
      return;
    }
    const offset = r.rip - 1n - STUBS_VIRT;
    if (!inExceptionStubs(r.rip - 1n) || offset % BigInt(STUB_SIZE) !== 0n) {
      this.host.crash(`halted at ${hex(r.rip)}, outside the exception stubs`);
      return;
    }
    const vector = Number(offset / BigInt(STUB_SIZE));
    const at = this.stackOffset(r.rsp, hasErrorCode(vector) ? 48 : 40);
    if (at === undefined) {
      this.host.crash(`exception ${vector} with the ring-0 stack at ${hex(r.rsp)}`);
      return;
    }
    const view = this.stack;
    const ripAt = at + (hasErrorCode(vector) ? 8 : 0);
    const errorCode = hasErrorCode(vector) ? view.getBigUint64(at, true) : undefined;
    const faultRip = view.getBigUint64(ripAt, true);
    // In guest user mode a vmcall is no hypercall (user mode has none, as on Xen): the #GP is the guest's.
    if (vector === 13 && errorCode === 0n && !this.userMode && this.isHypercallInstruction(faultRip)) {
      this.count(EXIT.vmcall);
      // Past the vmcall, unless the call continues (then it runs again) or was an iret.
      if (this.hypercall(view, ripAt) === 'done') view.setBigUint64(ripAt, faultRip + 3n, true);
      return;
    }
    // The faulting address of a #PF: one KVM_GET_SREGS, when first needed.
    let cr2: bigint | undefined;
    const faultAddress = () => (cr2 ??= this.engine.getSpecialRegisters().cr2);
    let ptwrRefusal = '';
    if (vector === 14 && errorCode !== undefined && (errorCode & 3n) === 3n && !this.userMode) {
      // A write to a present read-only page: perhaps one of its own L1 tables (writable page tables).
      const r = this.emulatePtWrite(faultAddress(), faultRip, view, ripAt);
      if (r === true) {
        this.count(EXIT.ptwr);
        return;
      }
      ptwrRefusal = r ? `; as a page-table update it was refused: ${r}` : '';
    }
    this.count(EXIT.exception);
    if (inSyscallStubs(faultRip)) {
      this.host.crash(SYSCALL_REFUSED);
      return;
    }
    if (vector === 6) {
      // `int $n` raises #UD at CPL 3 on this host; Xen's guests get vector n
      // when its DPL admits the mode (1 for kernel, 3 for user), else #GP((n << 3) | 2).
      const n = this.softwareInterrupt(faultRip);
      if (n !== undefined) {
        const permitted = (this.trapFlags[n]! & 3) >= (this.userMode ? 3 : 1);
        if (permitted) view.setBigUint64(ripAt, faultRip + 2n, true); // a trap: it returns after the int
        const v = permitted ? n : 13;
        if (!this.trapAddress[v]) {
          this.host.crash(`int $${hex(n)} at rip ${hex(faultRip)}: ${permitted ? `no handler for vector ${n}` : `refused by its DPL, and no #GP handler`}`);
          return;
        }
        const problem = this.bounce(v, permitted ? undefined : BigInt((n << 3) | 2), new FrameState(view, ripAt), v === 14 ? faultAddress() : 0n);
        if (problem) this.host.crash(`int $${hex(n)} at rip ${hex(faultRip)} could not be delivered: ${problem}`);
        return;
      }
    }
    const name = EXCEPTION_NAMES[vector] ?? `vector ${vector}`;
    if (this.trapAddress[vector] && !ptwrRefusal) {
      const problem = this.bounce(vector, errorCode, new FrameState(view, ripAt), vector === 14 ? faultAddress() : 0n);
      if (problem) this.host.crash(`${name} (vector ${vector}) at rip ${hex(faultRip)} could not be delivered: ${problem}`);
      return;
    }
    const err = errorCode === undefined ? '' : `, error code ${hex(errorCode)}`;
    const address = vector === 14 ? `, address ${hex(faultAddress())}` : '';
    const mode = this.userMode ? ' in guest user mode' : '';
    this.host.crash(`unhandled ${name} (vector ${vector}${err}) at rip ${hex(faultRip)}${mode}${address}${ptwrRefusal}; no trap handler is registered`);
  }

  /**
   * `syscall` in guest user mode, which the LSTAR stub's `out` brought here:
   * not a hypercall but the guest kernel's system call. As Xen does, it is
   * bounced in kernel mode on the kernel stack to the syscall callback, the
   * frame holding the user's return rip (rcx) and rflags (r11), with DF
   * cleared and events masked if the callback was registered so. With no
   * callback the guest gets #UD at the syscall instruction.
   */
  private userSyscall(): void {
    const r = this.engine.regs;
    // Back to the state at the syscall (rflags kept to what the guest may set: r11 is its own to forge).
    r.rip = r.rcx;
    r.rflags = guestRflags(r.r11);
    const cb = this.callbacks.get(CallbackType.CALLBACKTYPE_syscall);
    if (!cb?.address) {
      r.rip = r.rcx - 2n;
      if (!this.trapAddress[6]) {
        this.host.crash(`syscall at rip ${hex(r.rip)} in guest user mode: no syscall callback, and no #UD handler`);
        return;
      }
      const problem = this.bounce(6, undefined, this.regsState, 0n);
      if (problem) this.host.crash(`#UD for a syscall at rip ${hex(r.rip)} with no syscall callback could not be delivered: ${problem}`);
      return;
    }
    const problem = this.createBounceFrame(this.regsState, cb.address, SEL.CS64, cb.maskEvents);
    if (problem) {
      this.host.crash(`syscall at rip ${hex(r.rcx - 2n)} in guest user mode could not be delivered: ${problem}`);
      return;
    }
    r.rflags &= ~DF;
    this.count(EXIT.bounce);
  }

  /**
   * An event became pending for this vCPU (EventHost.notify). The upcall
   * is delivered when the vCPU next resumes (deliverUpcall): a blocked
   * vCPU is woken; one running while the core works (started) is kicked,
   * as Xen's vcpu_kick, when it could take the upcall (with events masked
   * it sees the pending bits in memory, and a kick would only cost an exit).
   */
  eventPending(): void {
    if (this.started) {
      if (this.upcallDeliverable()) this.engine.kick();
      return;
    }
    this.wake?.();
  }

  /** Set while the vCPU is blocked (SCHEDOP_block / poll): wakes it. */
  wake: (() => void) | undefined;

  /** This vCPU's vcpu_info (in shared_info, or where VCPUOP_register_vcpu_info put it). */
  vcpuInfo(): DataView {
    return this.info;
  }

  /** vcpu_info as 32-bit words of its page and its byte offset there (atomic bit updates). */
  vcpuInfoWords(): { words: Int32Array; base: number } {
    return this.infoWords;
  }

  private placeInfo(mfn: number, offset: number): void {
    const page = this.host.pageTypes.ft.bytes(mfn);
    this.info = new DataView(page.buffer, page.byteOffset + offset, VcpuInfo.SIZE);
    this.infoWords = { words: new Int32Array(page.buffer, page.byteOffset, PAGE_SIZE / 4), base: offset };
  }

  /** Writes vcpu_info.time from the guest TSC now (at start, and when vcpu_info moves). */
  updateTime(): void {
    const { tsc, hostNs } = this.engine.tscNow();
    writeVcpuTime(this.vcpuInfo(), tsc, this.host.clock.fromHost(hostNs), this.engine.tscKhz());
  }

  /**
   * VCPUOP_register_vcpu_info: moves vcpu_info into one of the domain's
   * pages, as Xen: 8-byte aligned and within the page (-ENXIO), once
   * (-EBUSY), a page the domain owns (-EINVAL) that can be typed writable
   * (-EACCES), held so until the domain dies. The old contents are copied
   * and every event selector is marked, so nothing pending is lost.
   */
  private registerVcpuInfo(mfnArg: bigint, offset: number): bigint {
    if (offset % 8 || offset > PAGE_SIZE - VcpuInfo.SIZE) return errno('XEN_ENXIO');
    if (this.infoMoved) return errno('XEN_EBUSY');
    const ft = this.host.pageTypes.ft;
    if (mfnArg >= BigInt(ft.count)) return errno('XEN_EINVAL');
    const mfn = Number(mfnArg);
    const rc = this.host.holdWritable(mfn);
    if (rc) return rc;
    const old = new Uint8Array(this.info.buffer, this.info.byteOffset, VcpuInfo.SIZE).slice();
    this.placeInfo(mfn, offset);
    this.infoMoved = true;
    const info = this.info;
    new Uint8Array(info.buffer, info.byteOffset, VcpuInfo.SIZE).set(old);
    info.setBigUint64(VcpuInfo.OFFSETS.evtchn_pending_sel, 0xffffffffffffffffn, true);
    info.setUint8(VcpuInfo.OFFSETS.evtchn_upcall_pending, 1);
    this.updateTime();
    return 0n;
  }

  /** Raises VIRQ_TIMER if a timer is due; returns the next expiry in system time. */
  expireTimers(): bigint | undefined {
    this.expireAt(this.host.clock.now());
    return this.timers.deadline();
  }

  /** Expires the timers due at system time `t`, raising VIRQ_TIMER if any was; returns whether one was. */
  private expireAt(t: bigint): boolean {
    if (!this.timers.expire(t)) return false;
    this.host.events.raiseVirq(Virq.VIRQ_TIMER, this.index);
    return true;
  }

  /** Whether a blocked vCPU may run again (and if so, it is no longer blocked). */
  wakeable(): boolean {
    const b = this.blocked;
    if (!b) return true;
    const woken = b.kind === 'block'
      ? this.vcpuInfo().getUint8(VcpuInfo.OFFSETS.evtchn_upcall_pending) !== 0
      // A poller also wakes for an upcall it could take (as Xen), or its timeout.
      : b.ports.some((p) => this.host.events.isPending(p)) || this.upcallDeliverable() || (b.timeout !== 0n && this.host.clock.now() >= b.timeout);
    if (woken) this.blocked = undefined;
    return woken;
  }

  /** Whether the run loop must take over (timers changed, or a yield), and clears it. */
  private takeStop(): boolean {
    if (!this.stopRun && !this.yielded) return false;
    this.stopRun = false;
    return true;
  }

  /** An upcall is pending and events are not masked. */
  upcallDeliverable(): boolean {
    const info = this.vcpuInfo();
    return info.getUint8(VcpuInfo.OFFSETS.evtchn_upcall_pending) !== 0 && !(info.getUint8(VcpuInfo.OFFSETS.evtchn_upcall_mask) & 1);
  }

  /** The system time a blocked vCPU must be looked at again (its timers, a poll timeout). */
  wakeDeadline(): bigint | undefined {
    const b = this.blocked;
    return earlier(this.timers.deadline(), b?.kind === 'poll' && b.timeout ? b.timeout : undefined);
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
  private bounce(vector: number, errorCode: bigint | undefined, state: GuestState, cr2: bigint): string | undefined {
    const info = this.vcpuInfo();
    if (vector === 14) {
      info.setBigUint64(VcpuInfo.OFFSETS.arch, cr2, true);
      // U: whether guest user mode faulted, as Xen reports it (at CPL 3 the CPU always sets it).
      errorCode = this.userMode ? errorCode! | 4n : errorCode! & ~4n;
    }
    if (vector === 7 && this.taskSwitched) this.setTaskSwitched(false); // as Xen: the #NM clears the virtual TS
    const cs = state.flat ? SEL.CS64 : this.trapCs[vector] || SEL.CS64;
    const problem = this.createBounceFrame(state, this.trapAddress[vector]!, cs, (this.trapFlags[vector]! & 4) !== 0,
      errorCode === undefined ? [] : [errorCode]);
    if (!problem) this.count(EXIT.bounce);
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
  private createBounceFrame(state: GuestState, handler: bigint, cs: number, maskEvents: boolean, extra: readonly bigint[] = NO_EXTRA,
    fromUser = this.userMode): string | undefined {
    const r = this.engine.regs;
    const info = this.vcpuInfo();
    const rflags = state.rflags;
    const rsp = state.rsp;
    if (fromUser && !this.kernelSp) return 'guest user mode was interrupted and there is no kernel stack (stack_switch)';
    const base = fromUser ? this.kernelSp : rsp;
    const mask = info.getUint8(VcpuInfo.OFFSETS.evtchn_upcall_mask) & 1;
    const savedCs = fromUser ? state.cs & 0xffffn : state.cs & 0xfffcn;
    // Low to high: rcx, r11, extra, rip, cs, rflags, rsp, ss (built in one buffer: this runs for every upcall).
    const f = frameView;
    const words = 7 + extra.length;
    f.setBigUint64(0, r.rcx, true);
    f.setBigUint64(8, r.r11, true);
    extra.forEach((w, i) => f.setBigUint64(16 + 8 * i, BigInt.asUintN(64, w), true));
    const tail = 16 + 8 * extra.length;
    f.setBigUint64(tail, BigInt.asUintN(64, state.rip), true);
    f.setBigUint64(tail + 8, savedCs | (BigInt(mask) << 32n), true);
    f.setBigUint64(tail + 16, BigInt.asUintN(64, mask ? rflags & ~IF : rflags | IF), true);
    f.setBigUint64(tail + 24, BigInt.asUintN(64, rsp), true);
    f.setBigUint64(tail + 32, BigInt.asUintN(64, state.ss), true);
    const sp = (base & ~0xfn) - BigInt(words * 8);
    try {
      this.guestKernel.write(sp, frameBytes.subarray(0, words * 8));
    } catch (e) {
      if (e instanceof GuestFault) return `the bounce frame at ${hex(sp)} cannot be written (${e.reason})`;
      throw e;
    }
    if (this.userMode) this.toggleMode();
    state.rip = handler;
    state.cs = BigInt(cs);
    state.rflags = rflags & ~BOUNCE_CLEARS;
    state.rsp = sp;
    state.ss = BigInt(SEL.DS);
    if (maskEvents) info.setUint8(VcpuInfo.OFFSETS.evtchn_upcall_mask, 1);
    return undefined;
  }

  /**
   * Delivers a pending event upcall (Xen: on every return to the guest when
   * evtchn_upcall_pending is set and evtchn_upcall_mask clear) to the
   * event callback, with events masked. The vCPU is either in its own code
   * (the registers are the guest's) or halted in a ring-0 exception stub
   * about to iretq (the guest's state is that frame).
   */
  private deliverUpcall(): void {
    if (!this.upcallDeliverable()) return;
    const cb = this.callbacks.get(CallbackType.CALLBACKTYPE_event);
    if (!cb || !cb.address) return;
    const r = this.engine.regs;
    const state = this.stubFrame(r.rip, r.rsp) ?? this.regsState;
    const problem = this.createBounceFrame(state, cb.address, SEL.CS64, true);
    if (problem) {
      this.host.crash(`the event upcall could not be delivered: ${problem}`);
      return;
    }
    this.count(EXIT.upcall);
  }

  /** Where `bytes` at ring-0 stack address `rsp` lie in the stack page, or undefined if not all within it. */
  private stackOffset(rsp: bigint, bytes: number): number | undefined {
    const at = Number(rsp - (this.stackTop - BigInt(PAGE_SIZE)));
    return at >= 0 && at + bytes <= PAGE_SIZE ? at : undefined;
  }

  /** The ring-0 exception frame the vCPU will iretq to, if it is halted in an exception stub. */
  private stubFrame(rip: bigint, rsp: bigint): GuestState | undefined {
    if (!inExceptionStubs(rip)) return undefined;
    const offset = rip - STUBS_VIRT;
    const start = Number(offset % BigInt(STUB_SIZE));
    const vector = Number(offset / BigInt(STUB_SIZE));
    // After the hlt (byte 1) rsp points at the error code, if the vector has one; after the add, at rip.
    const ripAt = hasErrorCode(vector) && start === 1 ? 8 : 0;
    const at = this.stackOffset(rsp + BigInt(ripAt), 40);
    if (at === undefined) throw new Error(`vCPU ${this.index}: ring-0 stack at ${hex(rsp)} in a stub`);
    return new FrameState(this.stack, at);
  }

  /** fpu_taskswitch: the virtual CR0.TS, and the real one (an FPU instruction then raises #NM). */
  private setTaskSwitched(on: boolean): void {
    if (on === this.taskSwitched) return;
    this.taskSwitched = on;
    const s = this.engine.getSpecialRegisters();
    s.cr0 = on ? s.cr0 | CR0_TS : s.cr0 & ~CR0_TS;
    this.engine.setSpecialRegisters(s);
  }

  /** set_segment_base (kernel mode): FS, the user GS (the swapped-out base), the kernel GS. */
  private setSegmentBase(which: number, base: bigint): bigint {
    const canonical = isCanonical(base);
    switch (which) {
      case Segbase.SEGBASE_FS:
      case Segbase.SEGBASE_GS_USER:
      case Segbase.SEGBASE_GS_KERNEL: {
        if (!canonical) return errno('XEN_EINVAL');
        const msr = which === Segbase.SEGBASE_FS ? MSR.FS_BASE : which === Segbase.SEGBASE_GS_USER ? MSR.KERNEL_GS_BASE : MSR.GS_BASE;
        this.engine.setMsrs([[msr, base]]);
        return 0n;
      }
      case Segbase.SEGBASE_GS_USER_SEL:
        // Loading a user GS selector: only the null selector exists for guests here (no LDT, Xen's GDT is flat).
        if ((base & 0xfffcn) !== 0n) return errno('XEN_EINVAL');
        this.engine.setMsrs([[MSR.KERNEL_GS_BASE, 0n]]);
        return 0n;
      default:
        return errno('XEN_EINVAL');
    }
  }

  /**
   * The iret hypercall: reads struct iret_context at the guest's rsp (rax,
   * r11, rcx, flags, rip, cs, rflags, rsp, ss, pushed by the guest and the
   * hypercall page's iret stub) and checks it; hypercall() applies it when
   * the call returns. Returns a reason to crash the domain instead.
   */
  private prepareIret(): string | undefined {
    let c: IretContext;
    try {
      c = IretContext.over(this.guest.read(this.callRsp, IretContext.SIZE).buffer);
    } catch (e) {
      if (e instanceof GuestFault) return `the frame at ${hex(this.callRsp)} cannot be read (${e.reason})`;
      throw e;
    }
    const cs = Number(c.cs & 0xffffn), ss = Number(c.ss & 0xffffn);
    // RPL 3 returns to guest user mode (the kernel's own frames have RPL 0), as Xen's do_iret.
    const toUser = (cs & 3) === 3;
    if (toUser && !this.userCr3Mfn) return 'a return to guest user mode with no user page tables (MMUEXT_NEW_USER_BASEPTR)';
    const rip = c.rip;
    if (!isCanonical(rip)) return `rip ${hex(rip)} is not canonical`;
    // Selectors the return cannot load: Xen's return to the guest would fault, and its failsafe callback gets the frame.
    const failsafe = (cs | 3) !== SEL.CS64 ? `code selector ${hex(cs)} (only the flat 64-bit ${hex(SEL.CS64)} can be loaded)`
      : (ss | 3) !== SEL.DS && (ss & ~3) !== 0 ? `stack selector ${hex(ss)}` : undefined;
    if (failsafe && !this.callbacks.get(CallbackType.CALLBACKTYPE_failsafe)?.address) return `${failsafe}, and no failsafe callback`;
    this.pendingIret = {
      rax: c.rax, r11: c.r11, rcx: c.rcx, inSyscall: (c.flags & BigInt(Vgcf.VGCF_in_syscall)) !== 0n,
      rip, cs: c.cs & 0xffffn, rflags: c.rflags, rsp: c.rsp, ss: c.ss & 0xffffn, toUser, failsafe,
    };
    return undefined;
  }

  /**
   * Resumes an iret frame (through the ring-0 frame for vmcall, the
   * registers otherwise), switching to guest user mode for a user frame. A
   * frame whose selectors cannot be loaded goes to the failsafe callback
   * instead: Xen's frame of rcx, r11, ds, es, fs, gs (null here: paravane
   * loads no data selectors), rip, cs, rflags, rsp, ss.
   */
  private applyIret(f: IretFrame, frame: DataView | undefined, ripAt: number): void {
    const r = this.engine.regs;
    r.rax = f.rax;
    if (!f.inSyscall) {
      r.rcx = f.rcx;
      r.r11 = f.r11;
    }
    // The guest's virtual IF: events masked unless the frame's IF was set.
    this.vcpuInfo().setUint8(VcpuInfo.OFFSETS.evtchn_upcall_mask, f.rflags & IF ? 0 : 1);
    // Where the vCPU goes: the frame, or the failsafe callback's entry with the frame saved on its stack.
    const to: GuestState = { rip: f.rip, cs: f.cs, rflags: guestRflags(f.rflags), rsp: f.rsp, ss: f.ss };
    if (f.failsafe) {
      const cb = this.callbacks.get(CallbackType.CALLBACKTYPE_failsafe)!;
      const problem = this.createBounceFrame(to, cb.address, SEL.CS64, cb.maskEvents, [0n, 0n, 0n, 0n], f.toUser);
      if (problem) {
        this.host.crash(`iret hypercall: ${f.failsafe}; the failsafe callback could not be entered: ${problem}`);
        return;
      }
    } else if (f.toUser) {
      this.toggleMode();
    }
    if (frame) {
      frame.setBigUint64(ripAt, to.rip, true);
      frame.setBigUint64(ripAt + 8, BigInt(SEL.CS64), true);
      frame.setBigUint64(ripAt + 16, to.rflags, true);
      frame.setBigUint64(ripAt + 24, to.rsp, true);
      frame.setBigUint64(ripAt + 32, BigInt(SEL.DS), true);
    } else {
      r.rip = to.rip;
      r.rflags = to.rflags;
      r.rsp = to.rsp;
    }
  }

  /**
   * Writable page tables: emulates a store that faulted on a read-only
   * mapping of one of the domain's L1 tables as a validated update of that
   * entry. Returns true when done (the frame's rip, rflags and registers are
   * as after the instruction), a reason when the instruction or the update
   * was refused (nothing changed), undefined when the fault was not on one
   * of the domain's L1 tables.
   */
  private emulatePtWrite(cr2: bigint, rip: bigint, frame: DataView, ripAt: number): true | string | undefined {
    const pt = this.host.pageTypes;
    const ft = pt.ft;
    // The frame cr2 lies in, through the domain's L1 that maps it read-only.
    let l1: number;
    try {
      l1 = l1For(pt, this.host.id, this.cr3Mfn, cr2);
    } catch (e) {
      if (e instanceof PageTypeError) return undefined;
      throw e;
    }
    const l1Words = ft.words32(l1);
    const slot = Number((cr2 >> 12n) & 0x1ffn);
    const lo = l1Words[2 * slot]!;
    if (!(lo & 1) || lo & 2) return undefined;
    const target = entryFrame(lo, l1Words[2 * slot + 1]!);
    if (!ft.isValid(target) || ft.owner[target] !== this.host.id || ft.type[target] !== PageType.l1 || !ft.typeCount[target]) return undefined;
    // Up to 15 bytes of the instruction; fewer if the next page is not mapped.
    let code: Uint8Array;
    try {
      code = this.guest.read(rip, 15);
    } catch {
      try { code = this.guest.read(rip, Math.min(15, 4096 - Number(rip & 0xfffn))); } catch { return undefined; }
    }
    // The instruction, checked against cr2 and applied to the entry cr2 lies in (src/hv/mm/ptwr-decode.ts).
    const index = Number(cr2 & 0xfffn) >> 3;
    const regs = this.engine.regs;
    const rflagsAt = ripAt + 16, rspAt = ripAt + 24; // the frame: rip, cs, rflags, rsp, ss
    const get = (r: ModrmReg): bigint => (r === 'rsp' ? frame.getBigUint64(rspAt, true) : regs[r]);
    const words = ft.words32(target);
    const old = (BigInt(words[2 * index + 1]!) << 32n) | BigInt(words[2 * index]!);
    const effect = emulatePtStore({ code, rip, cr2, reg: get, old, rflags: frame.getBigUint64(rflagsAt, true) });
    if (typeof effect === 'string') return effect;
    if (effect.entry !== undefined) {
      let stale: number;
      try {
        stale = modEntry(pt, this.host.id, target, 1, index, Number(effect.entry & 0xffffffffn) >>> 0, Number(effect.entry >> 32n) >>> 0, false);
      } catch (e) {
        if (e instanceof PageTypeError) return e.message;
        throw e;
      }
      // As Xen's ptwr emulation: no flush; the guest asks for one as after an mmu_update.
      recordStale(this.host.tlb, stale);
    }
    // Registers, flags and rip only once the entry is in: a refusal changes nothing.
    for (const [r, v] of effect.regs) {
      if (r === 'rsp') frame.setBigUint64(rspAt, v, true);
      else regs[r] = v;
    }
    frame.setBigUint64(rflagsAt, effect.rflags, true);
    frame.setBigUint64(ripAt, rip + BigInt(effect.length), true);
    return true;
  }

  /** The vector of an `int $n` (cd nn) at rip, if that is what is there. */
  private softwareInterrupt(rip: bigint): number | undefined {
    try {
      const b = this.guest.read(rip, 2);
      return b[0] === 0xcd ? b[1] : undefined;
    } catch (e) {
      if (e instanceof GuestFault) return undefined;
      throw e;
    }
  }

  private isHypercallInstruction(rip: bigint): boolean {
    let bytes: Uint8Array;
    try {
      bytes = this.guest.read(rip, 3);
    } catch (e) {
      if (e instanceof GuestFault) return false;
      throw e;
    }
    const is = (op: number[]): boolean => op.every((b, i) => bytes[i] === b);
    return is(VMCALL) || is(VMMCALL);
  }
}

function assertNever(x: never): never {
  throw new Error(`unhandled exit ${JSON.stringify(x)}`);
}
