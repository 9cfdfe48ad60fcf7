// fv-trap's PC devices, on a clock the test moves: the PIC's one request
// per line (a tick that finds the last still pending is lost), its mask
// and EOI, the PIT's counter 0 period, the serial port and the ways off.

import { describe, expect, it } from 'vitest';
import { PcPlatform } from '../../../src/hv/fv/pc.js';

/** A PC on clock `t` (ns), programmed as the guest kit's plain kernel programs it: IRQ 0 at vector 32, a 1 ms tick. */
function pc(): { p: PcPlatform; t: { now: bigint }; out: number[] } {
  const t = { now: 0n };
  const out: number[] = [];
  const p = new PcPlatform(() => t.now, (b) => out.push(b));
  for (const [port, v] of [[0x20, 0x11], [0xa0, 0x11], [0x21, 0x20], [0xa1, 0x28], [0x21, 0x04], [0xa1, 0x02], [0x21, 0x01], [0xa1, 0x01], [0x21, 0xfe], [0xa1, 0xff]] as const) p.write(port, 1, v);
  p.write(0x43, 1, 0x34);
  p.write(0x40, 1, 1193 & 0xff);
  p.write(0x40, 1, 1193 >> 8);
  return { p, t, out };
}

const PERIOD = (1193n * 1_000_000_000n) / 1_193_182n;

describe('fv-trap PC: PIC and PIT', () => {
  it('raises IRQ 0 once a period has passed, at the vector ICW2 set, and not before', () => {
    const { p, t } = pc();
    expect(p.nextTick).toBe(PERIOD);
    t.now = PERIOD - 1n;
    p.poll(t.now);
    expect(p.interruptPending).toBe(false);
    t.now = PERIOD;
    p.poll(t.now);
    expect(p.acknowledge()).toBe(32);
    expect(p.nextTick).toBe(2n * PERIOD);
  });

  it('holds the next tick until EOI, and loses the ticks that find one pending', () => {
    const { p, t } = pc();
    t.now = PERIOD;
    p.poll(t.now);
    expect(p.acknowledge()).toBe(32);
    t.now = 2n * PERIOD;
    p.poll(t.now);
    expect(p.interruptPending).toBe(false); // in service: no EOI yet
    t.now = 5n * PERIOD;
    p.poll(t.now);
    expect(p.ticksLost).toBe(3); // periods 3, 4, 5 found period 2's request pending
    p.write(0x20, 1, 0x20); // EOI
    expect(p.acknowledge()).toBe(32);
    expect(p.acknowledge()).toBeUndefined();
    expect(p.ticksRaised).toBe(5);
  });

  it('does not deliver a masked line, nor count its ticks lost', () => {
    const { p, t } = pc();
    p.write(0x21, 1, 0xff);
    t.now = 10n * PERIOD;
    p.poll(t.now);
    expect(p.interruptPending).toBe(false);
    expect(p.ticksLost).toBe(0);
    p.write(0x21, 1, 0xfe);
    expect(p.acknowledge()).toBe(32);
  });

  it('stops the counter at a control word until its count comes', () => {
    const { p } = pc();
    p.write(0x43, 1, 0x34);
    expect(p.nextTick).toBeUndefined();
  });
});

describe('fv-trap PC: serial port and power', () => {
  it('sends transmit-register bytes to the console, not divisor-latch ones, and always reads the transmitter empty', () => {
    const { p, out } = pc();
    p.write(0x3fb, 1, 0x80);
    p.write(0x3f8, 1, 0x01); // divisor
    p.write(0x3fb, 1, 0x03);
    p.write(0x3f8, 1, 0x41);
    expect(out).toEqual([0x41]);
    expect(p.read(0x3fd, 1) & 0x20).toBe(0x20);
  });

  it('powers off, crashes or resets at the ports a PC and QEMU answer', () => {
    const off = pc().p;
    off.write(0xf4, 1, 0x10);
    expect(off.power).toEqual({ kind: 'poweroff' });
    const crash = pc().p;
    crash.write(0xf4, 1, 0x11);
    expect(crash.power).toMatchObject({ kind: 'crash', reason: expect.stringContaining('0x11') });
    const acpi = pc().p;
    acpi.write(0x604, 2, 0x2000);
    expect(acpi.power).toEqual({ kind: 'poweroff' });
    const reset = pc().p;
    reset.write(0x64, 1, 0xfe);
    expect(reset.power).toEqual({ kind: 'reboot' });
  });

  it('answers other ports as absent hardware, and keeps PIT counter 2 for calibration', () => {
    const { p } = pc();
    expect(p.read(0x80, 1)).toBe(0xff);
    p.write(0x61, 1, 1); // gate on
    expect(p.read(0x61, 1) & 1).toBe(1);
  });
});
