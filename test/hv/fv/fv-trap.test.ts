// fv-trap mode end to end: the guest kit's plain kernels (the same
// workload sources as the PV kernels) run deprivileged under the core on
// the software engine, which runs everywhere, and compute what they
// compute in PV and under QEMU; hostile plain kernels are ended alone,
// with the reason; every frame comes back.

import { beforeAll, describe, expect, it } from 'vitest';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { ELF_DIR, GUESTS_DIR, guestMachine } from '../../support/kvm-harness.js';
import { ASPACE_CHECKSUM, COMPUTE_ANSWER, CONIO_LINE, CTXSW_CHECKSUM, MMAP_CHECKSUM, NANO_HANDLED, PTEMOD_CHECKSUM, TICKS_LINE } from '../../support/workloads.js';
import { runFvDomains, type FvDomain } from '../../../src/hv/fv/fv-domain.js';
import { GuestElfError } from '../../../src/hv/domain/elf.js';

const MIB = 1 << 20;

describe('fv-trap: plain kernels trapped and emulated', () => {
  const m = guestMachine({ memoryBytes: 160 * MIB }, 'soft');
  let free: number;
  beforeAll(() => {
    free = m.hv.frames.free;
  });

  function image(file: string): Buffer {
    if (!fs.existsSync(file)) throw new Error(`${file} is missing: run \`npm run build\``);
    return fs.readFileSync(file);
  }

  async function run(file: string, memoryBytes = 32 * MIB): Promise<{ d: FvDomain; out: string }> {
    let out = '';
    const d = m.hv.createFvDomain(image(file), { memoryBytes, console: (b) => { out += Buffer.from(b).toString('latin1'); } });
    await runFvDomains([d], m.hv.now);
    m.hv.destroyFvDomain(d);
    expect(m.hv.frames.free).toBe(free); // guest RAM, shadow tables and the hypervisor's area all back
    return { d, out };
  }

  const workload = (name: string) => run(path.join(GUESTS_DIR, `${name}-native.elf`));

  it('nano: every divide error and int3 reaches the kernel through its own IDT, and user mode makes system calls', async () => {
    const { d, out } = await workload('nano');
    expect(d.end, out).toEqual({ kind: 'poweroff' });
    expect(out).toContain(NANO_HANDLED);
    expect(out).toMatch(/nano: syscall \d+ cycles per op/);
    // What was trapped and emulated: 2000 syscalls and sysrets, an iretq per fault and per user entry.
    expect(d.cpu.emulated.get('syscall')).toBe(2001);
    expect(d.cpu.emulated.get('Sysretq')).toBe(2000);
    expect(d.cpu.emulated.get('Int3')).toBe(2000);
    // The task priority written 2001 times (CR8), held in the virtual CPU.
    expect(out).toMatch(/nano: cr8 write \d+ cycles per op/);
    expect(d.cpu.tpr).toBe(0);
  }, 120_000);

  it('ptemod: page-table writes trap into the shadow tables and the pages read back the same checksum as in PV', async () => {
    const { d, out } = await workload('ptemod');
    expect(d.end, out).toEqual({ kind: 'poweroff' });
    expect(out).toContain(PTEMOD_CHECKSUM);
    // 16 rounds of 512 entries written, each a trapped store into a write-protected table.
    expect(d.counts.ptWrites).toBeGreaterThanOrEqual(16 * 512);
    expect(d.shadow.counts.invalidations).toBeGreaterThan(0);
  }, 120_000);

  it('aspace and ctxsw: address spaces built, switched and torn down give the PV checksums', async () => {
    const a = await workload('aspace');
    expect(a.d.end, a.out).toEqual({ kind: 'poweroff' });
    expect(a.out).toContain(ASPACE_CHECKSUM);
    const c = await workload('ctxsw');
    expect(c.d.end, c.out).toEqual({ kind: 'poweroff' });
    expect(c.out).toContain(CTXSW_CHECKSUM);
    expect(c.d.cpu.emulated.get('Mov')).toBeGreaterThanOrEqual(1000); // a CR3 load per switch
  }, 180_000);

  it('mmap: pages mapped and unmapped through trapped stores and CR3 loads read back the PV checksum', async () => {
    const { d, out } = await workload('mmap');
    expect(d.end, out).toEqual({ kind: 'poweroff' });
    expect(out).toContain(MMAP_CHECKSUM);
    // 16 rounds of 16 + 128 + 512 entries set and cleared, each a trapped store into the region's table, but for the
    // first batch: the table is not known as one (nor write-protected) until the first read through the region walks it.
    expect(d.counts.ptWrites).toBeGreaterThanOrEqual(16 * 2 * (16 + 128 + 512) - 16);
  }, 120_000);

  it('conio: every character goes out through the trapped serial port', async () => {
    const { d, out } = await workload('conio');
    expect(d.end, out).toEqual({ kind: 'poweroff' });
    const lines = out.split('\r\n').filter((l) => l === CONIO_LINE);
    expect(lines).toHaveLength(64);
  }, 120_000);

  it('ticks: the PIT tick arrives through the PIC and the guest IDT; the count is what the guest saw', async () => {
    const { d, out } = await workload('ticks');
    expect(d.end, out).toEqual({ kind: 'poweroff' });
    const t = TICKS_LINE.exec(out);
    expect(t, out).not.toBeNull();
    const [counted, expected, , lost] = t!.slice(1).map(Number) as [number, number, number, number];
    expect(counted).toBeGreaterThan(0);
    expect(d.counts.interrupts).toBeGreaterThanOrEqual(counted);
    expect(lost).toBe(counted < expected ? expected - counted : 0);
  }, 120_000);

  it('compute: the sieve gives the answer it gives as a host process, in PV and under QEMU', async () => {
    const { d, out } = await workload('compute');
    expect(d.end, out).toEqual({ kind: 'poweroff' });
    expect(out).toContain(COMPUTE_ANSWER);
  }, 300_000);

  it('ends a kernel that reads the range the monitor keeps for itself, alone and with the reason', async () => {
    const { d } = await run(path.join(ELF_DIR, 'plain-hole.elf'));
    expect(d.end).toEqual({ kind: 'crash', reason: expect.stringMatching(/touched 0xffff808000000000, in the range the monitor keeps/) });
  });

  it('refuses guest-physical memory the domain does not have, mapped by its own tables', async () => {
    const { d } = await run(path.join(ELF_DIR, 'plain-outside.elf'));
    expect(d.end).toEqual({ kind: 'crash', reason: "0x20000000 maps guest-physical 0x20000000, outside the domain's 32 MiB" });
  });

  it('ends a kernel that halts with interrupts off, which could never run again', async () => {
    const { d } = await run(path.join(ELF_DIR, 'plain-cli-hlt.elf'));
    expect(d.end).toEqual({ kind: 'crash', reason: expect.stringContaining('halted with interrupts off') });
  });

  it('refuses what is not a kernel, and a memory size that cannot hold one, leaving nothing allocated', () => {
    expect(() => m.hv.createFvDomain(Buffer.from('not an elf at all, just text'), { memoryBytes: 32 * MIB })).toThrow(GuestElfError);
    const nano = image(path.join(GUESTS_DIR, 'nano-native.elf'));
    expect(() => m.hv.createFvDomain(nano, { memoryBytes: 3 * MIB })).toThrow(/4 to 1024 MiB/);
    expect(() => m.hv.createFvDomain(nano, { memoryBytes: 32 * MIB + 4096 })).toThrow(/whole MiB/);
    expect(m.hv.frames.free).toBe(free);
    expect(m.hv.fvDomains.size).toBe(0);
  });
});
