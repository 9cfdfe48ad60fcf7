// The run loop (a credit-style scheduler): each vCPU of a domain that is
// up runs in slices sized by its domain's weight, under the domain's cap,
// until it blocks, its slice ends or it is preempted by a vCPU an event or
// timer woke; the vCPUs take turns on the core's one CPU thread, as
// several domains do; between slices
// the loop gives the event loop a turn, so the process stays responsive
// and other domains' loops run. All time is the host clock's (HostClock),
// so a test can run it on a VirtualClock. Inputs: run options from the
// caller (range-checked here); guests only through their vCPUs.

import type { Domain, DomainEnd } from '../domain/domain.js';
import type { PvVcpu } from '../cpu/vcpu.js';
import type { HostClock } from './host-clock.js';
import { earlier, type SystemClock } from './time.js';
import { RunState } from '../../abi/generated/vcpu.js';

export interface RunOptions {
  /** Stop the domain after this many milliseconds. */
  timeoutMs?: number;
  /** The timeout the kill reason names, seconds, when it is not timeoutMs (a run resumed after a pause has less left). */
  timeoutLabelS?: number;
  /** Length of one run slice at the default weight, before the core turns to the event loop and other domains. */
  quantumMs?: number;
  /**
   * Scheduling weight (1-65535, default 256): busy domains share the CPU in
   * proportion to their weights (each slice is quantumMs * weight / 256).
   */
  weight?: number;
  /** CPU cap in percent of one CPU (0: none), measured over 100 ms periods. */
  cap?: number;
  /** Aborting kills the domain at the end of the current quantum. */
  signal?: AbortSignal;
}

const DEFAULT_QUANTUM_MS = 10;
/** The weights and caps a domain may have (RunOptions.weight, .cap). */
export const WEIGHT_RANGE = { min: 1, max: 65535 } as const;
export const CAP_RANGE = { min: 0, max: 100 } as const;
/** A domain's default weight, as Xen's credit scheduler's. */
export const DEFAULT_WEIGHT = 256;
/**
 * How long before a blocked vCPU's timer falls due the core runs it in its
 * wait stub (VcpuBlocking.advanceTimer): longer than the ~10 us of work and the
 * 40-50 us first entry after a sleep, so that the guest is waiting in its
 * own context when the deadline passes.
 */
const TIMER_ADVANCE = 80_000n;
/** How far ahead an armed engine deadline earlier than needed may be kept (armDeadline). */
const KEEP_ARMED = 1_000_000n;
/** The accounting period caps are measured over. */
const CAP_PERIOD = 100_000_000n;

/** Whether `n` is a whole number in [r.min, r.max]. */
export function inRange(n: number, r: { min: number; max: number }): boolean {
  return Number.isInteger(n) && n >= r.min && n <= r.max;
}

/** What a domain's vCPU loops share in one run(): its slice, cap and timeout, and the cap's accounting. */
interface DomainRun {
  readonly slice: bigint;
  readonly capNs: bigint | undefined;
  readonly deadline: bigint | undefined;
  periodStart: bigint;
  used: bigint;
}

export class Scheduler {
  /** Wake-up times (host) of the vCPUs sleeping on a timer: a running vCPU's slice ends at the earliest. */
  private readonly wakeTimes = new Map<PvVcpu, bigint>();
  private readonly host: HostClock;

  /** `destroy` tears an ended domain down and forgets it (Hypervisor.destroyDomain). */
  constructor(private readonly clock: SystemClock, private readonly destroy: (d: Domain) => void) {
    this.host = clock.host;
  }

  /**
   * Runs a domain's vCPUs until the domain ends, then destroys it, and
   * resolves with how it ended; or until it is paused, and resolves with
   * { kind: 'paused' } (the domain keeps its state and can run again).
   * Timeouts and aborts take effect within one quantum. Whatever happens,
   * even a paravane bug thrown from a handler, an ended domain is destroyed
   * and its frames return to the pool.
   */
  async run(d: Domain, opts: RunOptions = {}): Promise<DomainEnd | { kind: 'paused' }> {
    const weight = opts.weight ?? DEFAULT_WEIGHT;
    if (!inRange(weight, WEIGHT_RANGE)) throw new RangeError(`weight ${weight}: ${WEIGHT_RANGE.min} to ${WEIGHT_RANGE.max}`);
    const cap = opts.cap ?? 0;
    if (!inRange(cap, CAP_RANGE)) throw new RangeError(`cap ${cap}: a percentage of one CPU, 0 (none) to ${CAP_RANGE.max}`);
    const r: DomainRun = {
      // The slice grows with the weight: busy domains taking turns get CPU in proportion.
      slice: BigInt(Math.max(100_000, Math.round((opts.quantumMs ?? DEFAULT_QUANTUM_MS) * 1e6 * weight / DEFAULT_WEIGHT))),
      capNs: cap ? (CAP_PERIOD * BigInt(cap)) / 100n : undefined,
      deadline: opts.timeoutMs === undefined ? undefined : this.host.now() + BigInt(Math.round(opts.timeoutMs * 1e6)),
      periodStart: this.host.now(),
      used: 0n,
    };
    d.start();
    // One loop per vCPU; the domain's cap and timeout are shared. A failure in one (a paravane bug
    // thrown from a handler) crashes the domain, which ends the others' loops.
    let failure: { error: unknown } | undefined;
    await Promise.all(d.vcpus.map((vcpu) => this.runVcpu(d, vcpu, r, opts).catch((error: unknown) => {
      if (failure) return;
      failure = { error };
      d.crash(`internal error: ${(error as Error).message}`);
    })));
    if (failure) {
      this.destroy(d);
      throw failure.error;
    }
    if (d.state === 'paused') {
      for (const vcpu of d.vcpus) vcpu.engine.setDeadline(null);
      return { kind: 'paused' };
    }
    this.destroy(d);
    return d.end!;
  }

  /** One vCPU's loop (see run): returns when its domain stops running. */
  private async runVcpu(d: Domain, vcpu: PvVcpu, r: DomainRun, opts: RunOptions): Promise<void> {
    const { deadline, capNs } = r;
    // The end of a slice that starts at `now`. As the domain's weight is its own, not each vCPU's
    // (Xen's credit scheduler shares a domain's credit among its active vCPUs), the slice is shared
    // among the domain's vCPUs that can run.
    const sliceFrom = (now: bigint): bigint => {
      let active = 0n;
      for (const v of d.vcpus) if (v.online && !v.blocked) active++;
      const end = earlier(now + (active > 1n ? r.slice / active : r.slice), deadline)!;
      return capNs !== undefined && now + (capNs - r.used) < end ? now + (capNs - r.used) : end;
    };
    /**
     * Stops the vCPU's next run at `until` (host time); `armed` is what its
     * engine deadline is, as this loop set it. An armed deadline
     * that falls earlier is kept while it is more than KEEP_ARMED ahead: it
     * can only end a run early, and the loop then arms again. The same one
     * still ahead is not armed again. That spares a
     * timer_settime (~2.5 us here) on most switches between domains, where
     * each new slice would otherwise move its end. One closer than that is
     * replaced, so that a vCPU's own past timer never interrupts it near its
     * wake-up (the timer advance's wait is 80 us). A deadline left armed
     * while its vCPU sleeps ends another vCPU's run only for a moment (the
     * CPU thread enters again) and makes its own next run return at once.
     */
    let armed: bigint | undefined;
    const armDeadline = (until: bigint, now: bigint): void => {
      if (armed !== undefined && armed > now && (armed === until || (armed <= until && armed - now > KEEP_ARMED))) return;
      vcpu.engine.setDeadline(until);
      armed = until;
    };
    // A slice begun by startEarly while the loop was asleep: its run is under way (or it failed).
    let early: { start: bigint; sliceEnd: bigint } | { error: unknown } | undefined;
    /**
     * Wake-up preemption, as Xen's credit scheduler boosts a vCPU an event
     * wakes: when an event (or VCPUOP_up) wakes the sleeping vCPU while the
     * CPU thread is free (the event came from another vCPU's hypercall,
     * which the core is still handling, or from the event loop), the vCPU's
     * run starts at once, on the checks the loop itself would make, and the
     * rest of that hypercall overlaps it, as it would on a second CPU. The
     * loop, which resumes in the next microtask, takes the run's exit. A
     * vCPU that was running (not blocked) gives way to it (`onCpu`).
     * Whatever fails here is this domain's, never the sender's: the loop
     * rethrows it.
     */
    const startEarly = (): void => {
      if (!vcpu.engine.canStart || this.onCpu?.started || !d.running || opts.signal?.aborted) return;
      try {
        const now = this.host.now();
        if ((deadline !== undefined && now >= deadline) || now - r.periodStart >= CAP_PERIOD || (capNs !== undefined && r.used >= capNs)) return;
        const sliceEnd = sliceFrom(now);
        const until = this.runUntil(vcpu, sliceEnd, now);
        if (until === undefined) return;
        armDeadline(until, now);
        vcpu.runstate.change(RunState.RUNSTATE_running); // before it runs, as Xen updates it
        vcpu.start();
        this.onCpu = vcpu;
        early = { start: now, sliceEnd };
      } catch (error) {
        early = { error };
      }
    };
    while (d.running) {
      let start: bigint;
      let sliceEnd: bigint;
      let now = this.host.now();
      if (early !== undefined) {
        const e = early;
        early = undefined;
        if ('error' in e) throw e.error;
        ({ start, sliceEnd } = e);
      } else {
        if (opts.signal?.aborted) {
          d.kill(String(opts.signal.reason ?? 'aborted'));
          break;
        }
        if (deadline !== undefined && now >= deadline) {
          d.kill(`timed out after ${opts.timeoutLabelS ?? opts.timeoutMs! / 1000} s`);
          break;
        }
        if (!vcpu.online) {
          // Down (not yet brought up, or VCPUOP_down): no CPU until VCPUOP_up wakes it.
          await this.sleep(vcpu, deadline, opts.signal, startEarly);
          continue;
        }
        if (now - r.periodStart >= CAP_PERIOD) {
          r.periodStart = now;
          r.used = 0n;
        }
        if (capNs !== undefined && r.used >= capNs) {
          // Over its cap for this period: no CPU until the next one.
          await this.sleep(undefined, earlier(r.periodStart + CAP_PERIOD, deadline), opts.signal);
          continue;
        }
        // One slice: runs until it is used up, the vCPU blocks, or the domain ends.
        start = now;
        sliceEnd = sliceFrom(now);
      }
      while (d.running) {
        if (!vcpu.started) {
          // Another vCPU started (startEarly) goes first: its loop takes its exit in a moment.
          if (this.onCpu?.started) break;
          now = this.host.now();
          const until = this.runUntil(vcpu, sliceEnd, now);
          if (until === undefined) break;
          armDeadline(until, now);
        }
        // Reading path 1: the vCPU runs until an exit, which is handled, until a handler says stop.
        // A vCPU this one's hypercall woke and started (onCpu) preempts it, as a boosted vCPU would.
        vcpu.runstate.change(RunState.RUNSTATE_running);
        while (vcpu.handleExit(vcpu.run()) && !this.onCpu?.started);
        if (opts.signal?.aborted) break;
        // SCHEDOP_yield: the rest of the slice goes to the others.
        if (vcpu.takeYield()) break;
      }
      const ran = this.host.now() - start;
      r.used += ran;
      d.cpuNs += ran;
      vcpu.cpuNs += ran;
      // Off the CPU: its runstate says why (Xen's, at every schedule; the guest's copy follows).
      vcpu.runstate.change(!d.running || !vcpu.online ? RunState.RUNSTATE_offline
        : vcpu.blocked ? RunState.RUNSTATE_blocked : RunState.RUNSTATE_runnable);
      if (!d.running) break;
      if (vcpu.blocked && vcpu.online) {
        // Blocked (SCHEDOP_block or poll): no CPU until an event, a timer or the poll timeout.
        // Woken by its timer: from TIMER_ADVANCE before it, the vCPU waits in its own context.
        const timer = vcpu.blocking.advanceableTimer(); // while still blocked: wakeable() may clear that
        if (vcpu.blocking.wakeable()) continue;
        const wakeAt = timer !== undefined ? timer - TIMER_ADVANCE : vcpu.blocking.wakeDeadline();
        const at = wakeAt === undefined ? undefined : this.clock.hostTime(wakeAt);
        await this.sleep(vcpu, earlier(at, deadline), opts.signal, startEarly);
        if (early === undefined && timer !== undefined && !vcpu.blocking.wakeable() && this.host.now() >= at!) vcpu.blocking.advanceTimer();
        if (early === undefined && !vcpu.blocked && vcpu.online && d.running) vcpu.runstate.change(RunState.RUNSTATE_runnable);
        continue;
      }
      // The slice is over, or a started vCPU preempted this one: the others (whose loops resume
      // first, in microtasks) and the event loop, then a new slice.
      await this.host.turn();
    }
    // A failure to start the run, met after the domain stopped running: still this domain's.
    if (early !== undefined && 'error' in early) throw early.error;
    if (vcpu.started && d.state !== 'dead') {
      // Paused or ended between startEarly and the loop's turn: the run ends now, and its exit is
      // handled. (A domain destroyed meanwhile had its engine end the run.)
      vcpu.engine.kick();
      vcpu.handleExit(vcpu.run());
    }
    if (d.state !== 'dead') vcpu.runstate.change(RunState.RUNSTATE_offline); // paused or ended
  }

  /**
   * Sleeps until the vCPU is woken (an event for it), host time `at`
   * (undefined: no limit) or an abort. The wait itself is the host clock's
   * (RealHostClock polls near the end for a punctual wake-up); the vCPU's
   * engine is told to get ready shortly before.
   */
  private sleep(vcpu: PvVcpu | undefined, at: bigint | undefined, signal?: AbortSignal, onEvent?: () => void): Promise<void> {
    const w = at === undefined ? undefined : this.host.wait(at, () => vcpu?.engine.prepareRun?.());
    return new Promise<void>((resolve) => {
      let finished = false;
      // No longer asleep to the others: no wake hook, no wake-up time.
      const unhook = () => {
        if (!vcpu) return;
        vcpu.wake = undefined;
        this.wakeTimes.delete(vcpu);
      };
      const done = () => {
        if (finished) return;
        finished = true;
        unhook();
        w?.end();
        signal?.removeEventListener('abort', done);
        resolve();
      };
      // An event (PvVcpu.eventPending) ends the sleep. onEvent may start the run at once: first,
      // as the rest (a wait to end, a promise to resolve) is not on the way to the guest.
      if (vcpu) {
        vcpu.wake = onEvent === undefined ? done : () => {
          unhook();
          try {
            onEvent();
          } finally {
            done();
          }
        };
      }
      signal?.addEventListener('abort', done);
      if (w === undefined) return;
      if (vcpu) this.wakeTimes.set(vcpu, at!);
      void w.done.then(done);
    });
  }

  /**
   * Where the vCPU's next run in a slice ending at `sliceEnd` must stop
   * (host time), or undefined when it may not run now: blocked, its slice
   * used up, or a sleeping vCPU's wake-up due (a waking vCPU preempts a
   * busy one in Xen's credit scheduler, BOOST: the slice ends there and
   * the rest of it waits its turn). Timers first: a due one raises
   * VIRQ_TIMER, which may wake the vCPU.
   */
  private runUntil(vcpu: PvVcpu, sliceEnd: bigint, now: bigint): bigint | undefined {
    if (!vcpu.online) return undefined;
    const timer = vcpu.blocking.expireTimers();
    if (!vcpu.blocking.wakeable()) return undefined;
    const wake = this.earliestWake();
    if (now >= sliceEnd || (wake !== undefined && now >= wake)) return undefined;
    let until = wake !== undefined && wake < sliceEnd ? wake : sliceEnd;
    if (timer !== undefined) {
      const t = this.clock.hostTime(timer);
      if (t < until) until = t > now ? t : now + 1n;
    }
    return until;
  }

  /**
   * The vCPU startEarly last started: while it is still `started` (until
   * its run() takes the exit, or its domain is destroyed) no other vCPU
   * starts or runs.
   */
  private onCpu: PvVcpu | undefined;

  private earliestWake(): bigint | undefined {
    let first: bigint | undefined;
    for (const t of this.wakeTimes.values()) if (first === undefined || t < first) first = t;
    return first;
  }
}
