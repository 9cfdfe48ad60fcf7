// What every engine must do with the probe guests (native/guests/*.S),
// whatever runs them: the cases the KVM engine's and the software engine's
// tests share. Call inside a describe block; `boot` boots a probe guest on
// that block's engine (and destroys it afterwards).

import { expect, it } from 'vitest';
import type { Exit } from '../../src/engine/types.js';
import { ioValue, LAYOUT, PORT, runToExit, SLOT, type TestGuest } from '../../src/engine/probe-guest.js';

export function probeGuestCases(boot: (name: string) => TestGuest): void {
  it('reports port I/O with its data, and delivers data for an in', () => {
    const g = boot('pio');
    const out = runToExit(g.vcpu);
    expect(out).toMatchObject({ kind: 'io', direction: 'out', port: PORT.A, size: 4, count: 1 });
    expect(ioValue(out)).toBe(0xabcd1234);
    const input = runToExit(g.vcpu);
    expect(input).toMatchObject({ kind: 'io', direction: 'in', port: PORT.B, size: 1 });
    (input as Extract<Exit, { kind: 'io' }>).data[0] = 0x5a;
    const echo = runToExit(g.vcpu);
    expect(echo).toMatchObject({ kind: 'io', direction: 'out', port: PORT.C, size: 2 });
    expect(ioValue(echo)).toBe(0x15a);
    expect(runToExit(g.vcpu)).toMatchObject({ kind: 'io', port: PORT.DONE });
  });

  it('reports MMIO writes and reads where no memory is, and writes to read-only memory', () => {
    const g = boot('mmio');
    new DataView(g.ro.buffer, g.ro.byteOffset).setUint32(0x10, 0xcafef00d, true);
    const w = runToExit(g.vcpu);
    expect(w).toMatchObject({ kind: 'mmio', address: LAYOUT.MMIO, isWrite: true });
    expect(Buffer.from((w as Extract<Exit, { kind: 'mmio' }>).data).readUInt32LE()).toBe(0xdeadbeef);
    const r = runToExit(g.vcpu);
    expect(r).toMatchObject({ kind: 'mmio', address: LAYOUT.MMIO + 8, isWrite: false });
    const rd = (r as Extract<Exit, { kind: 'mmio' }>).data;
    expect(rd.length).toBe(8);
    rd.set([0x08, 0x07, 0x06, 0x05, 0x04, 0x03, 0x02, 0x01]);
    expect(ioValue(runToExit(g.vcpu))).toBe(0x05060708);
    // A write to the read-only slot exits with the data and leaves memory alone.
    const ro = runToExit(g.vcpu);
    expect(ro).toMatchObject({ kind: 'mmio', address: LAYOUT.RO + 0x10, isWrite: true });
    expect(Buffer.from((ro as Extract<Exit, { kind: 'mmio' }>).data).readUInt32LE()).toBe(0x11223344);
    expect(ioValue(runToExit(g.vcpu))).toBe(0xcafef00d);
    expect(new DataView(g.ro.buffer, g.ro.byteOffset).getUint32(0x10, true)).toBe(0xcafef00d);
  });

  it('reads and writes registers in place: results after an exit, writes at the next entry', () => {
    const g = boot('regs');
    g.vcpu.regs.rax = 40n;
    g.vcpu.regs.rbx = 2n;
    g.vcpu.regs.rcx = 0x0f0fn;
    expect(runToExit(g.vcpu)).toMatchObject({ kind: 'io', port: PORT.A });
    expect(g.vcpu.regs.rax).toBe(42n);
    expect(g.vcpu.regs.rcx).toBe(0xfffffffffffff0f0n);
    const rip = g.vcpu.regs.rip;
    expect(rip).toBeGreaterThan(BigInt(LAYOUT.CODE));
    g.vcpu.regs.rax = 1n;
    g.vcpu.regs.rbx = 1n;
    runToExit(g.vcpu);
    expect(g.vcpu.regs.rax).toBe(2n);
    expect(g.vcpu.regs.rip).toBe(rip);
  });

  it('logs exactly the pages the guest wrote, and clears the log on read', () => {
    const g = boot('dirty');
    g.dirty.fill(7, 100 * 4096, 101 * 4096); // host writes are not logged
    expect(g.vm.dirtyPages(SLOT.DIRTY)).toEqual([]);
    expect(runToExit(g.vcpu)).toMatchObject({ kind: 'io', port: PORT.A });
    expect(g.vm.dirtyPages(SLOT.DIRTY)).toEqual([0, 3, 17, 511]);
    expect(runToExit(g.vcpu)).toMatchObject({ kind: 'io', port: PORT.DONE });
    expect(g.vm.dirtyPages(SLOT.DIRTY)).toEqual([5]);
    expect(g.vm.dirtyPages(SLOT.DIRTY)).toEqual([]);
  });

  it('delivers a guest exception to the IDT: the test harness sees #UD', () => {
    const g = boot('fault');
    expect(() => runToExit(g.vcpu)).toThrow('guest exception, vector 6');
  });
}
