// The hypervisor core: one machine (machine memory, frame table, M2P, the
// hypervisor's shared frames, the hypercall table) and the domains built on
// it. Single-threaded: it owns all state, runs vCPUs through the engine in
// quanta and returns to the event loop between quanta so the process stays
// responsive (signals, output, timers).

import type { Engine, MachineMemory } from '../engine/types.js';
import { buildDomain } from './domain/builder.js';
import { Domain, type DomainEnd } from './domain/domain.js';
import { parseGuestKernel } from './domain/elf.js';
import { FrameTable, PAGE_SIZE } from './mm/frames.js';
import type { HypercallTable } from './hypercalls/table.js';
import { createHypercallTable } from './hypercalls/index.js';
import { M2P_ALT_VIRT_START, M2P_VIRT_START, XenSpace, type PerDomainSpace } from './mm/xen-space.js';
import { PageTypes } from './mm/page-types.js';
import { DomainTranslations, engineCache, TranslationMarks } from './mm/tlb.js';
import { earlier, SystemClock } from './sched/time.js';
import type { PvVcpu } from './cpu/vcpu.js';
import { BuildError } from './domain/builder.js';
import { syscallStaysAtCpl3, upperHalfSlot256Usable } from '../engine/host-probe.js';

export interface MachineOptions {
  /** Machine memory in bytes (all domains plus the hypervisor's own frames). */
  memoryBytes: number;
  /** Whether `syscall` stays at CPL 3 on this host; probed when not given. */
  syscallAtCpl3?: boolean;
  /** Whether guests can use L4 slot 256 (Xen's M2P address) on this host; probed when not given. */
  slot256Usable?: boolean;
}

export interface DomainOptions {
  name?: string;
  memoryBytes: number;
  cmdline?: string;
  initrd?: Uint8Array;
  /** Receives the guest's console output. */
  console?: (bytes: Uint8Array) => void;
}

export interface RunOptions {
  /** Stop the domain after this many milliseconds. */
  timeoutMs?: number;
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

/** The domain ids Xen leaves to guests: 1 to DOMID_FIRST_RESERVED - 1 (0 is the control domain). */
const FIRST_DOMID = 1;
const LAST_DOMID = 0x7fef;
const DEFAULT_QUANTUM_MS = 10;
/** The weights and caps a domain may have (RunOptions.weight, .cap). */
export const WEIGHT_RANGE = { min: 1, max: 65535 } as const;
export const CAP_RANGE = { min: 0, max: 100 } as const;
/** A domain's default weight, as Xen's credit scheduler's. */
export const DEFAULT_WEIGHT = 256;
/** How long before a sleeping vCPU's wake-up time the core polls the clock instead of sleeping. */
const SPIN_WINDOW = 2_000_000n;
/** How long before a sleeping vCPU's wake-up time its engine is told to get ready (within the CPU thread's ~0.5 ms spin). */
const PREPARE_WINDOW = 300_000n;
/** How close to the wake-up time the core stops serving the event loop and spins for it. */
const FINAL_SPIN = 30_000n;
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

/** Frames the hypervisor keeps for itself beyond the M2P (shared tables, IDT, stubs). */
const XEN_RESERVE_FRAMES = 64;

/** Machine memory a single-domain run needs for a domain of `domainBytes`. */
export function machineBytesFor(domainBytes: number): number {
  const frames = Math.ceil(domainBytes / PAGE_SIZE) + 1 + 32 + XEN_RESERVE_FRAMES;
  // The M2P takes 8 bytes per machine frame.
  const total = frames + Math.ceil(((frames + 1024) * 8) / PAGE_SIZE) + 1024;
  return Math.ceil((total * PAGE_SIZE) / (1 << 21)) * (1 << 21);
}

export class Hypervisor {
  readonly memory: MachineMemory;
  readonly frames: FrameTable;
  readonly xen: XenSpace;
  readonly hypercalls: HypercallTable;
  readonly domains = new Map<number, Domain>();
  /** The page-type system: every guest page table is validated by it. */
  readonly pageTypes: PageTypes;
  /** Where guests read the M2P: Xen's address, or its second mapping where the host reserves slot 256. */
  readonly m2pVirt: bigint;
  private readonly perDomain = new Map<number, PerDomainSpace>();
  /** Each domain's stale-translation tracker, from the start of its build. */
  private readonly tlbs = new Map<number, DomainTranslations>();
  private readonly marks: TranslationMarks;
  /** System time, shared by every domain. */
  readonly clock = new SystemClock();
  private nextDomid = FIRST_DOMID;
  /** Wake-up times (host) of the vCPUs sleeping on a timer: a running vCPU's slice ends at the earliest. */
  private readonly wakeTimes = new Map<PvVcpu, bigint>();
  private closed = false;

  constructor(private readonly engine: Engine, opts: MachineOptions) {
    this.memory = engine.createMemory(opts.memoryBytes);
    try {
      this.frames = new FrameTable(this.memory);
      // How `syscall` behaves decides the syscall stub (one probe guest, ~1 ms).
      this.xen = new XenSpace(this.frames, opts.syscallAtCpl3 ?? syscallStaysAtCpl3(engine));
      this.m2pVirt = opts.slot256Usable ?? upperHalfSlot256Usable(engine) ? M2P_VIRT_START : M2P_ALT_VIRT_START;
      this.hypercalls = createHypercallTable();
      this.pageTypes = new PageTypes(this.frames, (mfn, domid) => {
        const pd = this.perDomain.get(domid);
        if (!pd) throw new Error(`no hypervisor area for domain ${domid}`);
        this.xen.fillReservedL4(mfn, pd);
      }, {
        typeTaken: (mfn, type) => this.tlbs.get(this.frames.owner[mfn]!)?.typeTaken(mfn, type),
        tableValidated: (mfn) => this.tlbs.get(this.frames.owner[mfn]!)?.tableValidated(mfn),
      });
      this.marks = new TranslationMarks(this.frames.count);
    } catch (e) {
      this.memory.close();
      throw e;
    }
  }

  /** The id the next createDomain will give (when no domain is destroyed meanwhile). */
  peekNextDomid(): number {
    for (let i = 0, id = this.nextDomid; i <= LAST_DOMID - FIRST_DOMID; i++, id = id >= LAST_DOMID ? FIRST_DOMID : id + 1) {
      if (!this.domains.has(id)) return id;
    }
    throw new BuildError('every domain id is in use');
  }

  private allocateDomid(): number {
    const id = this.peekNextDomid();
    this.nextDomid = id >= LAST_DOMID ? FIRST_DOMID : id + 1;
    return id;
  }

  /**
   * Builds a domain from a kernel image. Throws GuestElfError for a bad
   * kernel and BuildError for options that cannot work; nothing is left
   * allocated after a failure.
   */
  createDomain(kernelFile: Uint8Array, opts: DomainOptions): Domain {
    if (this.closed) throw new Error('the hypervisor is closed');
    const kernel = parseGuestKernel(kernelFile);
    const id = this.allocateDomid();
    const perDomain = this.xen.buildPerDomain(1);
    let built: ReturnType<typeof buildDomain> | undefined;
    let vm: ReturnType<Engine['createVm']> | undefined;
    // The tracker exists before the build so that the boot tables are
    // marked as tables the engine may cache; it has nothing to flush
    // until the VM exists.
    const tlb = new DomainTranslations(engineCache({ dropCachedTranslations: () => vm?.dropCachedTranslations() }, this.memory), this.marks);
    try {
      this.perDomain.set(id, perDomain);
      this.tlbs.set(id, tlb);
      built = buildDomain(this.pageTypes, id, kernel, kernelFile, opts);
      vm = this.engine.createVm();
      for (const [slot, c] of this.memory.chunks.entries()) {
        vm.mapMemory({ slot, guestPhys: c.base, memory: this.memory, offset: c.base, size: c.size });
      }
      const d = new Domain({
        id, name: opts.name ?? `domain-${id}`, frames: this.frames, memory: built.memory, perDomain, vm,
        layout: built.layout, hypercalls: this.hypercalls, pageTypes: this.pageTypes, m2pVirt: this.m2pVirt, console: opts.console ?? (() => {}), tlb,
        lookupEvents: (domid) => this.domains.get(domid)?.events, clock: this.clock,
      });
      this.domains.set(id, d);
      return d;
    } catch (e) {
      vm?.destroy();
      built?.memory.destroy();
      perDomain.release();
      this.perDomain.delete(id);
      this.tlbs.delete(id);
      throw e;
    }
  }

  /** Destroys a domain and forgets it; returns the frames freed. */
  destroyDomain(d: Domain): number {
    const n = d.destroy();
    this.domains.delete(d.id);
    this.perDomain.delete(d.id);
    this.tlbs.delete(d.id);
    return n;
  }

  /**
   * Runs a domain's vCPU until the domain ends, then destroys it, and
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
    // The slice grows with the weight: busy domains taking turns get CPU in proportion.
    const slice = BigInt(Math.max(100_000, Math.round((opts.quantumMs ?? DEFAULT_QUANTUM_MS) * 1e6 * weight / DEFAULT_WEIGHT)));
    const capNs = cap ? (CAP_PERIOD * BigInt(cap)) / 100n : undefined;
    const deadline = opts.timeoutMs === undefined ? undefined : process.hrtime.bigint() + BigInt(Math.round(opts.timeoutMs * 1e6));
    const vcpu = d.vcpus[0]!;
    let periodStart = process.hrtime.bigint();
    let used = 0n;
    // The end of a slice that starts at `now`.
    const sliceFrom = (now: bigint): bigint => {
      const end = earlier(now + slice, deadline)!;
      return capNs !== undefined && now + (capNs - used) < end ? now + (capNs - used) : end;
    };
    /**
     * Stops the vCPU's next run at `until` (host time); `armed` is what its
     * engine deadline is, as this run() set it. An armed deadline
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
     * wakes: when an event wakes the sleeping vCPU while the CPU thread is
     * free (the event came from another vCPU's hypercall, which the core is
     * still handling, or from the event loop), the vCPU's run starts at
     * once, on the checks the loop itself would make, and the rest of that
     * hypercall overlaps it, as it would on a second CPU. The loop, which
     * resumes in the next microtask, takes the run's exit. A domain whose
     * vCPU was running (not blocked) gives way to it (`onCpu`). Whatever
     * fails here is this domain's, never the sender's: the loop rethrows it.
     */
    const startEarly = (): void => {
      if (!vcpu.engine.canStart || this.onCpu?.started || !d.running || opts.signal?.aborted) return;
      try {
        const now = process.hrtime.bigint();
        if ((deadline !== undefined && now >= deadline) || now - periodStart >= CAP_PERIOD || (capNs !== undefined && used >= capNs)) return;
        const sliceEnd = sliceFrom(now);
        const until = this.runUntil(vcpu, sliceEnd, now);
        if (until === undefined) return;
        armDeadline(until, now);
        vcpu.start();
        this.onCpu = vcpu;
        early = { start: now, sliceEnd };
      } catch (error) {
        early = { error };
      }
    };
    d.start();
    try {
      while (d.running) {
        let start: bigint;
        let sliceEnd: bigint;
        let now = process.hrtime.bigint();
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
            d.kill(`timed out after ${opts.timeoutMs! / 1000} s`);
            break;
          }
          if (now - periodStart >= CAP_PERIOD) {
            periodStart = now;
            used = 0n;
          }
          if (capNs !== undefined && used >= capNs) {
            // Over its cap for this period: no CPU until the next one.
            await this.sleep(undefined, earlier(periodStart + CAP_PERIOD, deadline), opts.signal);
            continue;
          }
          // One slice: runs until it is used up, the vCPU blocks, or the domain ends.
          start = now;
          sliceEnd = sliceFrom(now);
        }
        while (d.running) {
          if (!vcpu.started) {
            // Another domain's vCPU started (startEarly) goes first: its loop takes its exit in a moment.
            if (this.onCpu?.started) break;
            now = process.hrtime.bigint();
            const until = this.runUntil(vcpu, sliceEnd, now);
            if (until === undefined) break;
            armDeadline(until, now);
          }
          // A vCPU this one's hypercall woke and started (onCpu) preempts it, as a boosted vCPU would.
          while (vcpu.handleExit(vcpu.run()) && !this.onCpu?.started);
          if (opts.signal?.aborted) break;
          // SCHEDOP_yield: the rest of the slice goes to the others.
          if (vcpu.takeYield()) break;
        }
        const ran = process.hrtime.bigint() - start;
        used += ran;
        d.cpuNs += ran;
        if (!d.running) break;
        if (vcpu.blocked) {
          // Blocked (SCHEDOP_block or poll): no CPU until an event, a timer or the poll timeout.
          // Woken by its timer: from TIMER_ADVANCE before it, the vCPU waits in its own context.
          const timer = vcpu.blocking.advanceableTimer(); // while still blocked: wakeable() may clear that
          if (vcpu.blocking.wakeable()) continue;
          const wakeAt = timer !== undefined ? timer - TIMER_ADVANCE : vcpu.blocking.wakeDeadline();
          const at = wakeAt === undefined ? undefined : this.clock.hostTime(wakeAt);
          await this.sleep(vcpu, earlier(at, deadline), opts.signal, startEarly);
          if (early === undefined && timer !== undefined && !vcpu.blocking.wakeable() && process.hrtime.bigint() >= at!) vcpu.blocking.advanceTimer();
          continue;
        }
        // The slice is over, or a started vCPU preempted this one: the others (whose loops resume
        // first, in microtasks) and the event loop, then a new slice.
        await new Promise<void>((resolve) => setImmediate(resolve));
      }
      // A failure to start the run, met after the domain stopped running: still this domain's.
      if (early !== undefined && 'error' in early) throw early.error;
      if (vcpu.started && d.state !== 'dead') {
        // Paused or ended between startEarly and the loop's turn: the run ends now, and its exit is
        // handled. (A domain destroyed meanwhile had its engine end the run.)
        vcpu.engine.kick();
        vcpu.handleExit(vcpu.run());
      }
    } catch (e) {
      d.crash(`internal error: ${(e as Error).message}`);
      this.destroyDomain(d);
      throw e;
    }
    if (d.state === 'paused') {
      vcpu.engine.setDeadline(null);
      return { kind: 'paused' };
    }
    this.destroyDomain(d);
    return d.end!;
  }

  /**
   * Sleeps until the vCPU is woken (an event for it), host time `at`
   * (process.hrtime; undefined: no limit) or an abort. Like KVM's halt
   * polling: a setTimeout until SPIN_WINDOW before `at`, then polling the
   * clock from the event loop (other domains keep running in between). On
   * this host a CPU that went idle takes ~0.5-2 ms to come back (nested
   * virtualization), which a timer alone would add to every wake-up; the
   * window keeps the CPU busy for at most SPIN_WINDOW per sleep.
   */
  private sleep(vcpu: PvVcpu | undefined, at: bigint | undefined, signal?: AbortSignal, onEvent?: () => void): Promise<void> {
    return new Promise<void>((resolve) => {
      let timer: NodeJS.Timeout | undefined;
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
        if (timer) clearTimeout(timer);
        signal?.removeEventListener('abort', done);
        resolve();
      };
      let prepared = false;
      const poll = () => {
        if (finished) return;
        const now = process.hrtime.bigint();
        if (!prepared && at! - now < PREPARE_WINDOW) {
          prepared = true;
          vcpu?.engine.prepareRun?.();
        }
        if (at! - now <= FINAL_SPIN) {
          // Close enough that an event-loop turn (~10 us) would make it late.
          while (process.hrtime.bigint() < at!);
          done();
        } else setImmediate(poll);
      };
      // An event (PvVcpu.eventPending) ends the sleep. onEvent may start the run at once: first,
      // as the rest (a timer to clear, a promise to resolve) is not on the way to the guest.
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
      if (at === undefined) return;
      if (vcpu) this.wakeTimes.set(vcpu, at);
      const wait = at - process.hrtime.bigint() - SPIN_WINDOW;
      if (wait > 0n) timer = setTimeout(() => { timer = undefined; poll(); }, Number(wait) / 1e6);
      else poll();
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

  /** Destroys every domain and releases the machine. */
  close(): void {
    if (this.closed) return;
    for (const d of [...this.domains.values()]) this.destroyDomain(d);
    this.xen.release();
    this.memory.close();
    this.closed = true;
  }
}
