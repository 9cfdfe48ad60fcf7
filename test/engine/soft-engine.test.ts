// The software engine runs the same probe guests the KVM engine is tested
// with (native/guests/*.S: long mode at CPL 3, a TSS I/O bitmap, ring-0
// stubs behind an IDT) and reports the same exits: port I/O with its data,
// MMIO, deadlines and kicks, dirty pages, host page-table changes once
// translations are dropped. It needs nothing from the host, so it runs
// everywhere.

import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { SoftEngine, SOFT_TSC_KHZ } from '../../src/engine/soft/soft-engine.js';
import { EngineUsageError } from '../../src/engine/errors.js';
import { selectEngine, resolveEngine } from '../../src/engine/select.js';
import type { Exit } from '../../src/engine/types.js';
import { bootTestGuest, ioValue, LAYOUT, runToExit, type TestGuest } from '../../src/engine/probe-guest.js';
import { probeGuestCases } from '../support/engine-cases.js';
import { syscallStaysAtCpl3, probeTransports } from '../../src/engine/host-probe.js';

describe('software engine', () => {
  let engine: SoftEngine;
  const guests: TestGuest[] = [];
  const boot = (name: string) => { const g = bootTestGuest(engine, name); guests.push(g); return g; };

  beforeAll(() => { engine = new SoftEngine(); });
  afterAll(() => { for (const g of guests) g.destroy(); engine?.close(); });

  probeGuestCases(boot);

  it('runs the guest at CPL 3 in 64-bit mode, and counts what it retires', () => {
    const g = boot('pio');
    const before = engine.retired;
    runToExit(g.vcpu);
    const s = g.vcpu.getSpecialRegisters();
    expect(s.cs.dpl).toBe(3);
    expect(s.cs.l).toBe(true);
    expect(engine.retired).toBeGreaterThan(before);
  });

  it('sees page-table entries the host changed once cached translations are dropped, or the old frame forgotten', () => {
    const g = boot('tlbprobe');
    const view = new DataView(g.main.buffer, g.main.byteOffset);
    view.setUint32(0x100000, 0xaaaa, true);
    view.setUint32(0x101000, 0xbbbb, true);
    view.setUint32(0x102000, 0xcccc, true);
    expect(ioValue(runToExit(g.vcpu))).toBe(0xaaaa);
    view.setBigUint64(LAYOUT.PT + 8 * 0x100, 0x101000n | 7n, true);
    expect(ioValue(runToExit(g.vcpu))).toBe(0xaaaa); // the cached translation is stale, as on hardware
    g.vm.dropCachedTranslations();
    expect(ioValue(runToExit(g.vcpu))).toBe(0xbbbb);
    view.setBigUint64(LAYOUT.PT + 8 * 0x100, 0x102000n | 7n, true);
    g.memory.forgetTranslations(0x101000, 4096);
    expect(ioValue(runToExit(g.vcpu))).toBe(0xcccc);
    expect(view.getUint32(0x100000, true)).toBe(0xaaaa); // contents kept
  });

  it('sets the Accessed and Dirty bits of the entries it uses, as hardware does', () => {
    const g = boot('dirty');
    runToExit(g.vcpu);
    const view = new DataView(g.main.buffer, g.main.byteOffset);
    const pte = (i: number) => view.getBigUint64(LAYOUT.PT_DIRTY + 8 * i, true);
    expect(pte(3) & 0x60n).toBe(0x60n); // written: accessed and dirty
    expect(pte(4) & 0x60n).toBe(0n);    // untouched
  });

  it('stops a spinning guest at its deadline, never early, and a kick before run is not lost', () => {
    const g = boot('spin');
    const deadline = process.hrtime.bigint() + 20_000_000n;
    g.vcpu.setDeadline(deadline);
    const before = g.vcpu.regs.rax;
    expect(g.vcpu.run().kind).toBe('interrupted');
    expect(process.hrtime.bigint()).toBeGreaterThanOrEqual(deadline);
    expect(g.vcpu.regs.rax).toBeGreaterThan(before); // it really ran
    g.vcpu.setDeadline(null);
    g.vcpu.kick();
    expect(g.vcpu.run().kind).toBe('interrupted');
    expect(g.vcpu.canStart).toBe(false);
    expect(() => g.vcpu.start()).toThrow(EngineUsageError);
  });

  it('keeps MSRs, with FS and GS bases in the segment registers, and a TSC in step with the host clock', () => {
    const g = boot('syscall');
    g.vcpu.setMsrs([[0xc0000082, 0x10100n], [0xc0000084, 0x700n], [0xc0000100, 0x1234000n]]);
    expect(g.vcpu.getMsrs([0xc0000082, 0xc0000084])).toEqual([0x10100n, 0x700n]);
    expect(g.vcpu.getSpecialRegisters().fs.base).toBe(0x1234000n);
    expect(g.vcpu.tscKhz()).toBe(SOFT_TSC_KHZ);
    const a = g.vcpu.tscNow();
    expect(a.tsc).toBe(a.hostNs); // a tick is a nanosecond of CLOCK_MONOTONIC
  });

  it('offers the transports the hypervisor uses: the hypercall page, vmcall by #GP, syscall that stays at CPL 3', () => {
    expect(syscallStaysAtCpl3(engine)).toBe(true);
    const t = probeTransports(engine);
    expect(t.every((x) => x.usable), JSON.stringify(t)).toBe(true);
  });

  it('reports an instruction it does not implement as an internal error naming it, and a hlt at CPL 3 as #GP', () => {
    const g = boot('pio');
    // Overwrite the code with an AVX instruction (vzeroupper: c5 f8 77), which this CPU does not know.
    g.main.set([0xc5, 0xf8, 0x77], LAYOUT.CODE);
    g.vcpu.regs.rip = BigInt(LAYOUT.CODE);
    const e = g.vcpu.run();
    expect(e.kind).toBe('internal-error');
    expect((e as Extract<Exit, { kind: 'internal-error' }>).message).toMatch(/does not implement .*bytes c5/);
    expect(g.vcpu.regs.rip).toBe(BigInt(LAYOUT.CODE)); // nothing was executed
    g.main.set([0xf4], LAYOUT.CODE);
    expect(() => runToExit(g.vcpu)).toThrow('guest exception, vector 13');
  });

  it('refuses bad memory regions and use after destroy with clear errors', () => {
    const mem = engine.createMemory(1 << 20);
    const vm = engine.createVm();
    const bad = (r: object) => () => vm.mapMemory({ slot: 0, guestPhys: 0, memory: mem, offset: 0, size: 4096, ...r });
    expect(bad({ guestPhys: 0x1001 })).toThrow(EngineUsageError);
    expect(bad({ size: 0 })).toThrow(/page aligned/);
    vm.mapMemory({ slot: 0, guestPhys: 0, memory: mem, offset: 0, size: 4096 });
    expect(() => vm.mapMemory({ slot: 1, guestPhys: 0, memory: mem, offset: 4096, size: 4096 })).toThrow(/overlaps slot 0/);
    expect(() => vm.dirtyPages(7)).toThrow(/no memory slot 7/);
    const v = vm.createVcpu(0);
    vm.destroy();
    expect(() => v.run()).toThrow('the vCPU was destroyed');
    expect(() => vm.createVcpu(1)).toThrow('the VM was destroyed');
  });

  it('is what auto selects where /dev/kvm does not exist, and by name anywhere', () => {
    expect(resolveEngine('auto', '/nonexistent/kvm')).toBe('soft');
    expect(resolveEngine('soft', '/dev/kvm')).toBe('soft');
    const e = selectEngine('auto', { kvmPath: '/nonexistent/kvm' });
    expect(e.name).toBe('soft');
    e.close();
    expect(() => selectEngine('qemu' as 'kvm')).toThrow(/unknown engine qemu/);
  });
});
