// The three hypercall transports and the exit handler on the scripted
// engine (no KVM): the hypercall page's port I/O, `syscall` through the
// LSTAR stub and `vmcall` through #GP, each issuing the same hypercall, with
// the result in rax and the guest resumed where the transport returns.

import { afterEach, describe, expect, it } from 'vitest';
import { Hypercall, ConsoleIo } from '../../../src/abi/generated/xen.js';
import { scriptedGuest, type ScriptedGuest } from '../../support/scripted.js';

let g: ScriptedGuest;
afterEach(() => g?.hv.close());

const text = (s: string) => new TextEncoder().encode(s);

describe('hypercall transports', () => {
  for (const via of ['page', 'syscall', 'vmcall'] as const) {
    it(`issues console_io through ${via} and resumes after it with the result in rax`, () => {
      const out: string[] = [];
      g = scriptedGuest('minimal', { log: (b) => out.push(Buffer.from(b).toString()) });
      const { cpu, ev } = g;
      const buf = g.d.layout.stackTop - 0x200n;
      let startRip = 0n;
      const go = g.play(
        (c) => {
          c.write(buf, text('hi'));
          startRip = c.regs.rip;
          return c.hypercall(Hypercall.HYPERVISOR_console_io, [BigInt(ConsoleIo.CONSOLEIO_write), 2n, buf], via);
        },
        (c) => {
          // Rule: the guest is back where the transport returns, rax = 0.
          expect(c.regs.rax).toBe(0n);
          expect(c.regs.rip).toBe(via === 'vmcall' ? startRip + 3n : via === 'syscall' ? startRip + 2n : startRip);
          return c.hypercall(Hypercall.HYPERVISOR_console_io, [BigInt(ConsoleIo.CONSOLEIO_write), 2n, 1n << 46n], via);
        },
        (c) => {
          // Rule: a bad pointer is -EFAULT, the domain goes on.
          expect(BigInt.asIntN(64, c.regs.rax)).toBe(-14n);
          return { kind: 'interrupted' };
        },
      );
      expect(go).toBe(false);
      expect(out.join('')).toBe('hi');
      expect(g.d.running).toBe(true);
      expect(g.d.hypercallCounts[Hypercall.HYPERVISOR_console_io]).toBe(2);
      expect(g.d.exitCounts.get(via === 'page' ? 'hypercall (page)' : via === 'syscall' ? 'hypercall (syscall)' : 'hypercall (vmcall)')).toBe(2);
      expect(ev.exits.length).toBeGreaterThan(0);
      void cpu;
    });
  }

  it('crashes the domain alone for port I/O the bitmap should have refused, returning every frame', () => {
    g = scriptedGuest();
    const free = g.hv.frames.free;
    g.play(() => ({ kind: 'io', direction: 'out', port: 0x80, size: 1, count: 1, data: new Uint8Array(1) }));
    expect(g.d.end).toEqual({ kind: 'crashed', reason: expect.stringMatching(/port I\/O out 0x80/) });
    const returned = g.hv.destroyDomain(g.d);
    expect(returned).toBeGreaterThan(0);
    expect(g.hv.frames.free).toBe(free + returned);
  });
});
