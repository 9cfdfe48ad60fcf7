// Domains boot and run on KVM: the same hypercall through all three entry
// paths, a crashing domain destroyed alone with every frame returned while
// the machine goes on, timeouts, and clean refusals. Needs /dev/kvm (see
// test/support/kvm-gate.ts).

import { beforeAll, describe, expect, it } from 'vitest';
import { Hypervisor } from '../../../src/hv/hypervisor.js';
import { GuestElfError } from '../../../src/hv/domain/elf.js';
import { BuildError } from '../../../src/hv/domain/builder.js';
import { Hypercall } from '../../../src/abi/generated/xen.js';
import { auditPageTypes } from '../../../src/hv/mm/page-audit.js';
import { elfGuest as guest, guestMachine, runGuest } from '../../support/kvm-harness.js';

const MIB = 1 << 20;

describe('domains on KVM', () => {
  const m = guestMachine({ memoryBytes: 64 * MIB });
  let freeAtStart: number;
  beforeAll(() => {
    freeAtStart = m.hv.frames.free;
  });

  const boot = (name: string, opts: { timeoutMs?: number; memoryBytes?: number } = {}) => runGuest(m.hv, guest(name), opts);

  it('gives the same results for a hypercall through the hypercall page, vmcall and syscall', async () => {
    const { d, end, out } = await boot('transports');
    expect(end).toEqual({ kind: 'shutdown', reason: 0, reasonName: 'poweroff' });
    expect(out.length).toBe(216);
    const rows = [0, 1, 2].map((r) => [0, 1, 2, 3, 4, 5, 6, 7, 8].map((w) => out.readBigInt64LE(r * 72 + w * 8)));
    // xen_version 4.17, echo rax 0 and result 42, -EFAULT for a non-canonical buffer, -ENOSYS for 60,
    // registers kept, and 64-bit results (which the page path returns through rax, not the `in`).
    expect(rows[0]).toEqual([0x40011n, 0n, 42n, -14n, -38n, 1n, 0x123456789abcdef0n, -0x100000000n, -5n]);
    expect(rows[1]).toEqual(rows[0]);
    expect(rows[2]).toEqual(rows[0]);
    expect(d.exitCounts.get('hypercall (vmcall)')).toBe(7);
    expect(d.exitCounts.get('hypercall (syscall)')).toBe(7);
    expect(d.exitCounts.get('hypercall (page)')).toBe(9);
    expect(d.hypercallCounts[Hypercall.HYPERVISOR_xen_version]).toBe(3);
    expect(d.hypercallCounts[Hypercall.HYPERVISOR_console_io]).toBe(4);
  });

  it('returns every frame to the free pool when a domain dies', async () => {
    const before = m.hv.frames.free;
    let frames: number[] = [];
    const { d } = await boot('transports', { memoryBytes: 16 * MIB });
    frames = [...d.memory.p2m];
    expect(d.state).toBe('dead');
    // What the domain left in its frames is gone: they read as zeros (discarded, not copied over).
    expect(frames.every((mfn) => m.hv.frames.bytes(mfn).every((b) => b === 0))).toBe(true);
    expect(d.framesReturned).toBeGreaterThan(4096);
    expect(m.hv.frames.free).toBe(before);
    expect(m.hv.frames.framesOf(d.id)).toEqual([]);
    expect(m.hv.domains.size).toBe(0);
  });

  it('destroys a crashing domain alone, with the reason, and the machine goes on', async () => {
    const { d, end, out } = await boot('crash');
    expect(out.toString()).toBe('about to fault\n');
    expect(end.kind).toBe('crashed');
    expect(end.kind === 'crashed' && end.reason).toMatch(/^unhandled #UD invalid opcode \(vector 6\) at rip 0x[0-9a-f]+; no trap handler is registered$/);
    expect(d.state).toBe('dead');
    expect(m.hv.frames.free).toBe(freeAtStart);
    // The next domain on the same machine runs normally.
    expect((await boot('transports')).end.kind).toBe('shutdown');
    expect(m.hv.frames.free).toBe(freeAtStart);
  });

  it('kills a domain that runs past its timeout', async () => {
    const t0 = Date.now();
    const { end } = await boot('minimal', { timeoutMs: 200 });
    expect(end).toEqual({ kind: 'killed', reason: 'timed out after 0.2 s' });
    expect(Date.now() - t0).toBeLessThan(5000);
    expect(m.hv.frames.free).toBe(freeAtStart);
  });

  it('pauses a running domain and resumes it later', async () => {
    const d = m.hv.createDomain(guest('minimal'), { memoryBytes: 8 * MIB });
    setTimeout(() => d.pause(), 50);
    expect(await m.hv.run(d, { timeoutMs: 10_000 })).toEqual({ kind: 'paused' });
    expect(d.state).toBe('paused');
    expect(m.hv.frames.framesOf(d.id).length).toBeGreaterThan(2048); // still holds its memory
    expect(await m.hv.run(d, { timeoutMs: 100 })).toEqual({ kind: 'killed', reason: 'timed out after 0.1 s' });
    expect(m.hv.frames.free).toBe(freeAtStart);
  });

  it('destroys the domain and rethrows when paravane itself fails during a hypercall', async () => {
    // The log sink takes console_io output inside the hypercall (the console sink gets it later, once the
    // console settles on console_io or the ring).
    const d = m.hv.createDomain(guest('crash'), { memoryBytes: 8 * MIB, log: () => { throw new Error('console sink failed'); } });
    await expect(m.hv.run(d)).rejects.toThrow('console sink failed');
    expect(d.state).toBe('dead');
    expect(d.end).toEqual({ kind: 'crashed', reason: 'internal error: console sink failed' });
    expect(m.hv.frames.free).toBe(freeAtStart);
  });

  it('keeps several domains built at once apart and frees each on destroy', () => {
    const a = m.hv.createDomain(guest('transports'), { memoryBytes: 8 * MIB });
    const b = m.hv.createDomain(guest('transports'), { memoryBytes: 8 * MIB });
    // Every reference the two domains' tables, pins and CR3s hold is accounted for.
    expect(auditPageTypes(m.hv.frames, [a, b].map((d) => d.auditView()))).toEqual([]);
    expect(a.id).not.toBe(b.id);
    const mine = new Set(m.hv.frames.framesOf(a.id));
    expect(m.hv.frames.framesOf(b.id).some((m) => mine.has(m))).toBe(false);
    m.hv.destroyDomain(a);
    m.hv.destroyDomain(b);
    expect(m.hv.frames.free).toBe(freeAtStart);
  });

  it('refuses syscall hypercalls, crashing the domain with the reason, on a host whose syscall enters ring 0', async () => {
    const strict = new Hypervisor(m.engine, { memoryBytes: 32 * MIB, syscallAtCpl3: false });
    try {
      const d = strict.createDomain(guest('transports'), { memoryBytes: 8 * MIB });
      const end = await strict.run(d, { timeoutMs: 20_000 });
      expect(end).toEqual({ kind: 'crashed', reason: expect.stringMatching(/^syscall is refused on this host/) });
      expect(d.exitCounts.get('hypercall (vmcall)')).toBe(7); // the page and vmcall rows ran first
    } finally {
      strict.close();
    }
  });

  it('refuses a malformed kernel or impossible options without allocating anything', () => {
    expect(() => m.hv.createDomain(new Uint8Array(10), { memoryBytes: 8 * MIB })).toThrow(GuestElfError);
    expect(() => m.hv.createDomain(guest('transports'), { memoryBytes: 1 * MIB })).toThrow(BuildError);
    expect(() => m.hv.createDomain(guest('transports'), { memoryBytes: 512 * MIB })).toThrow(/frames requested/);
    expect(m.hv.frames.free).toBe(freeAtStart);
    expect(m.hv.domains.size).toBe(0);
  });
});
