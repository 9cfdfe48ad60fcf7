// A domain: a guest kernel's memory, its vCPUs (on an engine VM that maps
// the whole machine memory, exactly as one Xen host's guests share one
// machine address space), its hypercall context and its lifecycle:
//
//   building -> running <-> paused
//                  |
//                  v
//            shutting-down (shutdown hypercall, crash, kill, timeout) -> dead
//
// Teardown order (destroy): the vCPUs stop (the core runs them, so none is
// inside the engine), the engine VM and its vCPUs go, then the
// hypervisor's per-domain frames, then the references the hypervisor holds
// on the domain's own frames (shared_info), then every frame the domain
// owns. After that the frame table holds nothing of it.

import type { DebugHook } from '../cpu/debugger.js';
import type { TraceSink } from '../cpu/trace-sink.js';
import { randomUUID } from 'node:crypto';
import type { VirtualMachine } from '../../engine/types.js';
import type { DomainMemory } from '../mm/domain-memory.js';
import { PageType, type FrameTable } from '../mm/frames.js';
import { errno, type HypercallContext, type VcpuControl } from '../hypercalls/context.js';
import { HYPERCALL_SLOTS, type HypercallTable } from '../hypercalls/table.js';
import { ExitCounts } from '../cpu/exit-counts.js';
import { PvVcpu, type VcpuHost } from '../cpu/vcpu.js';
import { LegacyPorts } from '../devices/legacy-ports.js';
import { initialiseVcpu } from '../cpu/guest-context.js';
import type { PerDomainSpace } from '../mm/xen-space.js';
import type { BootLayout } from './builder.js';
import type { PageTypes } from '../mm/page-types.js';
import type { AuditDomain } from '../mm/page-audit.js';
import type { DomainTranslations } from '../mm/tlb.js';
import { EventChannels } from '../events/channels.js';
import { ConsoleBackend } from './console.js';
import { ConsoleMux } from './console-mux.js';
import { Hypercall, StartInfo, Virq } from '../../abi/generated/xen.js';
import { VcpuGuestContextFlags } from '../../abi/generated/arch-x86.js';
import type { SystemClock } from '../sched/time.js';
import { PageTypeError } from '../mm/page-types.js';
import { ShutdownReason } from '../../abi/generated/sched.js';
import { RunState } from '../../abi/generated/vcpu.js';
import type { PvCpuidPolicy } from '../cpu/cpuid-policy.js';
import { GrantTable } from '../mm/grant-table.js';
import type { XenstoreServer } from '../xenstore/requests.js';
import { XenstoreRing } from '../xenstore/ring.js';
import { introduceDomain, releaseDomain } from '../xenstore/toolstack.js';
import { GrantMaps, releaseMappings, revokeGrants, type GrantWorld } from '../mm/grant-map.js';

export type DomainState = 'building' | 'running' | 'paused' | 'shutting-down' | 'dead';

const CONSOLE_IO = BigInt(Hypercall.HYPERVISOR_console_io);
const EVENT_CHANNEL_OP = BigInt(Hypercall.HYPERVISOR_event_channel_op);

/** Why a domain ended. */
export type DomainEnd =
  | { kind: 'shutdown'; reason: number; reasonName: string }
  | { kind: 'crashed'; reason: string }
  | { kind: 'killed'; reason: string };


export function shutdownReasonName(reason: number): string {
  const e = Object.entries(ShutdownReason).find(([k, v]) => v === reason && k !== 'SHUTDOWN_MAX');
  return e ? e[0].replace('SHUTDOWN_', '') : `unknown (${reason})`;
}

export interface DomainParts {
  id: number;
  name: string;
  frames: FrameTable;
  memory: DomainMemory;
  perDomain: PerDomainSpace;
  vm: VirtualMachine;
  layout: BootLayout;
  hypercalls: HypercallTable;
  pageTypes: PageTypes;
  /** Where guests read the M2P on this host. */
  m2pVirt: bigint;
  /** What the domain's console shows: its ring, or console_io output if it has no ring (console-mux.ts). */
  console: (bytes: Uint8Array) => void;
  /** The hypervisor's log of the domain's console_io output. */
  log?: (bytes: Uint8Array) => void;
  tlb: DomainTranslations;
  clock: SystemClock;
  /** Finds another domain's event channels (interdomain channels). */
  lookupEvents: (domid: number) => EventChannels | undefined;
  /** The machine's grants (every domain's tables and mappings). */
  grantWorld: GrantWorld;
  /** What CPUID tells the guest. */
  cpuid: PvCpuidPolicy;
  /** The machine's XenStore (the domain gets a connection on its store ring). */
  xenstore: XenstoreServer;
}

export class Domain implements VcpuHost {
  readonly id: number;
  readonly name: string;
  readonly memory: DomainMemory;
  readonly layout: BootLayout;
  readonly hypercalls: HypercallTable;
  readonly hypercallCounts = new Float64Array(HYPERCALL_SLOTS);
  readonly exitCounts = new ExitCounts();
  /** Where its vCPUs record hypercalls, exits and upcalls (`paravane run --trace`); none unless set. */
  trace: TraceSink | undefined;
  /** The debugger attached to it (`paravane run --gdb`), which may own its breakpoints' and steps' exceptions. */
  debugger: DebugHook | undefined;
  /** The domain's handle (xen_domain_handle_t), a random UUID as the toolstack gives. */
  readonly handle: Uint8Array = Buffer.from(randomUUID().replaceAll('-', ''), 'hex');
  readonly vcpus: PvVcpu[] = [];
  vmAssist = 0n;
  private stateNow: DomainState = 'building';
  private ended: DomainEnd | undefined;
  private readonly vm: VirtualMachine;
  private readonly perDomain: PerDomainSpace;
  /** vcpu_op's view of the vCPUs. */
  private readonly vcpuControl: VcpuControl;
  /** console_io and ring output, each line once on the console. */
  private readonly consoleOut: ConsoleMux;
  /**
   * Frames of the domain on which the hypervisor holds a general and a
   * `writable` type reference until the domain dies (shared_info, taken
   * by the builder), so the guest can never give them another type.
   */
  readonly held: number[];
  readonly pageTypes: PageTypes;
  readonly m2pVirt: bigint;
  /** What the engine may have cached stale from the domain's tables (src/hv/mm/tlb.ts). */
  readonly tlb: DomainTranslations;
  /** The domain's event channels (2-level ABI, in shared_info). */
  readonly events: EventChannels;
  /** The domain's grant table (its frames are held like shared_info: see `held`). */
  readonly grants: GrantTable;
  /** The grants of others (or its own) this domain maps. */
  readonly grantMaps = new GrantMaps();
  private readonly grantWorld: GrantWorld;
  readonly clock: SystemClock;
  /** The I/O ports its in and out reach: the PIT's counter 2 and the rest as Xen gives a domU. */
  readonly ports: LegacyPorts;
  readonly cpuid: PvCpuidPolicy;
  readonly sharedInfoMfn: number;
  /** The PV console ring's backend (start_info.console.domU). */
  readonly consoleRing: ConsoleBackend;
  /** The domain's XenStore connection, on its store ring (start_info.store_mfn, store_evtchn). */
  readonly storeRing: XenstoreRing;
  private readonly xenstore: XenstoreServer;
  /** Host input not yet taken: by the ring once the guest uses one, else by console_io(CONSOLEIO_read). */
  private hostInput: number[] = [];
  /** The guest has notified its console port: host input goes to the ring. */
  private ringInUse = false;
  /** Time the core spent running this domain's vCPUs (ns), for the scheduler's shares and --stats. */
  cpuNs = 0n;

  /** Instructions the domain's vCPUs retired, where the engine counts them (undefined on KVM). */
  get instructionsRetired(): number | undefined {
    let n: number | undefined;
    for (const v of this.vcpus) if (v.engine.retired !== undefined) n = (n ?? 0) + v.engine.retired;
    return n;
  }
  /** Frames returned to the pool when the domain died (for tests and stats). */
  framesReturned = 0;

  constructor(p: DomainParts) {
    this.id = p.id;
    this.name = p.name;
    this.memory = p.memory;
    this.layout = p.layout;
    this.hypercalls = p.hypercalls;
    this.vm = p.vm;
    this.perDomain = p.perDomain;
    this.consoleOut = new ConsoleMux({ console: p.console, log: p.log });
    this.pageTypes = p.pageTypes;
    this.m2pVirt = p.m2pVirt;
    this.tlb = p.tlb;
    this.events = new EventChannels(p.id, p.frames.bytes(p.layout.sharedInfoMfn), p.perDomain.vcpus, {
      lookup: (domid) => (domid === p.id ? this.events : p.lookupEvents(domid)),
      notify: (vcpu) => this.vcpus[vcpu]?.eventPending(),
      vcpuInfo: (vcpu) => this.vcpus[vcpu]!.info.words,
    });
    this.clock = p.clock;
    this.ports = new LegacyPorts(() => p.clock.now());
    this.grantWorld = p.grantWorld;
    this.grants = new GrantTable({ domid: p.id, ft: p.frames, holdWritable: (m) => this.holdWritable(m), releaseHeld: (m) => this.releaseHeld(m) });
    this.cpuid = p.cpuid;
    this.sharedInfoMfn = p.layout.sharedInfoMfn;
    // The console's event channel, connected before boot as the toolstack does (the lowest free port).
    this.consoleRing = new ConsoleBackend(p.memory.page(p.layout.pfn.console), this.events, (b) => this.consoleOut.ring(b), () => { /* a broken ring only silences the guest */ },
      () => {
        if (this.ringInUse) return;
        this.ringInUse = true;
        this.consoleRing.input(Uint8Array.from(this.hostInput.splice(0)));
      });
    // XenStore, as xenstored serves a domU: its ring's event channel connected before boot, the
    // page held writable as the console's (below), and the domain's nodes written as libxl writes them.
    this.xenstore = p.xenstore;
    this.storeRing = new XenstoreRing(p.memory.page(p.layout.pfn.store), this.events, p.xenstore, p.id);
    const si = p.memory.page(p.layout.pfn.startInfo);
    const startInfo = StartInfo.over(si.buffer, si.byteOffset);
    startInfo.console.domU.evtchn = this.consoleRing.port;
    startInfo.store_evtchn = this.storeRing.port;
    // vCPU 0's CR3 holds a type reference on the bootstrap L4 (PT-11).
    p.pageTypes.getPageAndType(p.layout.l4Mfn, PageType.l4, p.id);
    this.held = [p.layout.sharedInfoMfn];
    // The console backend writes the console page (ring indices, host input) as xenconsoled does
    // through its mapping, which holds the page writable: so it can never become a page table or
    // descriptor page, whose entries those writes would forge behind the page-type system's back.
    const consoleMfn = p.memory.mfnOf(p.layout.pfn.console);
    if (this.holdWritable(consoleMfn) !== 0n) throw new Error(`the console page (frame ${consoleMfn}) could not be held writable`);
    const storeMfn = p.memory.mfnOf(p.layout.pfn.store);
    if (this.holdWritable(storeMfn) !== 0n) throw new Error(`the store page (frame ${storeMfn}) could not be held writable`);
    this.vcpuControl = this.makeVcpuControl();
    // vCPU 0 boots; the others exist from the start, down, for VCPUOP_initialise and VCPUOP_up (as Xen's max_vcpus).
    for (let i = 0; i < p.perDomain.vcpus; i++) {
      const boot = i === 0 ? { rip: p.layout.entry, rsp: p.layout.stackTop, rsi: p.layout.startInfoVa, cr3: BigInt(p.layout.l4Mfn) << 12n } : undefined;
      this.vcpus.push(new PvVcpu(this, this.vm.createVcpu(i), i, this.perDomain, p.frames, boot));
    }
    p.clock.writeWallclock(this.sharedInfo);
    for (const v of this.vcpus) v.info.updateTime();
    introduceDomain(p.xenstore, {
      domid: p.id, name: p.name, uuid: this.uuid, memoryKiB: p.memory.nrPages * 4, vcpus: this.vcpus.length,
      console: { mfn: consoleMfn, port: this.consoleRing.port }, store: { mfn: storeMfn, port: this.storeRing.port },
    });
  }

  /**
   * Host input (stdin) for the guest: into its console ring once it uses
   * one, else queued for console_io(CONSOLEIO_read), with VIRQ_CONSOLE.
   */
  consoleInput(bytes: Uint8Array): void {
    if (this.ringInUse) {
      this.consoleRing.input(bytes);
      return;
    }
    for (const b of bytes) this.hostInput.push(b);
    this.events.raiseVirq(Virq.VIRQ_CONSOLE);
  }

  private readConsoleIo(max: number): Uint8Array {
    return Uint8Array.from(this.hostInput.splice(0, max));
  }

  /** Takes a general and writable type reference on `mfn`, held until the domain dies; 0 or Xen's errno. */
  holdWritable(mfn: number): bigint {
    if (this.pageTypes.ft.owner[mfn] !== this.id) return errno('XEN_EINVAL'); // not the domain's
    try {
      this.pageTypes.getPageAndType(mfn, PageType.writable, this.id);
    } catch (e) {
      if (e instanceof PageTypeError) return errno('XEN_EACCES'); // a page table or descriptor page
      throw e;
    }
    this.held.push(mfn);
    return 0n;
  }

  /** Drops a reference holdWritable took (a grant status frame a version change lets go). */
  releaseHeld(mfn: number): void {
    const i = this.held.indexOf(mfn);
    if (i < 0) throw new Error(`frame ${mfn} is not held for domain ${this.id}`);
    this.held.splice(i, 1);
    this.pageTypes.putPageAndType(mfn);
  }

  /** The domain's handle as a UUID string (its /vm/<uuid> in XenStore). */
  get uuid(): string {
    const h = Buffer.from(this.handle).toString('hex');
    return `${h.slice(0, 8)}-${h.slice(8, 12)}-${h.slice(12, 16)}-${h.slice(16, 20)}-${h.slice(20)}`;
  }

  /** The shared_info page (vcpu_info for each vCPU, event bitmaps, wallclock). */
  get sharedInfo(): Uint8Array {
    return this.pageTypes.ft.bytes(this.layout.sharedInfoMfn);
  }

  get state(): DomainState {
    return this.stateNow;
  }

  get running(): boolean {
    return this.stateNow === 'running';
  }

  /** How the domain ended, once it has. */
  get end(): DomainEnd | undefined {
    return this.ended;
  }

  start(): void {
    if (this.stateNow !== 'building' && this.stateNow !== 'paused') throw new Error(`domain ${this.id} is ${this.stateNow}, it cannot start`);
    this.stateNow = 'running';
  }

  pause(): void {
    if (this.stateNow !== 'running') return;
    this.stateNow = 'paused';
    this.wakeSleepers();
  }

  private finish(end: DomainEnd): void {
    if (this.ended) return;
    this.ended = end;
    this.consoleRing.service(); // the ring's last output first: it may be the held console_io text's twin
    this.consoleOut.settle();
    if (this.stateNow !== 'dead') this.stateNow = 'shutting-down';
    this.wakeSleepers();
  }

  /**
   * Ends the run loop's sleep of every blocked vCPU (Hypervisor.run), so
   * that it sees the domain paused or ended now rather than at its next
   * event or timer, which may never come.
   */
  private wakeSleepers(): void {
    for (const v of this.vcpus) v.wake?.();
  }

  /**
   * A vCPU is about to handle hypercall `nr`: held console_io text goes out
   * unless this call may be its ring twin's. False if the console's reader
   * paused or ended the domain on seeing it (the call waits for the resume,
   * as it would have had the text come out when it was written).
   */
  hypercallStarting(nr: bigint): boolean {
    if (!this.consoleOut.holding || nr === CONSOLE_IO || nr === EVENT_CHANNEL_OP) return true;
    const was = this.running;
    this.consoleOut.settle();
    return !was || this.running;
  }

  crash(reason: string): void {
    // A debugger may hold a crashing domain stopped, for inspection, before it is torn down.
    if (!this.ended && this.stateNow === 'running' && this.debugger?.holdCrash?.(reason)) {
      this.pause();
      return;
    }
    this.finish({ kind: 'crashed', reason });
  }

  kill(reason: string): void {
    this.finish({ kind: 'killed', reason });
  }

  shutdown(reason: number): void {
    this.finish({ kind: 'shutdown', reason, reasonName: shutdownReasonName(reason) });
  }

  /** What the page-type audit (src/hv/mm/page-audit.ts) needs to know of the domain. */
  auditView(): AuditDomain {
    // The frames the vCPUs have loaded as CR3, kernel and user.
    const roots = this.vcpus.flatMap((v) => v.space.roots());
    const descriptorPages = this.vcpus.flatMap((v) => v.descriptors.gdtFrames);
    const grantMappings = this.grantMaps.entries().map(([, m]) => ({ mfn: m.mfn, writable: m.writable }));
    return { domid: this.id, roots, held: this.held, descriptorPages, grantMappings, reservedL4: this.perDomain.reservedL4 };
  }

  /** The domain's part of every vCPU's hypercall context. */
  domainContext(): Omit<HypercallContext, 'guest' | 'continueWith' | 'mm' | 'cpu' | 'sched'> {
    const d = this;
    return {
      domid: d.id,
      nrPages: d.memory.nrPages,
      maxPages: d.memory.nrPages,
      handle: d.handle,
      get vmAssist() { return d.vmAssist; },
      set vmAssist(v: bigint) { d.vmAssist = v; },
      consoleWrite: (bytes) => d.consoleOut.consoleIo(bytes),
      consoleRead: (max) => d.readConsoleIo(max),
      shutdown: (reason) => d.shutdown(reason),
      m2pVirt: d.m2pVirt,
      events: d.events,
      grants: d.grants,
      grantWorld: d.grantWorld,
      crash: (reason) => d.crash(reason),
      vcpus: d.vcpuControl,
    };
  }

  /** vcpu_op's view of the domain's vCPUs (src/hv/hypercalls/vcpu-op.ts). */
  private makeVcpuControl(): VcpuControl {
    const vcpus = this.vcpus;
    /** Up (nothing to do if it is): runnable, and its loop, asleep while it was down, woken. */
    const bringUp = (v: PvVcpu): void => {
      if (v.online) return;
      v.runstate.change(RunState.RUNSTATE_runnable);
      v.online = true;
      v.wake?.();
    };
    return {
      get count() { return vcpus.length; },
      sched: (i) => vcpus[i]!.blocking,
      initialise: (i, c) => {
        const v = vcpus[i]!;
        if (v.initialised) return errno('XEN_EEXIST');
        const rc = initialiseVcpu(v, c, this.pageTypes, this.id);
        // VGCF_online: up at once (Xen clears _VPF_down but wakes nothing; here it runs, as after VCPUOP_up).
        if (rc === 0n && c.flags & BigInt(VcpuGuestContextFlags.VGCF_online)) bringUp(v);
        return rc;
      },
      up: (i) => {
        const v = vcpus[i]!;
        if (!v.initialised) return errno('XEN_EINVAL');
        bringUp(v);
        return 0n;
      },
      down: (i) => {
        // As Xen: the last vCPU up going down is the domain powering off.
        if (!vcpus.some((o) => o.index !== i && o.online)) {
          this.shutdown(ShutdownReason.SHUTDOWN_poweroff);
          return 0n;
        }
        const v = vcpus[i]!;
        v.online = false;
        // One running (the caller, or started at a wake-up) is marked offline by its loop when its run ends.
        if (v.runstate.state !== RunState.RUNSTATE_running) v.runstate.change(RunState.RUNSTATE_offline);
        if (v.started) v.engine.kick(); // running on the engine's thread: its run ends, and its loop sees it down
        return 0n;
      },
      isUp: (i) => vcpus[i]!.online,
      runstate: (i) => vcpus[i]!.runstate,
    };
  }


  /** Tears the domain down (see the order at the top of this file). Returns the frames freed. */
  destroy(): number {
    if (this.stateNow === 'dead') return 0;
    if (!this.ended) this.finish({ kind: 'killed', reason: 'destroyed' });
    this.consoleRing.service(); // what the guest wrote to its ring but did not announce
    this.consoleOut.settle();
    releaseDomain(this.xenstore, this.storeRing, { domid: this.id, uuid: this.uuid }); // its nodes, watches and transactions
    this.events.closeAll(); // peers' interdomain ports become unbound
    this.vm.destroy(); // ends a run started at wake-up, too
    for (const v of this.vcpus) v.stopped();
    for (const v of this.vcpus) v.descriptors.release(); // the GDT frames' references, before the frames go
    // Grants: others' mappings of this domain's grants are revoked, and its own mappings let go, so no
    // reference of anyone's rests on a frame that is about to be freed, nor on another's from here.
    revokeGrants(this.grantWorld, this.id);
    releaseMappings(this.grantWorld, this.id);
    const xenFrames = this.perDomain.release();
    for (const mfn of this.held) this.pageTypes.putPageAndType(mfn);
    this.framesReturned = xenFrames + this.memory.destroy();
    this.stateNow = 'dead';
    return this.framesReturned;
  }
}
