// Hypercall dispatch and the boot hypercalls, driven directly (no KVM): a
// domain context over plain machine memory with a read-write page at
// 0x400000 and a read-only page at 0x401000.

import { beforeEach, describe, expect, it } from 'vitest';
import { createPlainMemory } from '../../../src/engine/plain-memory.js';
import { FrameTable } from '../../../src/hv/mm/frames.js';
import { GuestMemory } from '../../../src/hv/mm/guest-access.js';
import { HypercallTable } from '../../../src/hv/hypercalls/table.js';
import type { HypercallArgs, HypercallContext, SchedContext } from '../../../src/hv/hypercalls/context.js';
import { createHypercallTable, HANDLERS } from '../../../src/hv/hypercalls/index.js';
import { testContext } from '../../support/context.js';
import { Hypercall } from '../../../src/abi/generated/xen.js';
import { PvbenchHypercall } from '../../../src/abi/generated/paravane-pvbench.js';
import { TableBuilder } from '../../support/page-tables.js';

const RW = 0x400000n;
const RO = 0x401000n;
const ENOSYS = -38n;
const EFAULT = -14n;
const EINVAL = -22n;
const EPERM = -1n;

type TestCtx = HypercallContext & { out: string; reasons: number[]; yields: number };

describe('hypercall dispatch', () => {
  let ft: FrameTable;
  let ctx: TestCtx;
  let table: HypercallTable;
  const call = (nr: number, ...a: bigint[]) => table.dispatch(ctx, BigInt(nr), [a[0] ?? 0n, a[1] ?? 0n, a[2] ?? 0n, a[3] ?? 0n, a[4] ?? 0n] as HypercallArgs);
  const bytesAt = (va: bigint, n: number) => ctx.guest.read(va, n);
  const cstr = (va: bigint, n: number) => { const b = bytesAt(va, n); return String.fromCharCode(...b.subarray(0, b.indexOf(0))); };

  beforeEach(() => {
    ft = new FrameTable(createPlainMemory(8 * (1 << 20)));
    const tb = new TableBuilder(ft);
    const [rw, ro] = ft.allocate(1, 2) as [number, number];
    tb.map(RW, rw, 7n);
    tb.map(RO, ro, 5n);
    const sched = { yieldCpu() { ctx.yields++; } } as unknown as SchedContext;
    ctx = testContext<Partial<HypercallContext> & { out: string; reasons: number[]; yields: number }>({
      domid: 1, guest: new GuestMemory(ft, BigInt(tb.l4) << 12n), nrPages: 256, maxPages: 512,
      handle: Uint8Array.from({ length: 16 }, (_, i) => i + 1), vmAssist: 0n,
      out: '', reasons: [] as number[], yields: 0,
      consoleWrite(b: Uint8Array) { ctx.out += Buffer.from(b).toString('latin1'); },
      shutdown(r: number) { ctx.reasons.push(r); },
      sched,
      m2pVirt: 0xffff800000000000n,
    });
    table = createHypercallTable();
  });

  it('returns -ENOSYS for numbers that are unused, unimplemented or out of range', () => {
    for (const nr of [11, 45, Hypercall.HYPERVISOR_kexec_op, 100, 127]) expect(call(nr)).toBe(ENOSYS);
    expect(table.dispatch(ctx, 1n << 40n, [0n, 0n, 0n, 0n, 0n])).toBe(ENOSYS);
    expect(table.dispatch(ctx, -1n, [0n, 0n, 0n, 0n, 0n])).toBe(ENOSYS);
    expect(() => new HypercallTable().register('no_such_call', () => 0n)).toThrow(/no hypercall named/);
    expect(() => table.register(HANDLERS[0]![0], HANDLERS[0]![1])).toThrow(/registered twice/);
  });

  it('console_io writes guest bytes to the console, refuses bad pointers and sizes', () => {
    ctx.guest.write(RW, new TextEncoder().encode('hello, world\n'));
    expect(call(Hypercall.HYPERVISOR_console_io, 0n, 13n, RW)).toBe(0n);
    expect(ctx.out).toBe('hello, world\n');
    expect(call(Hypercall.HYPERVISOR_console_io, 0n, 8n, 0x500000n)).toBe(EFAULT);
    expect(call(Hypercall.HYPERVISOR_console_io, 0n, 8n, 0xffff800000000000n)).toBe(EFAULT);
    expect(call(Hypercall.HYPERVISOR_console_io, 0n, 1n << 20n, RW)).toBe(EINVAL);
    expect(call(Hypercall.HYPERVISOR_console_io, 1n, 16n, RW)).toBe(0n); // read: nothing yet
    expect(call(Hypercall.HYPERVISOR_console_io, 7n, 1n, RW)).toBe(EINVAL);
  });

  it('xen_version answers every sub-op a domU uses, with zero-filled strings', () => {
    const xv = Hypercall.HYPERVISOR_xen_version;
    expect(call(xv, 0n, 0n)).toBe(BigInt((4 << 16) | 17));
    ctx.guest.write(RW, new Uint8Array(1024).fill(0xff));
    expect(call(xv, 1n, RW)).toBe(0n);
    expect(cstr(RW, 16)).toBe('-paravane');
    expect([...bytesAt(RW + 9n, 7)]).toEqual([0, 0, 0, 0, 0, 0, 0]);
    expect(call(xv, 2n, RW)).toBe(0n);
    expect(cstr(RW, 64)).toMatch(/^paravane/);
    expect(call(xv, 3n, RW)).toBe(0n);
    expect(cstr(RW, 1024)).toBe('xen-3.0-x86_64');
    expect(bytesAt(RW + 14n, 1010).every((b) => b === 0)).toBe(true);
    expect(call(xv, 4n, RW)).toBe(0n);
    expect(cstr(RW, 64)).toBe('paravane');
    expect(call(xv, 5n, RW)).toBe(0n);
    expect(ctx.guest.readU64(RW)).toBe(0xffff800000000000n);
    ctx.guest.writeU32(RW, 0);
    expect(call(xv, 6n, RW)).toBe(0n);
    expect(ctx.guest.readU32(RW + 4n)).toBe((1 << 5) | (1 << 6) | (1 << 7)); // the XENFEAT bits offered (xen-answers.test.ts)
    ctx.guest.writeU32(RW, 1);
    expect(call(xv, 6n, RW)).toBe(EINVAL);
    expect(call(xv, 7n, 0n)).toBe(4096n);
    expect(call(xv, 7n, RW)).toBe(EINVAL);
    expect(call(xv, 8n, RW)).toBe(0n);
    expect([...bytesAt(RW, 16)]).toEqual([...ctx.handle]);
    // Bad pointers and read-only targets fault; unknown sub-ops are -ENOSYS.
    expect(call(xv, 1n, RO)).toBe(EFAULT);
    expect(call(xv, 3n, RW + 0xf00n)).toBe(EFAULT); // 1024 bytes run off the mapped page
    expect(call(xv, 2n, 0x0000800000000000n)).toBe(EFAULT);
    expect(call(xv, 99n, RW)).toBe(ENOSYS);
  });

  it('sched_op yields and shuts down with the guest\'s reason', () => {
    expect(call(Hypercall.HYPERVISOR_sched_op, 0n)).toBe(0n);
    expect(ctx.yields).toBe(1);
    ctx.guest.writeU32(RW, 3);
    expect(call(Hypercall.HYPERVISOR_sched_op, 2n, RW)).toBe(0n);
    expect(ctx.reasons).toEqual([3]);
    expect(call(Hypercall.HYPERVISOR_sched_op, 2n, 0x123000n)).toBe(EFAULT);
    expect(call(Hypercall.HYPERVISOR_sched_op, 42n)).toBe(ENOSYS);
  });

  it('vm_assist accepts the types a 64-bit PV guest may enable, and only those', () => {
    const va = Hypercall.HYPERVISOR_vm_assist;
    expect(call(va, 0n, 2n)).toBe(0n);
    expect(ctx.vmAssist).toBe(4n);
    expect(call(va, 0n, 32n)).toBe(0n);
    expect(call(va, 1n, 2n)).toBe(0n);
    expect(ctx.vmAssist).toBe(1n << 32n);
    expect(call(va, 0n, 9n)).toBe(EINVAL);
    expect(call(va, 0n, 1n << 40n)).toBe(EINVAL);
    expect(call(va, 2n, 2n)).toBe(ENOSYS);
  });

  it('memory_op reports reservations and the M2P mapping as Xen tells a domU', () => {
    const mo = Hypercall.HYPERVISOR_memory_op;
    ctx.guest.write(RW, Uint8Array.of(0xf0, 0x7f)); // DOMID_SELF
    expect(call(mo, 3n, RW)).toBe(256n);
    expect(call(mo, 4n, RW)).toBe(512n);
    ctx.guest.write(RW, Uint8Array.of(2, 0));
    expect(call(mo, 4n, RW)).toBe(EPERM);
    expect(call(mo, 12n, RW)).toBe(0n);
    expect([ctx.guest.readU64(RW), ctx.guest.readU64(RW + 8n), ctx.guest.readU64(RW + 16n)])
      .toEqual([0xffff800000000000n, 0xffff804000000000n, 0x7ffffffffn]);
    expect(call(mo, 9n, RW)).toBe(ENOSYS);
    expect(call(mo, 12n, RO)).toBe(EFAULT);
  });

  it('pvbench_op: nop returns 0, echo writes value + 1, bad pointers fault', () => {
    const pb = PvbenchHypercall.HYPERVISOR_pvbench_op;
    expect(call(pb, 0n)).toBe(0n);
    ctx.guest.writeU64(RW, 41n);
    expect(call(pb, 1n, RW)).toBe(0n);
    expect(ctx.guest.readU64(RW + 8n)).toBe(42n);
    expect(call(pb, 1n, RO)).toBe(EFAULT);
    expect(call(pb, 9n)).toBe(ENOSYS);
  });
});
