// The trap hypercalls' argument handling on plain memory (no KVM), against
// a recording CpuContext: set_trap_table (lists, NULL, continuation,
// non-canonical handlers), the callbacks, stack_switch, fpu_taskswitch,
// set_segment_base and iret's crash path; then delivery on KVM
// (test/guests/elf/traps.S: bounce frames for #UD, #BP, #DE and #PF, returns
// through the iret hypercall and a plain iretq). The kit's faults example
// (test/hv/examples.test.ts) covers every exception type.

import { beforeEach, describe, expect, it } from 'vitest';
import { elfGuest, guestMachine, runGuest } from '../../support/kvm-harness.js';
import { createPlainMemory } from '../../../src/engine/plain-memory.js';
import { FrameTable } from '../../../src/hv/mm/frames.js';
import { GuestMemory } from '../../../src/hv/mm/guest-access.js';
import type { HypercallTable } from '../../../src/hv/hypercalls/table.js';
import type { CallbackEntry, HypercallArgs, HypercallContext, CpuContext } from '../../../src/hv/hypercalls/context.js';
import { createHypercallTable } from '../../../src/hv/hypercalls/index.js';
import { testContext } from '../../support/context.js';
import { Hypercall } from '../../../src/abi/generated/xen.js';
import { TableBuilder } from '../../support/page-tables.js';

const EFAULT = -14n, EINVAL = -22n, ENOSYS = -38n;
const RW = 0x400000n;

let ft: FrameTable;
let ctx: HypercallContext & { continued?: HypercallArgs; crashes: string[] };
let table: HypercallTable;
let traps: Map<number, [number, number, bigint]>;
let callbacks: Map<number, CallbackEntry>;
let log: string[];
let iretResult: string | undefined;

const call = (nr: number, ...a: bigint[]) => table.dispatch(ctx, BigInt(nr), [a[0] ?? 0n, a[1] ?? 0n, a[2] ?? 0n, a[3] ?? 0n, a[4] ?? 0n]);
function trapList(entries: Array<[number, number, number, bigint]>, at = RW): bigint {
  const b = new Uint8Array((entries.length + 1) * 16);
  const v = new DataView(b.buffer);
  entries.forEach(([vec, flags, cs, addr], i) => { v.setUint8(16 * i, vec); v.setUint8(16 * i + 1, flags); v.setUint16(16 * i + 2, cs, true); v.setBigUint64(16 * i + 8, addr, true); });
  ctx.guest.write(at, b);
  return at;
}

beforeEach(() => {
  ft = new FrameTable(createPlainMemory(8 * (1 << 20)));
  const tb = new TableBuilder(ft);
  for (let i = 0; i < 4; i++) tb.map(RW + BigInt(i) * 4096n, ft.allocate(1, 1)[0]!, 7n);
  traps = new Map();
  callbacks = new Map();
  log = [];
  iretResult = undefined;
  const cpu: CpuContext = {
    setTrap: (v, f, cs, a) => { traps.set(v, [f, cs, a]); },
    clearTraps: () => { traps.clear(); log.push('clear'); },
    setKernelStack: (sp) => { log.push(`stack ${sp.toString(16)}`); },
    setTaskSwitched: (on) => { log.push(`ts ${on}`); },
    setSegmentBase: (w, b) => { log.push(`segbase ${w} ${b.toString(16)}`); return 0n; },
    setCallback: (t, e) => { callbacks.set(t, e); },
    setIopl: (i) => { log.push(`iopl ${i}`); },
    setGdt: () => 0n,
    setDebugreg: () => 0n,
    getDebugreg: () => 0n,
    iret: () => iretResult,
  };
  ctx = testContext({
    domid: 1, guest: new GuestMemory(ft, BigInt(tb.l4) << 12n), cpu, crashes: [] as string[], continued: undefined as HypercallArgs | undefined,
    crash(r: string) { ctx.crashes.push(r); },
    continueWith(a: HypercallArgs) { ctx.continued = a; },
  });
  table = createHypercallTable();
});

describe('set_trap_table', () => {
  it('installs entries up to the first with address 0, forcing the selector\'s RPL to 3', () => {
    const list = trapList([[0, 0, 0xe030, 0xffffffff80001000n], [14, 4, 0xe033, 0xffffffff80002000n], [3, 3, 0xe033, 0x401000n]]);
    expect(call(Hypercall.HYPERVISOR_set_trap_table, list)).toBe(0n);
    expect([...traps.entries()]).toEqual([[0, [0, 0xe033, 0xffffffff80001000n]], [14, [4, 0xe033, 0xffffffff80002000n]], [3, [3, 0xe033, 0x401000n]]]);
    expect(call(Hypercall.HYPERVISOR_set_trap_table, 0n)).toBe(0n); // NULL clears the table
    expect(traps.size).toBe(0);
  });

  it('refuses a non-canonical or hypervisor-area handler and a bad list pointer', () => {
    expect(call(Hypercall.HYPERVISOR_set_trap_table, trapList([[6, 0, 0xe033, 0x0000800000000000n]]))).toBe(EINVAL);
    expect(call(Hypercall.HYPERVISOR_set_trap_table, trapList([[6, 0, 0xe033, 0xffff800000001000n]]))).toBe(EINVAL);
    expect(call(Hypercall.HYPERVISOR_set_trap_table, 0xffff800000000000n)).toBe(EFAULT);
    expect(call(Hypercall.HYPERVISOR_set_trap_table, RW + 4n * 4096n - 8n)).toBe(EFAULT); // runs off the mapped pages
  });

  it('continues a list longer than 256 entries', () => {
    const entries = Array.from({ length: 300 }, (_, i) => [i & 0xff, 0, 0xe033, 0x401000n + BigInt(i)] as [number, number, number, bigint]);
    const list = trapList(entries);
    expect(call(Hypercall.HYPERVISOR_set_trap_table, list)).toBe(0n);
    expect(ctx.continued?.[0]).toBe(list + 256n * 16n);
    expect(traps.get(255)?.[2]).toBe(0x401000n + 255n);
    ctx.continued = undefined;
    expect(call(Hypercall.HYPERVISOR_set_trap_table, list + 256n * 16n)).toBe(0n);
    expect(ctx.continued).toBeUndefined();
    expect(traps.get(0)?.[2]).toBe(0x401000n + 256n); // entry 256 names vector 0 again
  });
});

describe('callbacks', () => {
  it('set_callbacks registers event (masked), failsafe and syscall', () => {
    expect(call(Hypercall.HYPERVISOR_set_callbacks, 0x401000n, 0x402000n, 0x403000n)).toBe(0n);
    expect(callbacks.get(0)).toEqual({ address: 0x401000n, maskEvents: true });
    expect(callbacks.get(1)).toEqual({ address: 0x402000n, maskEvents: false });
    expect(callbacks.get(2)).toEqual({ address: 0x403000n, maskEvents: false });
    expect(call(Hypercall.HYPERVISOR_set_callbacks, 0x401000n, 0x0000900000000000n, 0n)).toBe(EINVAL);
  });

  it('callback_op registers and unregisters with Xen\'s errors', () => {
    const reg = (type: number, flags: number, addr: bigint) => {
      const b = new Uint8Array(16);
      const v = new DataView(b.buffer);
      v.setUint16(0, type, true); v.setUint16(2, flags, true); v.setBigUint64(8, addr, true);
      ctx.guest.write(RW, b);
      return call(Hypercall.HYPERVISOR_callback_op, 0n, RW);
    };
    const unreg = (type: number) => { ctx.guest.write(RW, new Uint8Array([type, 0, 0, 0])); return call(Hypercall.HYPERVISOR_callback_op, 1n, RW); };
    expect(reg(2, 1, 0x404000n)).toBe(0n);
    expect(callbacks.get(2)).toEqual({ address: 0x404000n, maskEvents: true });
    expect(reg(4, 0, 0x405000n)).toBe(0n);
    expect(reg(3, 0, 0x405000n)).toBe(ENOSYS); // sysenter_deprecated
    expect(reg(9, 0, 0x405000n)).toBe(ENOSYS);
    expect(reg(0, 0, 0xffff808000000000n)).toBe(EINVAL);
    expect(unreg(4)).toBe(0n);
    expect(callbacks.get(4)?.address).toBe(0n);
    expect(unreg(0)).toBe(EINVAL);
    expect(unreg(9)).toBe(ENOSYS);
    expect(call(Hypercall.HYPERVISOR_callback_op, 7n, RW)).toBe(ENOSYS);
    expect(call(Hypercall.HYPERVISOR_callback_op, 0n, 0n)).toBe(EFAULT);
  });
});

describe('stack_switch, fpu_taskswitch, set_segment_base, iret', () => {
  it('passes them on, and crashes the domain when iret cannot resume', () => {
    expect(call(Hypercall.HYPERVISOR_stack_switch, 0xe028n, 0xffffffff80100000n)).toBe(0n);
    expect(call(Hypercall.HYPERVISOR_fpu_taskswitch, 1n)).toBe(0n);
    expect(call(Hypercall.HYPERVISOR_fpu_taskswitch, 0n)).toBe(0n);
    expect(call(Hypercall.HYPERVISOR_set_segment_base, 0n, 0x1234000n)).toBe(0n);
    expect(log).toEqual(['stack ffffffff80100000', 'ts true', 'ts false', 'segbase 0 1234000']);
    expect(call(Hypercall.HYPERVISOR_iret)).toBe(0n);
    expect(ctx.crashes).toEqual([]);
    iretResult = 'the frame cannot be read';
    call(Hypercall.HYPERVISOR_iret);
    expect(ctx.crashes).toEqual(['iret hypercall: the frame cannot be read']);
  });
});

describe('exception delivery on KVM', () => {
  const m = guestMachine({ memoryBytes: 32 << 20 });

  it('bounces #UD, #BP, #DE and #PF to the registered handlers with Xen\'s frame, and resumes through iret or iretq', async () => {
    const free = m.hv.frames.free;
    const { d, end, out: w } = await runGuest(m.hv, elfGuest('traps'), { timeoutMs: 10_000 });
    expect(end).toEqual({ kind: 'shutdown', reason: 0, reasonName: 'poweroff' });
    const pairs = Array.from({ length: w.length / 16 }, (_, i) => [w.readBigUInt64LE(16 * i), w.readBigUInt64LE(16 * i + 8)] as const);
    const [udRip, udCs, rcx, r11, bpRip, deRip, rax, pfErr, pfRip] = pairs as unknown as Array<[bigint, bigint]>;
    expect(udRip![0]).toBe(udRip![1]);                       // rip of the ud2
    expect(udCs![0] & 0xffffn).toBe(udCs![1]);               // CS with RPL cleared: interrupted kernel mode
    expect(udCs![0] >> 32n).toBe(1n);                        // the saved event mask: events start masked
    expect(rcx![0]).toBe(rcx![1]);                           // rcx and r11 come back from the frame
    expect(r11![0]).toBe(r11![1]);
    expect(bpRip![0]).toBe(bpRip![1]);                       // int3 is a trap: rip after it
    expect(deRip![0]).toBe(deRip![1]);
    expect(rax![0]).toBe(rax![1]);                           // rax from the iret frame
    expect(pfErr![0]).toBe(pfErr![1]);                       // U cleared: the fault was in guest-kernel mode
    expect(pfRip![0]).toBe(pfRip![1]);
    expect(d.exitCounts.get('exception delivered')).toBe(4);
    expect(m.hv.frames.free).toBe(free);
  });

  it('crashes a domain whose bounce frame cannot be written, and only that domain', async () => {
    const free = m.hv.frames.free;
    const bystander = m.hv.createDomain(elfGuest('traps'), { memoryBytes: 8 << 20 });
    // The two run side by side.
    const [{ end }, bystanderEnd] = await Promise.all([
      runGuest(m.hv, elfGuest('traps-badstack'), { timeoutMs: 10_000 }),
      m.hv.run(bystander, { timeoutMs: 10_000 }),
    ]);
    expect(end.kind).toBe('crashed');
    expect((end as { reason: string }).reason).toMatch(/#UD invalid opcode \(vector 6\) at rip 0x[0-9a-f]+ could not be delivered: the bounce frame at 0x3fffffffffc8 cannot be written \(not present/);
    expect(bystanderEnd).toEqual({ kind: 'shutdown', reason: 0, reasonName: 'poweroff' });
    expect(m.hv.frames.free).toBe(free);
  });
});
