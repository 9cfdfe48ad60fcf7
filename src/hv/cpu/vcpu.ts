// 1. A PV vCPU (the reading path starts here; docs/reading-path.md). An
// engine vCPU set up as Xen sets up a 64-bit PV guest's, composed of the
// parts that hold its state: its page-table roots and guest mode
// (address-space.ts), its vcpu_info (vcpu-info.ts), its virtual trap
// machinery (virtual-traps.ts), its timers and sleeps (blocking.ts). The
// loop is run -> decode -> handle: run() enters the guest, the engine
// decodes the exit, handleExit (exit.ts) handles it. The guest's registers
// are untrusted, and nothing it does may throw out of here except a bug in
// paravane: a guest that cannot continue is crashed (the domain is
// destroyed with the reason) and the hypervisor goes on.

import type { DebugHook } from './debugger.js';
import type { TraceSink } from './trace-sink.js';
import type { Exit, Vcpu } from '../../engine/types.js';
import { VmAssist } from '../../abi/generated/xen.js';
import type { HypercallArgs, HypercallContext, MmContext } from '../hypercalls/context.js';
import type { HypercallTable } from '../hypercalls/table.js';
import type { EventChannels } from '../events/channels.js';
import type { FrameTable } from '../mm/frames.js';
import type { GuestMemory } from '../mm/guest-access.js';
import type { PageTypes } from '../mm/page-types.js';
import type { PtwrDomain } from '../mm/ptwr.js';
import type { DomainTranslations } from '../mm/tlb.js';
import { PAGE_SIZE } from '../mm/frames.js';
import { M2P_VIRT_START, PerDomainSpace } from '../mm/xen-space.js';
import type { SystemClock } from '../sched/time.js';
import { VcpuAddressSpace } from './address-space.js';
import { VcpuBlocking, type VcpuState } from './blocking.js';
import { EXIT, type ExitCounts } from './exit-counts.js';
import { handleExit, type ExitTarget } from './exit.js';
import type { LegacyPorts } from '../devices/legacy-ports.js';
import { inRing0Code, RegsState, Ring0Stack, type GuestState } from './guest-state.js';
import { setupVcpu, type VcpuBoot } from './setup.js';
import { VcpuInfoArea } from './vcpu-info.js';
import { VirtualTraps } from './virtual-traps.js';
import { VcpuDescriptorTables } from './descriptor-tables.js';
import { VcpuDebugRegisters } from './debug-registers.js';
import { VcpuRunstate } from './runstate.js';
import type { PvCpuidPolicy } from './cpuid-policy.js';
import type { EmulationTarget } from './emulate.js';

export type { VcpuBoot } from './setup.js';
export type { VcpuState } from './blocking.js';

/** What a vCPU needs from its domain. */
export interface VcpuHost {
  readonly id: number;
  readonly hypercalls: HypercallTable;
  /** Calls per hypercall number, this domain only. */
  readonly hypercallCounts: Float64Array;
  /** Exits by kind, this domain only. */
  readonly exitCounts: ExitCounts;
  /** The domain is still running (not shutting down, crashed or killed). */
  readonly running: boolean;
  /** The domain cannot go on: destroy it with this reason. */
  crash(reason: string): void;
  /** A vCPU is about to handle hypercall `nr` (the console lets held output go); false if the domain stopped running meanwhile. */
  hypercallStarting(nr: bigint): boolean;
  /** The domain's part of the hypercall context (the vCPU adds its own parts). */
  domainContext(): Omit<HypercallContext, 'guest' | 'continueWith' | 'mm' | 'cpu' | 'sched'>;
  readonly pageTypes: PageTypes;
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
  /** What CPUID tells the guest (the machine's PV policy). */
  readonly cpuid: PvCpuidPolicy;
  /** Enabled VMASST_TYPE_* bits. */
  readonly vmAssist: bigint;
  /** Where the guest can read the M2P: Xen's address, or the second mapping where the host cannot use slot 256. */
  readonly m2pVirt: bigint;
  /** The domain's I/O ports (emulated in and out). */
  readonly ports: LegacyPorts;
  /** Where hypercalls, exits and upcalls are recorded, when the run is traced. */
  readonly trace: TraceSink | undefined;
  /** The debugger attached to the domain, if any. */
  readonly debugger: DebugHook | undefined;
}

const RUNNABLE: VcpuState = { kind: 'runnable' };
const ON_CPU: VcpuState = { kind: 'on-cpu' };

export class PvVcpu implements ExitTarget {
  readonly space: VcpuAddressSpace;
  readonly info: VcpuInfoArea;
  readonly traps: VirtualTraps;
  readonly blocking: VcpuBlocking;
  readonly descriptors: VcpuDescriptorTables;
  readonly debug: VcpuDebugRegisters;
  /** What CPUID tells the guest (the machine's PV policy). */
  get cpuid(): PvCpuidPolicy {
    return this.host.cpuid;
  }
  get trace(): TraceSink | undefined {
    return this.host.trace;
  }
  get debugger(): DebugHook | undefined {
    return this.host.debugger;
  }
  /**
   * Where the guest's rip, rflags and rsp are while the vCPU is not running:
   * the ring-0 exception frame when it stopped in a stub, else the registers.
   */
  get stoppedState(): GuestState {
    const r = this.engine.regs;
    return (this.atRing0 ? this.stack.stubFrame(r.rip, r.rsp) : undefined) ?? this.regsState;
  }
  /** What the vCPU is doing and has done, as Xen accounts it (runstate.ts). */
  readonly runstate: VcpuRunstate;
  readonly stack: Ring0Stack;
  readonly regsState: RegsState;
  /** The hypercall context of this vCPU, made once. */
  readonly context: HypercallContext;
  /** The memory-management part of it. */
  readonly mm: MmContext;
  readonly ptwr: PtwrDomain;
  readonly emulation: EmulationTarget;
  readonly waitData: DataView;
  readonly waitVirt: bigint;
  /** Where the vCPU is in its life (the one place this is kept; blocking.ts reads and sets the blocked state through it). */
  state: VcpuState = { kind: 'runnable' };
  /** Why the run loop must look at this vCPU before running it on: its timers changed, or SCHEDOP_yield. */
  private stop: 'timers' | 'yield' | undefined;
  private continuation: HypercallArgs | undefined;
  /**
   * Up (Xen: not _VPF_down): the run loop runs it. vCPU 0 starts up; the
   * others start down and uninitialised, for VCPUOP_initialise and
   * VCPUOP_up (src/hv/hypercalls/vcpu-op.ts).
   */
  online: boolean;
  /** Its state was set: vCPU 0's by the builder, another's by VCPUOP_initialise (once). */
  initialised: boolean;
  /** Time the core spent running this vCPU (ns). */
  cpuNs = 0n;
  /** Its last run stopped at CPL 0, in the hypervisor's ring-0 stubs (stoppedAtRing0). */
  private atRing0 = false;
  /** Set while the vCPU is blocked and its run loop sleeps: wakes it. */
  wake: (() => void) | undefined;

  constructor(
    private readonly host: VcpuHost,
    readonly engine: Vcpu,
    readonly index: number,
    private readonly perDomain: PerDomainSpace,
    frames: FrameTable,
    /** Its boot state (vCPU 0); none: the vCPU starts down, for VCPUOP_initialise. */
    boot?: VcpuBoot,
  ) {
    this.online = this.initialised = boot !== undefined;
    boot ??= { rip: 0n, rsp: 0n, rsi: 0n, cr3: 0n };
    const at = PerDomainSpace.vcpuLayout(index);
    const stack = perDomain.stackPage(index);
    this.stack = new Ring0Stack(new DataView(stack.buffer, stack.byteOffset, PAGE_SIZE), at.stackTop);
    const wait = perDomain.waitPage(index);
    this.waitData = new DataView(wait.buffer, wait.byteOffset, PAGE_SIZE);
    this.waitVirt = at.wait;
    this.regsState = new RegsState(engine.regs, {
      read: () => engine.getSpecialRegisters().cs.selector,
      load: (sel) => {
        const s = engine.getSpecialRegisters();
        const long = this.descriptors.selectorKind(sel) === 'code64';
        s.cs = { ...s.cs, selector: sel, l: long, db: !long, dpl: sel & 3, present: true, s: true, type: 0xb, unusable: false };
        engine.setSpecialRegisters(s);
      },
    });
    // What the hypervisor writes into guest memory, the stale-translation tracker hears of.
    this.space = new VcpuAddressSpace(frames, engine, perDomain, index, boot.cr3, (mfn) => host.tlb.hostWrote(mfn));
    this.info = new VcpuInfoArea(frames, engine, host.clock, (mfn) => host.holdWritable(mfn), host.sharedInfoMfn, index);
    this.descriptors = new VcpuDescriptorTables(host.pageTypes, host.tlb, perDomain, host.id, index);
    this.traps = new VirtualTraps(this);
    this.debug = new VcpuDebugRegisters(engine, () => this.traps.cr4);
    this.blocking = new VcpuBlocking(this);
    const v = this;
    const space = this.space;
    const runstateUpdate = 1n << BigInt(VmAssist.VMASST_TYPE_runstate_update_flag);
    this.runstate = new VcpuRunstate({
      now: () => host.clock.now(),
      get memory() { return space.kernelMemory; },
      get updateFlag() { return (host.vmAssist & runstateUpdate) !== 0n; },
      get vcpuInfo() { return v.info.view; },
    });
    this.info.timeUpdated = () => this.runstate.publishTime();
    this.mm = {
      pt: host.pageTypes,
      get cr3() { return space.cr3Mfn; },
      get userCr3() { return space.userCr3Mfn; },
      setCr3: (mfn) => space.setCr3(mfn),
      setUserCr3: (mfn) => space.setUserCr3(mfn),
      tlb: host.tlb,
      setLdt: (base, entries) => { v.ldt = { base, entries }; },
    };
    this.ptwr = {
      pt: host.pageTypes, tlb: host.tlb, domid: host.id,
      get cr3() { return space.cr3Mfn; },
      get guest() { return space.guest; },
    };
    const traps = this.traps, info = this.info;
    this.emulation = {
      engine, index, domid: host.id, cpuid: host.cpuid, mm: this.mm,
      get guest() { return space.guest; },
      get userMode() { return space.userMode; },
      get cr2() { return info.cr2; }, set cr2(x) { info.cr2 = x; },
      get cr4() { return traps.cr4; }, set cr4(x) { traps.cr4 = x; },
      get taskSwitched() { return traps.taskSwitched; },
      setTaskSwitched: (on) => traps.setTaskSwitched(on),
      get iopl() { return traps.iopl; },
      get architecturalIopl() { return v.architecturalIopl; },
      get eventsMasked() { return info.masked; }, set eventsMasked(x) { info.masked = x; },
      m2pReadsEmulated: host.m2pVirt !== M2P_VIRT_START,
      debug: this.debug,
      ports: host.ports,
    };
    // `guest` must stay a getter (Object.assign would copy its value once): the view follows the
    // vCPU's roots and mode, which hypercalls and VCPUOP_initialise change.
    this.context = Object.defineProperties(host.domainContext(), Object.getOwnPropertyDescriptors({
      get guest(): GuestMemory { return space.guest; },
      continueWith: (args: HypercallArgs) => { v.continuation = args; },
      mm: this.mm, cpu: this.traps, sched: this.blocking,
    })) as HypercallContext;
    setupVcpu(engine, index, boot);
  }

  /** The LDT set with MMUEXT_SET_LDT (loaded when descriptor tables are supported). */
  ldt = { base: 0n, entries: 0 };

  get vcpus(): number { return this.perDomain.vcpus; }
  get events(): EventChannels { return this.host.events; }
  get clock(): SystemClock { return this.host.clock; }
  get hypercalls(): HypercallTable { return this.host.hypercalls; }
  get hypercallCounts(): Float64Array { return this.host.hypercallCounts; }
  get running(): boolean { return this.host.running; }
  get architecturalIopl(): boolean { return (this.host.vmAssist & (1n << BigInt(VmAssist.VMASST_TYPE_architectural_iopl))) !== 0n; }
  crash(reason: string): void { this.host.crash(reason); }
  hypercallStarting(nr: bigint): boolean { return this.host.hypercallStarting(nr); }
  registerVcpuInfo(mfn: bigint, offset: number): bigint { return this.info.register(mfn, offset); }
  count(kind: number): void { this.host.exitCounts.n[kind]! += 1; }

  /** A run is under way on the engine's thread (start() was called, run() has not taken its exit). */
  get started(): boolean { return this.state.kind === 'on-cpu'; }
  get blocked(): boolean { return this.state.kind === 'blocked'; }

  requestStop(why: 'timers' | 'yield'): void {
    if (this.stop !== 'yield') this.stop = why;
  }

  takeStop(): boolean {
    if (this.state.kind === 'blocked' || !this.online) return true;
    if (this.stop === undefined) return false;
    if (this.stop === 'timers') this.stop = undefined;
    return true;
  }

  /** SCHEDOP_yield was called since the last takeYield: the rest of the slice goes to others. */
  takeYield(): boolean {
    if (this.stop !== 'yield') return false;
    this.stop = undefined;
    return true;
  }

  takeContinuation(): HypercallArgs | undefined {
    const c = this.continuation;
    this.continuation = undefined;
    return c;
  }

  /** Handles one exit (exit.ts); false: stop running for now. */
  handleExit(exit: Exit): boolean {
    return handleExit(this, exit);
  }

  /**
   * Reading path 2: entering the guest. Runs the vCPU once, first delivering a pending upcall and then loading
   * the page tables of its mode if a hypercall or a mode switch changed
   * them. After start(), takes that run's exit.
   */
  run(): Exit {
    if (this.state.kind === 'on-cpu') this.state = RUNNABLE;
    else this.enter();
    const exit = this.engine.run();
    this.atRing0 = stoppedAtRing0(this.engine, exit);
    return exit;
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
    this.state = ON_CPU;
    this.count(EXIT.wakeStart);
  }

  /** The engine ended every run (the domain is being destroyed). */
  stopped(): void {
    if (this.state.kind === 'on-cpu') this.state = RUNNABLE;
  }

  private enter(): void {
    // The upcall goes into the state the vCPU resumes: at CPL 3 its registers; at CPL 0 (in a stub) the
    // ring-0 frame it is about to iretq to, and nothing when there is none to write: at an exception
    // stub's hlt the frame is an exception the hlt's exit has yet to bounce (an upcall written into it
    // would become the exception's rip and mode, as Linux's "supervisor instruction fetch at
    // xen_asm_exc_xen_hypervisor_callback" oops showed), and in the syscall stubs a syscall is being
    // refused. The hlt exits at once, and the upcall goes on top of the bounce at the next entry, as
    // Xen checks for events on its return to the guest. A rip the guest put in the stubs itself (by
    // iret) is at CPL 3: the registers, where its fetch then faults.
    const r = this.engine.regs;
    const state = this.atRing0 ? this.stack.stubFrame(r.rip, r.rsp) : this.regsState;
    if (state) {
      const problem = this.traps.deliverUpcall(state);
      if (problem) this.host.crash(problem);
    }
    this.space.load();
    this.blocking.enterWait();
  }

  /**
   * An event became pending for this vCPU (EventHost.notify). The upcall
   * is delivered when the vCPU next resumes: a blocked vCPU is woken; one
   * running while the core works (on-cpu) is kicked, as Xen's vcpu_kick,
   * when it could take the upcall (with events masked it sees the pending
   * bits in memory, and a kick would only cost an exit).
   */
  eventPending(): void {
    if (this.state.kind === 'on-cpu') {
      if (this.info.upcallDeliverable()) this.engine.kick();
      return;
    }
    this.wake?.();
  }
}

/**
 * Whether a run stopped with the vCPU at CPL 0, which only the
 * hypervisor's stubs run: every hlt exit (at CPL 3 hlt raises #GP, which a
 * stub takes and halts on), and an interrupted run whose rip is in their
 * pages and whose CS says ring 0 (one read of the special registers, only
 * there: a guest may iret to a rip in those pages itself, at CPL 3).
 */
function stoppedAtRing0(engine: Vcpu, exit: Exit): boolean {
  if (exit.kind === 'halt') return true;
  if (exit.kind !== 'interrupted' || !inRing0Code(engine.regs.rip)) return false;
  return (engine.getSpecialRegisters().cs.selector & 3) === 0;
}
