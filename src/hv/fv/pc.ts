// The PC a plain kernel expects, for fv-trap mode: the ports of the
// devices it drives, each access trapped and answered here.
//   - COM1 (0x3f8-0x3ff), a 16550 as a polling driver sees it: the
//     transmit register is always empty (LSR 0x60), bytes written go to
//     the console; the divisor latch and other registers are kept;
//   - the two 8259 interrupt controllers (0x20-0x21, 0xa0-0xa1): the
//     ICW1-ICW4 initialisation, the mask, non-specific EOI, and one
//     pending-request bit per line, as the hardware has: a tick that comes
//     while the last is still pending is lost (counted);
//   - the 8254's counter 0 (0x40, control at 0x43), in the periodic modes
//     2 and 3, on IRQ 0; counter 2, the gate and speaker port 0x61 and the
//     other absent-hardware answers are the PV domains' (LegacyPorts);
//   - the ways a PC is switched off: QEMU's isa-debug-exit at 0xf4 (the
//     kit writes 0x10 for a poweroff, 0x11 for a crash), ACPI S5 at 0x604
//     and 0xb004, and the keyboard controller's reset (0xfe to 0x64).
// Time is the domain's clock (ns), given. Inputs: the guest's port
// accesses (hostile, any value).

import { LegacyPorts } from '../devices/legacy-ports.js';
import { PIT_HZ } from '../devices/pit.js';

const NS_PER_S = 1_000_000_000n;
const COM1 = 0x3f8;

export type PowerEvent = { kind: 'poweroff' } | { kind: 'crash'; reason: string } | { kind: 'reboot' };

/** One 8259. */
class Pic {
  imr = 0xff;
  irr = 0;
  isr = 0;
  base = 0;
  /** Which initialisation word comes next (0: none; 2, 3, 4). */
  private icw = 0;
  private needIcw4 = false;
  private readIsr = false;

  command(v: number): void {
    if (v & 0x10) {
      // ICW1: starts initialisation; the mask and requests are cleared.
      this.icw = 2;
      this.needIcw4 = (v & 1) !== 0;
      this.imr = 0;
      this.irr = this.isr = 0;
      return;
    }
    if ((v & 0x18) === 0x08) {
      // OCW3: which register a read of the command port returns.
      if (v & 2) this.readIsr = (v & 1) !== 0;
      return;
    }
    // OCW2: a non-specific EOI (0x20) ends the highest-priority request in service; a specific one (0x60 | n) ends n.
    if ((v & 0xe0) === 0x20 && this.isr) this.isr &= this.isr - 1;
    else if ((v & 0xe0) === 0x60) this.isr &= ~(1 << (v & 7));
  }

  data(v: number): void {
    switch (this.icw) {
      case 2:
        this.base = v & 0xf8;
        this.icw = 3;
        return;
      case 3:
        this.icw = this.needIcw4 ? 4 : 0;
        return;
      case 4:
        this.icw = 0;
        return;
      default:
        this.imr = v;
    }
  }

  readCommand(): number {
    return this.readIsr ? this.isr : this.irr;
  }

  /** The line to deliver, if one is requested, unmasked, and above any in service. */
  pending(): number | undefined {
    const want = this.irr & ~this.imr;
    if (!want) return undefined;
    const line = 31 - Math.clz32(want & -want);
    if (this.isr && (this.isr & -this.isr) <= 1 << line) return undefined;
    return line;
  }
}

/** Counter 0 of the 8254 in a periodic mode: when its next tick is due. */
class Counter0 {
  private count = 0x10000;
  private low: number | undefined;
  private access = 3;
  /** The period, ns; undefined until a count is loaded. */
  period: bigint | undefined;
  next: bigint | undefined;

  control(v: number): void {
    this.access = (v >> 4) & 3;
    this.low = undefined;
    this.period = this.next = undefined; // a control word stops the counter until its count
  }

  write(v: number, now: bigint): void {
    if (this.access === 3 && this.low === undefined) {
      this.low = v;
      return;
    }
    const c = this.access === 1 ? v : this.access === 2 ? v << 8 : (this.low ?? 0) | (v << 8);
    this.low = undefined;
    this.count = c === 0 ? 0x10000 : c;
    this.period = (BigInt(this.count) * NS_PER_S) / PIT_HZ;
    if (this.period < 1000n) this.period = 1000n; // at most a megahertz of ticks
    this.next = now + this.period;
  }
}

export class PcPlatform {
  private readonly legacy: LegacyPorts;
  private readonly master = new Pic();
  private readonly slave = new Pic();
  private readonly pit0 = new Counter0();
  private lcr = 0;
  private readonly uart = new Uint8Array(8);
  /** Timer ticks that found the last still pending (a real PIC merges them). */
  ticksLost = 0;
  ticksRaised = 0;
  power: PowerEvent | undefined;

  constructor(private readonly now: () => bigint, private readonly console: (byte: number) => void) {
    this.legacy = new LegacyPorts(now);
  }

  /** Every port access the guest made (`--stats`). */
  readonly portCounts = { reads: 0, writes: 0 };

  /** When the next timer tick is due (ns), if the timer runs. */
  get nextTick(): bigint | undefined {
    return this.pit0.next;
  }

  /** Raises IRQ 0 for the ticks due by `now`: one request, however many periods passed (the rest are lost). */
  poll(now: bigint): void {
    const p = this.pit0.period, next = this.pit0.next;
    if (p === undefined || next === undefined || now < next) return;
    const periods = (now - next) / p + 1n;
    this.pit0.next = next + periods * p;
    this.ticksRaised += Number(periods);
    // Lost: periods merged into one request, counted while the line is unmasked (a masked timer is not listened to).
    const already = (this.master.irr & 1) !== 0;
    if (!(this.master.imr & 1)) this.ticksLost += Number(periods) - (already ? 0 : 1);
    this.master.irr |= 1;
  }

  /** The vector of the interrupt to deliver now, taken (acknowledged), if any. */
  acknowledge(): number | undefined {
    const line = this.master.pending();
    if (line === undefined) return undefined;
    this.master.irr &= ~(1 << line);
    this.master.isr |= 1 << line;
    return this.master.base + line;
  }

  /** Whether an interrupt waits for the guest to take it. */
  get interruptPending(): boolean {
    return this.master.pending() !== undefined;
  }

  /** The vector the next acknowledge() would give, if any (for the CPU's priority check). */
  get pendingVector(): number | undefined {
    const line = this.master.pending();
    return line === undefined ? undefined : this.master.base + line;
  }

  read(port: number, bytes: 1 | 2 | 4): number {
    this.portCounts.reads++;
    let v = 0;
    for (let i = 0; i < bytes; i++) v |= this.readByte((port + i) & 0xffff) << (8 * i);
    return v >>> 0;
  }

  write(port: number, bytes: 1 | 2 | 4, value: number): void {
    this.portCounts.writes++;
    if ((port === 0x604 || port === 0xb004) && bytes === 2 && (value & 0x2000)) {
      this.power ??= { kind: 'poweroff' };
      return;
    }
    for (let i = 0; i < bytes; i++) this.writeByte((port + i) & 0xffff, (value >>> (8 * i)) & 0xff);
  }

  private readByte(port: number): number {
    if (port >= COM1 && port < COM1 + 8) {
      const reg = port - COM1;
      if (reg === 5) return 0x60; // LSR: transmitter empty
      if (reg === 3) return this.lcr;
      return this.uart[reg]!;
    }
    switch (port) {
      case 0x20: return this.master.readCommand();
      case 0x21: return this.master.imr;
      case 0xa0: return this.slave.readCommand();
      case 0xa1: return this.slave.imr;
      case 0x40: return 0; // counter 0 is not read back by the kit
      default: return this.legacy.read(port, 1);
    }
  }

  private writeByte(port: number, v: number): void {
    if (port >= COM1 && port < COM1 + 8) {
      const reg = port - COM1;
      if (reg === 3) this.lcr = v;
      else if (reg === 0 && !(this.lcr & 0x80)) this.console(v);
      else this.uart[reg] = v;
      return;
    }
    switch (port) {
      case 0x20: return this.master.command(v);
      case 0x21: return this.master.data(v);
      case 0xa0: return this.slave.command(v);
      case 0xa1: return this.slave.data(v);
      case 0x40: return this.pit0.write(v, this.now());
      case 0x43:
        if ((v >> 6) === 0) return this.pit0.control(v);
        return this.legacy.write(port, 1, v);
      case 0xf4:
        this.power ??= v === 0x10 ? { kind: 'poweroff' } : { kind: 'crash', reason: `the kernel reported a crash (debug-exit port 0xf4, value 0x${v.toString(16)})` };
        return;
      case 0x64:
        if (v === 0xfe) this.power ??= { kind: 'reboot' };
        return;
      default:
        return this.legacy.write(port, 1, v);
    }
  }
}
