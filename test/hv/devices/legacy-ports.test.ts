// The I/O ports a PV domain reaches, on a clock the test moves: the PIT's
// counter 2 as Linux's boot calibration drives it (quick_pit_calibrate's
// MSB steps, pit_calibrate_tsc's terminal count on port 0x61), the
// counter-latch and read-back commands, the modes that repeat, the gate;
// and the other ports as Xen answers a domU without physical ports.

import { describe, expect, it } from 'vitest';
import { LegacyPorts } from '../../../src/hv/devices/legacy-ports.js';
import { PIT_HZ } from '../../../src/hv/devices/pit.js';

/** Ports on a clock at `t` ns, and a way to move it by PIT ticks. */
function ports() {
  let t = 5_000_000_000n;
  const p = new LegacyPorts(() => t);
  // The time of `n` ticks, rounded up so that exactly n have passed.
  const ticks = (n: number) => { t += (BigInt(n) * 1_000_000_000n + PIT_HZ - 1n) / PIT_HZ; };
  const ns = (n: bigint) => { t += n; };
  return { p, ticks, ns, in8: (port: number) => p.read(port, 1), out8: (port: number, v: number) => p.write(port, 1, v) };
}

describe('PIT counter 2 (ports 0x42, 0x43, gate on 0x61)', () => {
  it('counts down from 0xffff as quick_pit_calibrate reads it: one MSB step per 256 ticks', () => {
    const { in8, out8, ticks } = ports();
    out8(0x61, (in8(0x61) & ~0x02) | 0x01); // gate on, speaker off
    out8(0x43, 0xb0); // counter 2, LSB then MSB, mode 0, binary
    out8(0x42, 0xff);
    out8(0x42, 0xff);
    const msb = () => { in8(0x42); return in8(0x42); }; // pit_verify_msb: LSB, then MSB
    expect(msb()).toBe(0xff);
    ticks(255);
    expect(msb()).toBe(0xff);
    ticks(1);
    expect(msb()).toBe(0xfe);
    ticks(256 * 10);
    expect(msb()).toBe(0xf4);
    expect(in8(0x61) & 0x01).toBe(1); // the gate reads back
  });

  it('raises OUT (port 0x61 bit 5) at terminal count in mode 0, as pit_calibrate_tsc waits for', () => {
    const { in8, out8, ticks } = ports();
    const latch = Number(PIT_HZ / 100n); // 10 ms
    out8(0x61, 0x01);
    out8(0x43, 0xb0);
    out8(0x42, latch & 0xff);
    out8(0x42, latch >> 8);
    expect(in8(0x61) & 0x20).toBe(0);
    ticks(latch - 1);
    expect(in8(0x61) & 0x20).toBe(0);
    ticks(1);
    expect(in8(0x61) & 0x20).toBe(0x20);
    // A new count starts it over: OUT low again.
    out8(0x43, 0xb0);
    expect(in8(0x61) & 0x20).toBe(0);
  });

  it('holds a latched count while time passes, then reads live again', () => {
    const { in8, out8, ticks } = ports();
    out8(0x61, 0x01);
    out8(0x43, 0xb4); // mode 2, word
    out8(0x42, 0x00);
    out8(0x42, 0x10); // 0x1000
    ticks(0x10);
    out8(0x43, 0x80); // counter-latch command for counter 2
    ticks(0x100);
    out8(0x43, 0x80); // a second latch before the first is read changes nothing
    expect(in8(0x42) | (in8(0x42) << 8)).toBe(0x1000 - 0x10);
    expect(in8(0x42) | (in8(0x42) << 8)).toBe(0x1000 - 0x110);
  });

  it('reports the status byte by read-back: OUT, null count until the count is written, access, mode', () => {
    const { in8, out8 } = ports();
    out8(0x43, 0x96); // counter 2, LSB only, mode 3
    out8(0x43, 0xe8); // read-back: status only, counter 2
    expect(in8(0x42)).toBe(0x80 | 0x40 | (1 << 4) | (3 << 1)); // OUT high (mode 3), null count
    out8(0x42, 0x40);
    out8(0x43, 0xc8); // read-back: count and status
    expect(in8(0x42)).toBe(0x80 | (1 << 4) | (3 << 1)); // status first
    expect(in8(0x42)).toBe(0x40); // then the count (LSB access)
  });

  it('repeats in modes 2 and 3, and restarts them on the gate\'s rising edge', () => {
    const { in8, out8, ticks } = ports();
    const read = () => in8(0x42) | (in8(0x42) << 8);
    out8(0x61, 0x01);
    out8(0x43, 0xb4); // mode 2
    out8(0x42, 100);
    out8(0x42, 0);
    ticks(105);
    expect(read()).toBe(95); // round again after 100 ticks
    out8(0x61, 0x00);
    out8(0x61, 0x01); // rising edge: loaded again
    expect(read()).toBe(100);
    out8(0x43, 0xb6); // mode 3: square wave, counts by two, OUT high for the first half
    out8(0x42, 100);
    out8(0x42, 0);
    ticks(10);
    expect(read()).toBe(80);
    expect(in8(0x61) & 0x20).toBe(0x20);
    ticks(45);
    expect(in8(0x61) & 0x20).toBe(0);
    ticks(50);
    expect(in8(0x61) & 0x20).toBe(0x20);
  });

  it('stops counting in mode 0 while the gate is low, and holds OUT high in mode 2', () => {
    const { in8, out8, ticks } = ports();
    const read = () => in8(0x42) | (in8(0x42) << 8);
    out8(0x43, 0xb0); // mode 0, gate low from reset: loaded, not counting
    out8(0x42, 0x00);
    out8(0x42, 0x10);
    ticks(0x100);
    expect(read()).toBe(0x1000);
    out8(0x61, 0x01);
    ticks(0x10);
    out8(0x61, 0x00); // counting stops here ...
    ticks(0x100);
    expect(read()).toBe(0x1000 - 0x10);
    out8(0x61, 0x01); // ... and goes on from where it was
    ticks(0x10);
    expect(read()).toBe(0x1000 - 0x20);
    out8(0x43, 0xb4); // mode 2, count 4: OUT low one tick in four while the gate is high
    out8(0x42, 4);
    out8(0x42, 0);
    const outs = () => Array.from({ length: 8 }, () => { const o = (in8(0x61) >> 5) & 1; ticks(1); return o; }).join('');
    expect(outs()).toBe('11101110');
    out8(0x61, 0x00);
    expect(outs()).toBe('11111111');
  });

  it('starts the one-shot of mode 1 at the gate\'s rising edge, OUT low until terminal count', () => {
    const { in8, out8, ticks } = ports();
    const out = () => (in8(0x61) >> 5) & 1;
    out8(0x43, 0xb2); // mode 1
    out8(0x42, 10);
    out8(0x42, 0);
    ticks(50);
    expect(out()).toBe(1); // waiting for its trigger
    out8(0x61, 0x01);
    ticks(9);
    expect(out()).toBe(0);
    ticks(1);
    expect(out()).toBe(1);
  });

  it('treats a count of 0 as 0x10000, and MSB-only access as the high byte', () => {
    const { in8, out8, ticks } = ports();
    out8(0x61, 0x01);
    out8(0x43, 0xb0);
    out8(0x42, 0);
    out8(0x42, 0);
    ticks(1);
    expect(in8(0x42) | (in8(0x42) << 8)).toBe(0xffff);
    out8(0x43, 0xa0); // MSB only, mode 0
    out8(0x42, 0x12);
    expect(in8(0x42)).toBe(0x12);
  });

  it('takes any byte on any port without throwing (the guest\'s writes are hostile)', () => {
    const { p, ticks } = ports();
    for (let v = 0; v < 256; v++) {
      p.write(0x43, 1, v);
      p.write(0x42, 1, v ^ 0x5a);
      p.write(0x61, 1, v);
      ticks(v * 7);
      for (const port of [0x42, 0x43, 0x61]) expect(p.read(port, 1)).toBeLessThanOrEqual(0xff);
    }
    expect(p.counts.writes).toBe(3 * 256);
  });
});

describe('the other ports, as Xen answers a domU without physical ports', () => {
  it('reads back the RTC index, all ones for RTC data, counters 0 and 1 and anything unknown', () => {
    const { in8, out8 } = ports();
    out8(0x70, 0x8a);
    expect(in8(0x70)).toBe(0x0a); // the index, without the NMI-mask bit
    expect(in8(0x71)).toBe(0xff);
    for (const port of [0x40, 0x41, 0x20, 0x21, 0x60, 0x64, 0x3f8, 0x3fd, 0x80]) expect(in8(port)).toBe(0xff);
  });

  it('keeps a 32-bit CONFIG_ADDRESS and answers CONFIG_DATA with all ones (no PCI devices)', () => {
    const { p } = ports();
    expect(p.read(0xcf8, 4)).toBe(0);
    p.write(0xcf8, 4, 0x8000_0000);
    expect(p.read(0xcf8, 4)).toBe(0x8000_0000);
    expect(p.read(0xcfc, 4)).toBe(0xffff_ffff);
    expect(p.read(0xcfe, 2)).toBe(0xffff);
    expect(p.read(0xcf8, 1)).toBe(0xff); // only a 32-bit access is CONFIG_ADDRESS
  });

  it('makes a wide access of byte accesses to consecutive ports', () => {
    const { p } = ports();
    p.write(0x70, 2, 0x3412); // 0x12 to 0x70, 0x34 to 0x71 (dropped)
    expect(p.read(0x70, 1)).toBe(0x12);
    expect(p.read(0x70, 2)).toBe(0xff12); // 0x70, then 0x71
    expect(p.read(0x42, 2) >> 8).toBe(0); // 0x42, then 0x43 (write-only: 0)
    expect(p.read(0xfffe, 4)).toBe(0xffff_ffff); // wraps at the top of the port space
  });
});
