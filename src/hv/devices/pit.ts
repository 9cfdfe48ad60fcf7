// The i8254 programmable interval timer's counter 2 and its control port,
// as Xen gives every PV domain (ports 0x42 and 0x43, with the gate on bit
// 0 of port 0x61). Linux calibrates its CPU clock against it at boot
// (quick_pit_calibrate, pit_calibrate_tsc): against ports that answer all
// ones, its loops run to their iteration limits, 100k reads where each
// read is an exit; against a counter that counts, they end in the tens of
// milliseconds of PIT time they are written for. Counters 0 and 1 are not
// a PV domain's (their ports answer as absent hardware).
//
// The counter is computed from the domain's clock at each read (1193182
// ticks per second from the last load), as Xen's model does: modes 0-5,
// binary counting (a BCD count is counted in binary, as Xen), LSB, MSB and
// word access, the counter-latch and read-back commands, the status byte
// (null count while a control word waits for its count).
// The gate restarts modes 1, 2, 3 and 5 on a rising edge and does not
// pause counting while low (as Xen's model). Inputs: the guest's port
// writes (hostile, any byte value).

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
  /** Clock time of the last load (or gate restart), ns. */
  loadedAt = 0n;
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
}

export class Pit2 {
  private readonly c = new Counter();
  private gate = false;

  /** `now`: the domain's clock, ns. */
  constructor(private readonly now: () => bigint) {
    this.c.loadedAt = now();
  }

  /** PIT ticks since the counter was loaded. */
  private ticks(): bigint {
    const d = this.now() - this.c.loadedAt;
    return d <= 0n ? 0n : (d * PIT_HZ) / NS_PER_S;
  }

  /** The counter's current value (what a live read or a latch sees), 0-0xffff. */
  private current(): number {
    const c = this.c;
    if (!c.loaded) return c.count & 0xffff;
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

  /** Port 0x61 bit 0: counter 2's gate. A rising edge restarts the count in modes 1, 2, 3 and 5. */
  setGate(on: boolean): void {
    if (on && !this.gate && [1, 2, 3, 5].includes(this.c.mode)) this.c.loadedAt = this.now();
    this.gate = on;
  }

  get gateOn(): boolean {
    return this.gate;
  }

  private load(count: number): void {
    const c = this.c;
    c.count = count === 0 ? 0x10000 : count;
    c.loadedAt = this.now();
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
