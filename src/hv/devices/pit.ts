// The i8254 programmable interval timer's counter 2 and its control port
// (ports 0x42 and 0x43, with the gate on bit 0 of port 0x61 and OUT on bit
// 5). Linux calibrates its CPU clock against it at boot, even as a PV
// guest (quick_pit_calibrate, pit_calibrate_tsc). Xen emulates this
// counter for its hardware domain (and, before Xen 4.7, for every PV
// domain); a domU of today's Xen reads all ones there, and Linux's loops
// then run to their iteration limits, about 100k port reads: cheap on Xen,
// seconds here, where each read is an exit. So paravane gives every domain
// the counter, and those loops end after the tens of milliseconds of PIT
// time they are written for. Counters 0 and 1 are not modelled (their
// ports answer as absent hardware).
//
// Computed from the domain's clock at each read, 1193182 ticks per second,
// as the 8254 data sheet describes it: modes 0-5; LSB, MSB and word
// access; the counter-latch and read-back commands; the status byte (null
// count while a control word waits for its count); the gate: low, it
// stops counting in modes 0, 2, 3 and 4 (and holds OUT high in 2 and 3),
// and a rising edge restarts modes 2 and 3 and starts (or restarts) the
// one-shots of modes 1 and 5, which wait for it after a load. A BCD count is counted
// in binary (as Xen's model does). Inputs: the guest's port writes
// (hostile, any byte value).

/** The PIT's input clock, Hz. */
export const PIT_HZ = 1_193_182n;
const NS_PER_S = 1_000_000_000n;

/** How a counter is read and written (the control word's RW field). */
const enum Access { Latch = 0, Lsb = 1, Msb = 2, Word = 3 }

/** Counter 2's state. */
class Counter {
  mode = 0;
  access = Access.Word;
  bcd = false;
  /** The count loaded (1-0x10000; 0 written means 0x10000). */
  count = 0x10000;
  /** Ticks counted up to `since` (modes 0, 2, 3, 4 stop while the gate is low). */
  counted = 0n;
  /** Clock time from which ticks are being counted, ns; undefined while the gate holds counting. */
  since: bigint | undefined = 0n;
  /** A word write has its LSB and waits for the MSB. */
  lsbWritten: number | undefined;
  /** In word access, whether the next live read is the MSB. */
  readMsbNext = false;
  /** A latched count and how many of its bytes remain to read (the word's LSB first). */
  latched: { value: number; access: Access; msbNext: boolean } | undefined;
  /** A latched status byte (read-back), read before a latched count. */
  status: number | undefined;
  /** A count was written since the control word (until then OUT and the count are as the mode's initial state). */
  loaded = false;
  /** Modes 1 and 5: loaded, and waiting for the gate's rising edge to start (OUT high meanwhile). */
  waiting = false;
}

export class Pit2 {
  private readonly c = new Counter();
  private gate = false;

  /** `now`: the domain's clock, ns. */
  constructor(private readonly now: () => bigint) {
    this.c.since = undefined; // the gate starts low (port 0x61 bit 0 clear)
  }

  /** Whether the gate stops counting in the current mode while low. */
  private gated(): boolean {
    return this.c.mode === 0 || this.c.mode === 2 || this.c.mode === 3 || this.c.mode === 4;
  }

  /** PIT ticks counted since the counter was loaded (or restarted by the gate). */
  private ticks(): bigint {
    const c = this.c;
    if (c.since === undefined) return c.counted;
    const d = this.now() - c.since;
    return c.counted + (d <= 0n ? 0n : (d * PIT_HZ) / NS_PER_S);
  }

  /** The counter's current value (what a live read or a latch sees), 0-0xffff. */
  private current(): number {
    const c = this.c;
    if (!c.loaded || c.waiting) return c.count & 0xffff;
    const d = this.ticks();
    const n = BigInt(c.count);
    switch (c.mode) {
      case 2: return Number(n - (d % n)) & 0xffff;
      case 3: return Number(n - ((2n * d) % n)) & 0xfffe;
      default: return Number((n - d) & 0xffffn); // 0, 1, 4, 5: down through 0 and round again
    }
  }

  /** The counter's OUT pin (port 0x61 bit 5, the status byte's bit 7). */
  out(): boolean {
    const c = this.c;
    if (!c.loaded) return c.mode !== 0; // mode 0 sets OUT low at the control word; the others high
    if (c.waiting) return true; // modes 1 and 5 before their trigger
    if (!this.gate && (c.mode === 2 || c.mode === 3)) return true; // a low gate holds OUT high
    const d = this.ticks();
    const n = BigInt(c.count);
    switch (c.mode) {
      case 0: return d >= n; // high at terminal count, until a new count
      case 1: return d >= n; // the one-shot pulse is low while counting
      case 2: return d % n !== n - 1n; // low for the one tick the counter is at 1
      case 3: return d % n < (n + 1n) / 2n; // square wave: high for the first half of each period
      default: return d !== n; // 4, 5: one low tick at terminal count
    }
  }

  /** A byte written to port 0x43: a control word, a counter-latch command or a read-back command. */
  writeControl(v: number): void {
    const select = v >> 6;
    const access = ((v >> 4) & 3) as Access;
    if (select === 3) {
      // Read-back: bit 5 clear latches the count, bit 4 clear the status, of the counters in bits 1-3.
      if (!(v & 0x8)) return; // not counter 2
      if (!(v & 0x10)) this.latchStatus();
      if (!(v & 0x20)) this.latchCount();
      return;
    }
    if (select !== 2) return; // counters 0 and 1: not this domain's
    const c = this.c;
    if (access === Access.Latch) {
      this.latchCount();
      return;
    }
    let mode = (v >> 1) & 7;
    if (mode > 5) mode -= 4; // 6 and 7 are 2 and 3
    c.mode = mode;
    c.access = access;
    c.bcd = (v & 1) !== 0;
    c.lsbWritten = undefined;
    c.readMsbNext = false;
    c.latched = undefined;
    c.status = undefined;
    c.loaded = false;
    c.waiting = false;
  }

  /** A byte written to port 0x42: the count, in the access mode the control word chose. */
  writeCount(v: number): void {
    const c = this.c;
    v &= 0xff;
    switch (c.access) {
      case Access.Lsb: return this.load(v);
      case Access.Msb: return this.load(v << 8);
      default:
        if (c.lsbWritten === undefined) {
          c.lsbWritten = v;
          return;
        }
        this.load(c.lsbWritten | (v << 8));
        c.lsbWritten = undefined;
    }
  }

  /** A byte read from port 0x42: a latched status, a latched count, or the live count. */
  readCount(): number {
    const c = this.c;
    if (c.status !== undefined) {
      const s = c.status;
      c.status = undefined;
      return s;
    }
    const l = c.latched;
    if (l) {
      if (l.access === Access.Msb || (l.access === Access.Word && l.msbNext)) {
        c.latched = undefined;
        return (l.value >> 8) & 0xff;
      }
      if (l.access === Access.Word) l.msbNext = true;
      else c.latched = undefined;
      return l.value & 0xff;
    }
    const n = this.current();
    switch (c.access) {
      case Access.Msb: return (n >> 8) & 0xff;
      case Access.Lsb: return n & 0xff;
      default: {
        const msb = c.readMsbNext;
        c.readMsbNext = !msb;
        return msb ? (n >> 8) & 0xff : n & 0xff;
      }
    }
  }

  /**
   * Port 0x61 bit 0: counter 2's gate. Low stops counting in modes 0, 2, 3
   * and 4; a rising edge restarts the count in modes 1, 2, 3 and 5, and
   * lets modes 0 and 4 count on.
   */
  setGate(on: boolean): void {
    if (on === this.gate) return;
    const c = this.c;
    if (!on) {
      if (this.gated()) {
        c.counted = this.ticks();
        c.since = undefined;
      }
    } else if (c.mode === 0 || c.mode === 4) {
      c.since = this.now();
    } else {
      c.counted = 0n;
      c.since = this.now();
      c.waiting = false; // modes 1 and 5 start; 2 and 3 start over
    }
    this.gate = on;
  }

  get gateOn(): boolean {
    return this.gate;
  }

  private load(count: number): void {
    const c = this.c;
    c.count = count === 0 ? 0x10000 : count;
    c.counted = 0n;
    // Modes 0, 2, 3, 4 count from now while the gate is high; 1 and 5 wait for its rising edge.
    c.waiting = !this.gated();
    c.since = this.gate && this.gated() ? this.now() : undefined;
    c.loaded = true;
  }

  private latchCount(): void {
    const c = this.c;
    if (!c.latched) c.latched = { value: this.current(), access: c.access === Access.Latch ? Access.Word : c.access, msbNext: false };
  }

  private latchStatus(): void {
    const c = this.c;
    if (c.status !== undefined) return;
    c.status = (this.out() ? 0x80 : 0) | (c.loaded ? 0 : 0x40) | (c.access << 4) | (c.mode << 1) | (c.bcd ? 1 : 0);
  }
}
