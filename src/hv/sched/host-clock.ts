// The host's time, as the run loop and the hypervisor's clocks see it:
// CLOCK_MONOTONIC in nanoseconds (process.hrtime.bigint), waits until a
// host time, and a turn of the event loop. The real clock does what this
// host needs for punctual wake-ups (see RealHostClock.wait); a test gives
// the core a VirtualClock instead, whose time moves only when the test (or
// the guest it scripts) moves it, so scheduling and timer behaviour is
// asserted exactly, whatever the load on the machine. Inputs: none from
// guests.

/** A wait for a host time, which the waiter may end early. */
export interface Wait {
  readonly done: Promise<void>;
  /** Ends the wait now (resolves `done`). */
  end(): void;
}

export interface HostClock {
  /** Host time now, ns (CLOCK_MONOTONIC, as process.hrtime.bigint). */
  now(): bigint;
  /** Resolves at host time `at` or when ended; `prepare` is called shortly before `at`, to get an engine ready. */
  wait(at: bigint, prepare?: () => void): Wait;
  /** One turn of the event loop: I/O, timers and other domains' loops run before it resolves. */
  turn(): Promise<void>;
}

/** How long before a wake-up time the real clock polls the time instead of sleeping. */
const SPIN_WINDOW = 2_000_000n;
/** How long before a wake-up time `prepare` is called (within the KVM CPU thread's ~0.5 ms spin). */
const PREPARE_WINDOW = 300_000n;
/** How close to the wake-up time the real clock stops serving the event loop and spins for it. */
const FINAL_SPIN = 30_000n;

/**
 * The real host clock. A wait is like KVM's halt polling: a setTimeout
 * until SPIN_WINDOW before `at`, then polling the clock from the event
 * loop (other domains keep running in between), and a final spin. On this
 * host a CPU that went idle takes ~0.5-2 ms to come back (nested
 * virtualization), which a timer alone would add to every wake-up; the
 * window keeps the CPU busy for at most SPIN_WINDOW per wait.
 */
export const realHostClock: HostClock = {
  now: () => process.hrtime.bigint(),
  turn: () => new Promise<void>((resolve) => setImmediate(resolve)),
  wait(at, prepare) {
    let end!: () => void;
    let timer: NodeJS.Timeout | undefined;
    let finished = false;
    const done = new Promise<void>((resolve) => {
      end = () => {
        if (finished) return;
        finished = true;
        if (timer) clearTimeout(timer);
        resolve();
      };
    });
    let prepared = false;
    const poll = () => {
      if (finished) return;
      const now = process.hrtime.bigint();
      if (!prepared && at - now < PREPARE_WINDOW) {
        prepared = true;
        prepare?.();
      }
      if (at - now <= FINAL_SPIN) {
        // Close enough that an event-loop turn (~10 us) would make it late.
        while (process.hrtime.bigint() < at);
        end();
      } else setImmediate(poll);
    };
    const wait = at - process.hrtime.bigint() - SPIN_WINDOW;
    if (wait > 0n) timer = setTimeout(() => { timer = undefined; poll(); }, Number(wait) / 1e6);
    else poll();
    return { done, end };
  },
};

/**
 * A clock the test controls. Time moves only by advance() / advanceTo()
 * (a scripted guest that runs until its deadline advances it), and by
 * settle(), which runs the event loop until every loop is parked in a
 * wait and then jumps to the earliest wait's time: a discrete-event
 * simulation of the host, deterministic on any machine.
 */
export class VirtualClock implements HostClock {
  private t: bigint;
  private readonly waits: Array<{ at: bigint; end: () => void; prepare?: () => void }> = [];
  /** Turns asked for and not yet given: while any is outstanding, some loop is still working. */
  private turns = 0;

  constructor(start = 1_000_000_000n) {
    this.t = start;
  }

  now(): bigint {
    return this.t;
  }

  advance(ns: bigint): void {
    this.advanceTo(this.t + ns);
  }

  /** Moves time forward to `at` (never back), ending the waits due by then in time order. */
  advanceTo(at: bigint): void {
    for (;;) {
      const next = this.earliest();
      if (!next || next.at > at) break;
      if (next.at > this.t) this.t = next.at;
      this.remove(next);
      next.prepare?.();
      next.end();
    }
    if (at > this.t) this.t = at;
  }

  wait(at: bigint, prepare?: () => void): Wait {
    let end!: () => void;
    const done = new Promise<void>((resolve) => {
      let finished = false;
      end = () => {
        if (finished) return;
        finished = true;
        this.remove(entry);
        resolve();
      };
    });
    const entry = { at, end, prepare };
    this.waits.push(entry);
    return { done, end };
  }

  turn(): Promise<void> {
    this.turns++;
    return new Promise<void>((resolve) => setImmediate(() => { this.turns--; resolve(); }));
  }

  /**
   * Runs the host until `until` settles: event-loop turns while any loop is
   * working; when all are parked, time jumps to the earliest wait. Throws
   * if everything is parked with nothing to wait for (a deadlock), or after
   * `maxJumps` jumps (a test that never ends).
   */
  async settle<T>(until: Promise<T>, maxJumps = 1_000_000): Promise<T> {
    let settled = false;
    let value: T | undefined;
    let error: unknown;
    until.then((v) => { settled = true; value = v; }, (e) => { settled = true; error = e ?? new Error('rejected'); });
    for (let jumps = 0; ; ) {
      await new Promise<void>((resolve) => setImmediate(resolve));
      if (settled) {
        if (error !== undefined) throw error;
        return value as T;
      }
      if (this.turns > 0) continue;
      // Parked: let pending microtasks and immediates run once more before deciding.
      await new Promise<void>((resolve) => setImmediate(resolve));
      if (this.turns > 0 || settled) continue;
      const next = this.earliest();
      if (!next) throw new Error('VirtualClock.settle: every loop waits and nothing is due (deadlock)');
      if (++jumps > maxJumps) throw new Error(`VirtualClock.settle: more than ${maxJumps} jumps`);
      this.advanceTo(next.at);
    }
  }

  private earliest() {
    let first: (typeof this.waits)[number] | undefined;
    for (const w of this.waits) if (!first || w.at < first.at) first = w;
    return first;
  }

  private remove(w: (typeof this.waits)[number]): void {
    const i = this.waits.indexOf(w);
    if (i >= 0) this.waits.splice(i, 1);
  }
}
