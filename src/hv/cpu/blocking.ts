// A vCPU's timers and sleeps: the single-shot and periodic timers that
// raise VIRQ_TIMER, SCHEDOP_block and SCHEDOP_poll, when a blocked vCPU
// may run again, and the timer advance that lets a vCPU woken by its timer
// wait for the deadline in its own context (the wait stub) instead of
// paying an entry after it. The run loop (src/hv/sched/) asks these
// questions; the scheduling hypercalls (SchedContext) set them up. Inputs:
// ports and times from hypercalls, already range-checked there.

import { Virq } from '../../abi/generated/xen.js';
import type { Vcpu } from '../../engine/types.js';
import type { SchedContext } from '../hypercalls/context.js';
import type { EventChannels } from '../events/channels.js';
import { earlier, tscAt, VcpuTimers, type SystemClock } from '../sched/time.js';
import { WAIT } from '../mm/xen-space.js';
import { EXIT } from './exit-counts.js';
import { inExceptionStubs } from './guest-state.js';
import type { VcpuAddressSpace } from './address-space.js';
import type { VcpuInfoArea } from './vcpu-info.js';
import { RFLAGS } from './rflags.js';

/** Why a blocked vCPU sleeps: SCHEDOP_block (any event), or SCHEDOP_poll (these ports, until `timeout`; 0: none). */
export type BlockedOn = { on: 'block' } | { on: 'poll'; ports: number[]; timeout: bigint };

/**
 * Where a vCPU is in its life, as the run loop sees it: `runnable` (the
 * core may run it), `on-cpu` (a run was started on the engine's thread
 * and its exit is not yet taken: only kicks may touch it), `blocked`
 * (SCHEDOP_block or poll, until an event, a timer or the timeout wakes it).
 */
export type VcpuState = { kind: 'runnable' } | { kind: 'on-cpu' } | ({ kind: 'blocked' } & BlockedOn);

/** What blocking uses of its vCPU and domain. */
export interface BlockingHost {
  /** The vCPU's state in its life: blocking sets and clears its blocked state. */
  state: VcpuState;
  readonly index: number;
  readonly vcpus: number;
  readonly engine: Vcpu;
  readonly space: VcpuAddressSpace;
  readonly info: VcpuInfoArea;
  readonly events: EventChannels;
  readonly clock: SystemClock;
  /** The vCPU's wait page (its stub at 0, the stub's data at WAIT) and the stub's address. */
  readonly waitData: DataView;
  readonly waitVirt: bigint;
  /** The run loop must look at the vCPU again before running it on (`why`). */
  requestStop(why: 'timers' | 'yield'): void;
  count(kind: number): void;
  /** VCPUOP_register_vcpu_info (0 or an errno). */
  registerVcpuInfo(mfn: bigint, offset: number): bigint;
}

export class VcpuBlocking implements SchedContext {
  /** Timers, in system time (a 10 ms periodic timer runs from the start, as on Xen). A change ends the run for the run loop to re-arm. */
  readonly timers = new VcpuTimers(() => this.v.requestStop('timers'));
  /** Why the vCPU is not running, until it is woken (kept in the vCPU's state). */
  get blocked(): BlockedOn | undefined {
    const s = this.v.state;
    return s.kind === 'blocked' ? s : undefined;
  }

  private set blocked(b: BlockedOn | undefined) {
    this.v.state = b ? { kind: 'blocked', ...b } : { kind: 'runnable' };
  }
  /** Set by advanceTimer: the system time the next run waits for in the wait stub. */
  private waitUntil: bigint | undefined;

  constructor(private readonly v: BlockingHost) {
    this.timers.period = 10_000_000n;
    this.timers.next = v.clock.now() + this.timers.period;
  }

  // --- SchedContext: the scheduling hypercalls.

  get vcpu(): number { return this.v.index; }
  get vcpus(): number { return this.v.vcpus; }
  now(): bigint { return this.v.clock.now(); }

  /** SCHEDOP_block: blocked, then at once woken if what it waits for is already there (wakeable's rule). As Xen, block enables event delivery. */
  block(): void {
    this.v.info.masked = false;
    this.blocked = { on: 'block' };
    this.wakeable();
  }

  poll(ports: number[], timeout: bigint): void {
    this.blocked = { on: 'poll', ports, timeout };
    this.wakeable();
  }

  yieldCpu(): void {
    this.v.requestStop('yield');
  }

  registerVcpuInfo(mfn: bigint, offset: number): bigint {
    return this.v.registerVcpuInfo(mfn, offset);
  }

  // --- What the run loop asks.

  /** Whether a blocked vCPU may run again (and if so, it is no longer blocked). */
  wakeable(): boolean {
    const b = this.blocked;
    if (!b) return true;
    const woken = b.on === 'block'
      ? this.v.info.upcallPending
      // A poller also wakes for an upcall it could take (as Xen), or its timeout.
      : b.ports.some((p) => this.v.events.isPending(p)) || this.v.info.upcallDeliverable() || (b.timeout !== 0n && this.v.clock.now() >= b.timeout);
    if (woken) this.blocked = undefined;
    return woken;
  }

  /** The system time a blocked vCPU must be looked at again (its timers, a poll timeout). */
  wakeDeadline(): bigint | undefined {
    const b = this.blocked;
    return earlier(this.timers.deadline(), b?.on === 'poll' && b.timeout ? b.timeout : undefined);
  }

  /** Raises VIRQ_TIMER if a timer is due; returns the next expiry in system time. */
  expireTimers(): bigint | undefined {
    this.expireAt(this.v.clock.now());
    return this.timers.deadline();
  }

  /** Expires the timers due at system time `t`, raising VIRQ_TIMER if any was; returns whether one was. */
  private expireAt(t: bigint): boolean {
    if (!this.timers.expire(t)) return false;
    this.v.events.raiseVirq(Virq.VIRQ_TIMER, this.v.index);
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
    return this.v.space.userMode || inExceptionStubs(this.v.engine.regs.rip) ? undefined : due;
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

  /** At entry, after the upcall: points the vCPU at its wait stub if an advance is pending, with the guest's rax, rdx, flags and rip in the stub's page. */
  enterWait(): void {
    const due = this.waitUntil;
    if (due === undefined) return;
    this.waitUntil = undefined;
    const r = this.v.engine.regs;
    const w = this.v.waitData;
    w.setBigUint64(WAIT.DEADLINE, tscAt(this.v.info.view, due), true);
    const flags = r.rflags;
    w.setUint8(WAIT.OF_AL, flags & RFLAGS.OF ? 0x7f : 0);
    w.setUint8(WAIT.FLAGS_AH, Number(flags & 0xffn));
    w.setBigUint64(WAIT.RAX, r.rax, true);
    w.setBigUint64(WAIT.RDX, r.rdx, true);
    w.setBigUint64(WAIT.TARGET, r.rip, true);
    r.rip = this.v.waitVirt;
    this.v.count(EXIT.timerWait);
  }
}
