// vcpu_op on a domain of several vCPUs, on the scripted engine (no KVM):
// VCPUOP_initialise with Xen's checks and errnos (XTF's xsa-296 sequence
// among them), the state it gives the vCPU, the frames it holds; up, down
// (the last one powering the domain off) and is_up; and which commands
// may name another vCPU.

import { afterEach, describe, expect, it } from 'vitest';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { Hypercall, VcpuInfo } from '../../../src/abi/generated/xen.js';
import { VcpuOp } from '../../../src/abi/generated/vcpu.js';
import { VcpuGuestContext } from '../../../src/abi/generated/arch-x86.js';
import { CallbackType } from '../../../src/abi/generated/callback.js';
import type { ScriptedCpu } from '../../../src/engine/scripted/scripted-cpu.js';
import { PageType } from '../../../src/hv/mm/frames.js';
import { auditPageTypes } from '../../../src/hv/mm/page-audit.js';
import { MSR } from '../../../src/hv/mm/xen-space.js';
import { parseGuestKernel } from '../../../src/hv/domain/elf.js';
import { ELF_DIR, scriptedGuest, type ScriptedGuest } from '../../support/scripted.js';
import type { ScriptedVcpu } from '../../../src/engine/scripted/scripted-engine.js';

let g: ScriptedGuest;
afterEach(() => g?.hv.close());
const stop = () => ({ kind: 'interrupted' as const });
const EINVAL = -22n, EFAULT = -14n, ENOENT = -2n, EEXIST = -17n, ENOSYS = -38n, EOPNOTSUPP = -95n;
const VIRT_BASE = parseGuestKernel(fs.readFileSync(path.join(ELF_DIR, 'minimal.elf'))).virtBase;
const VGCF_in_kernel = 4n, VGCF_online = 0x20n, VGCF_i387_valid = 1n, VGCF_failsafe_disables_events = 8n;

function call(g: ScriptedGuest, nr: number, args: bigint[], before?: (c: ScriptedCpu) => void): bigint {
  let rc = 0n;
  g.play((c) => { before?.(c); return c.hypercall(nr, args); }, (c) => { rc = BigInt.asIntN(64, c.regs.rax); return stop(); });
  return rc;
}

/** A data page of the domain (mapped read-write at boot). */
function page(g: ScriptedGuest, n: number) {
  const pfn = g.d.layout.pfn.stack + n;
  return { pfn, mfn: g.d.memory.mfnOf(pfn), va: VIRT_BASE + (BigInt(pfn) << 12n) };
}
const remapRo = (g: ScriptedGuest, va: bigint, mfn: number) => call(g, Hypercall.HYPERVISOR_update_va_mapping, [va, (BigInt(mfn) << 12n) | 0x65n, 2n]);

/** vcpu_op(cmd, vcpu, arg), with `ctx` (a vcpu_guest_context) written to the guest first. */
function vcpuOp(g: ScriptedGuest, cmd: number, vcpu: number, ctx?: VcpuGuestContext, at = page(g, 6).va): bigint {
  return call(g, Hypercall.HYPERVISOR_vcpu_op, [BigInt(cmd), BigInt(vcpu), at], (c) => {
    if (ctx) c.write(at, new Uint8Array(ctx.view.buffer));
  });
}

/**
 * XTF's xsa-296 set-up: t2, an L4 whose slot 3 points at t1 (an empty L3),
 * both mapped read-only; a context in kernel mode on t2.
 */
function xsa296(g: ScriptedGuest): { ctx: VcpuGuestContext; t1: number; t2: number } {
  const t1 = page(g, 4), t2 = page(g, 5);
  g.hv.frames.words(t2.mfn)[3] = (BigInt(t1.mfn) << 12n) | 1n;
  expect(remapRo(g, t1.va, t1.mfn)).toBe(0n);
  expect(remapRo(g, t2.va, t2.mfn)).toBe(0n);
  const ctx = VcpuGuestContext.over(new ArrayBuffer(VcpuGuestContext.SIZE));
  ctx.flags = VGCF_in_kernel;
  ctx.set_ctrlreg_at(3, BigInt(t2.mfn) << 12n);
  return { ctx, t1: t1.mfn, t2: t2.mfn };
}

describe('VCPUOP_initialise, up, down, is_up', () => {
  it('brings a second vCPU up as XTF\'s xsa-296 does: initialise once (then -EEXIST), down until VCPUOP_up', () => {
    g = scriptedGuest('minimal', { vcpus: 2 });
    const [v0, v1] = g.d.vcpus as [typeof g.vcpu, typeof g.vcpu];
    expect([v0.online, v1.online, v1.initialised]).toEqual([true, false, false]);
    expect(vcpuOp(g, VcpuOp.VCPUOP_is_up, 0)).toBe(1n);
    expect(vcpuOp(g, VcpuOp.VCPUOP_is_up, 1)).toBe(0n);
    // Rule: a vCPU the domain does not have is -ENOENT, whatever the command.
    expect(vcpuOp(g, VcpuOp.VCPUOP_is_up, 2)).toBe(ENOENT);
    expect(vcpuOp(g, 99, 2)).toBe(ENOENT);
    expect(vcpuOp(g, 99, 1)).toBe(ENOSYS);
    // Rule: VCPUOP_up needs an initialised vCPU.
    expect(vcpuOp(g, VcpuOp.VCPUOP_up, 1)).toBe(EINVAL);
    const { ctx, t1, t2 } = xsa296(g);
    expect(vcpuOp(g, VcpuOp.VCPUOP_initialise, 1, ctx)).toBe(0n);
    // The root holds a type reference (validated as an L4, its L3 below it); the audit agrees.
    expect([g.hv.frames.type[t2], g.hv.frames.type[t1]]).toEqual([PageType.l4, PageType.l3]);
    expect(v1.space.cr3Mfn).toBe(t2);
    expect(auditPageTypes(g.hv.frames, [g.d.auditView()])).toEqual([]);
    expect(vcpuOp(g, VcpuOp.VCPUOP_initialise, 1, ctx)).toBe(EEXIST);
    expect(vcpuOp(g, VcpuOp.VCPUOP_initialise, 0, ctx)).toBe(EEXIST);
    // Without VGCF_online it stays down until VCPUOP_up.
    expect(vcpuOp(g, VcpuOp.VCPUOP_is_up, 1)).toBe(0n);
    expect(vcpuOp(g, VcpuOp.VCPUOP_up, 1)).toBe(0n);
    expect(vcpuOp(g, VcpuOp.VCPUOP_is_up, 1)).toBe(1n);
    expect(vcpuOp(g, VcpuOp.VCPUOP_up, 1)).toBe(0n); // already up: nothing to do
    // Down and up again (no second initialise).
    expect(vcpuOp(g, VcpuOp.VCPUOP_down, 1)).toBe(0n);
    expect(vcpuOp(g, VcpuOp.VCPUOP_is_up, 1)).toBe(0n);
    expect(g.d.running).toBe(true);
    expect(vcpuOp(g, VcpuOp.VCPUOP_up, 1)).toBe(0n);
    expect(v1.online).toBe(true);
    // Its frames come back with the domain.
    const free = g.hv.frames.free;
    const n = g.hv.destroyDomain(g.d);
    expect(g.hv.frames.free).toBe(free + n);
    expect(g.hv.frames.owner[t2]).not.toBe(g.d.id);
  });

  it('powers the domain off when its last vCPU up goes down', () => {
    g = scriptedGuest('minimal', { vcpus: 2 });
    expect(vcpuOp(g, VcpuOp.VCPUOP_down, 0)).toBe(0n);
    expect(g.d.end).toEqual({ kind: 'shutdown', reason: 0, reasonName: 'poweroff' });
  });

  it('takes a vCPU down while another stays up: the caller itself stops running', () => {
    g = scriptedGuest('minimal', { vcpus: 2 });
    const { ctx } = xsa296(g);
    ctx.flags = VGCF_in_kernel | VGCF_online;
    expect(vcpuOp(g, VcpuOp.VCPUOP_initialise, 1, ctx)).toBe(0n);
    expect(g.d.vcpus[1]!.online).toBe(true); // VGCF_online: up at once
    let go = true;
    g.ev.script((c) => c.hypercall(Hypercall.HYPERVISOR_vcpu_op, [BigInt(VcpuOp.VCPUOP_down), 0n, 0n]));
    go = g.vcpu.handleExit(g.vcpu.run());
    expect(go).toBe(false); // the run loop takes it off the CPU
    expect(g.vcpu.online).toBe(false);
    expect(g.d.running).toBe(true);
  });

  it('sets the vCPU up from the context: registers, IOPL, trap table, callbacks, stacks, bases, CR0.TS, debug registers', () => {
    g = scriptedGuest('minimal', { vcpus: 3 });
    const { ctx, t2 } = xsa296(g);
    const r = ctx.user_regs;
    r.rip = 0x123456n; r.rsp = 0x7ff000n; r.rax = 1n; r.r15 = 15n; r.rsi = 0x5151n;
    r.rflags = 0x3000n | 0x1n; // IOPL 3, CF; IF is forced on
    ctx.trap_ctxt_at(14).address = 0x401000n;
    ctx.trap_ctxt_at(14).flags = 4;
    ctx.trap_ctxt_at(14).cs = 0xe030;
    ctx.kernel_sp = 0x9000n;
    ctx.event_callback_eip = 0x402000n;
    ctx.failsafe_callback_eip = 0x403000n;
    ctx.flags = VGCF_in_kernel | VGCF_failsafe_disables_events;
    ctx.fs_base = 0x1000n; ctx.gs_base_kernel = 0x2000n; ctx.gs_base_user = 0x3000n;
    ctx.set_ctrlreg_at(0, 8n); // TS
    ctx.set_debugreg_at(0, 0x5000n);
    ctx.set_debugreg_at(7, 0x1n);
    expect(vcpuOp(g, VcpuOp.VCPUOP_initialise, 2, ctx)).toBe(0n);
    const v = g.d.vcpus[2]!;
    const e = v.engine.regs;
    expect([e.rip, e.rsp, e.rax, e.r15, e.rsi]).toEqual([0x123456n, 0x7ff000n, 1n, 15n, 0x5151n]);
    expect(e.rflags).toBe(0x203n);
    expect(v.traps.iopl).toBe(3);
    expect([13, 14, 15].map((n) => v.traps.hasHandler(n))).toEqual([false, true, false]);
    expect(v.traps.kernelSp).toBe(0x9000n);
    expect(v.traps.callbacks.get(CallbackType.CALLBACKTYPE_event)).toEqual({ address: 0x402000n, maskEvents: true });
    expect(v.traps.callbacks.get(CallbackType.CALLBACKTYPE_failsafe)).toEqual({ address: 0x403000n, maskEvents: true });
    expect(v.engine.getMsrs([MSR.FS_BASE, MSR.GS_BASE, MSR.KERNEL_GS_BASE])).toEqual([0x1000n, 0x2000n, 0x3000n]);
    expect(v.traps.taskSwitched).toBe(true);
    expect(v.debug.get(0)).toBe(0x5000n);
    expect(v.debug.get(7) & 1n).toBe(1n);
    expect(v.space.cr3Mfn).toBe(t2);
    expect(v.space.userMode).toBe(false);
    // The other vCPUs are untouched.
    expect(g.d.vcpus[1]!.initialised).toBe(false);
    expect(g.vcpu.traps.taskSwitched).toBe(false);
  });

  it('refuses a bad context with Xen\'s errno, holding nothing and leaving the vCPU uninitialised', () => {
    g = scriptedGuest('minimal', { vcpus: 2 });
    const { ctx, t2 } = xsa296(g);
    const gdt = page(g, 8);
    expect(remapRo(g, gdt.va, gdt.mfn)).toBe(0n);
    const typeRefs = () => [g.hv.frames.typeCount[t2], g.hv.frames.typeCount[gdt.mfn]];
    const before = typeRefs();
    const bad: Array<[string, (c: VcpuGuestContext) => void, bigint]> = [
      ['a non-canonical rip', (c) => { c.user_regs.rip = 0x800000000000n; }, EINVAL],
      ['a non-canonical handler', (c) => { c.trap_ctxt_at(3).address = 0x8000_0000_0000n; }, EINVAL],
      ['a non-canonical event callback', (c) => { c.event_callback_eip = 0x8000_0000_0000n; }, EINVAL],
      ['an LDT base not page-aligned', (c) => { c.ldt_base = 0x1008n; c.ldt_ents = 1n; }, EINVAL],
      ['an LDT base in the hypervisor\'s area', (c) => { c.ldt_base = 0xffff800000000000n; }, EINVAL],
      ['too many LDT entries', (c) => { c.ldt_base = 0x1000n; c.ldt_ents = 8193n; }, EINVAL],
      ['too many GDT entries', (c) => { c.gdt_ents = 7169n; }, EINVAL],
      ['user mode without user page tables', (c) => { c.flags = 0n; }, EINVAL],
      ['DR7 past 32 bits', (c) => { c.set_debugreg_at(7, 1n << 32n); }, EINVAL],
      ['DR0 in the hypervisor\'s area', (c) => { c.set_debugreg_at(0, 0xffff800000001000n); }, EINVAL],
      ['a saved FPU image (cannot be loaded here)', (c) => { c.flags = VGCF_in_kernel | VGCF_i387_valid; }, EOPNOTSUPP],
      ['a root that is not the domain\'s', (c) => { c.set_ctrlreg_at(3, BigInt(g.hv.xen.zero) << 12n); }, EINVAL],
      ['a root mapped writable (it cannot become an L4)', (c) => { c.set_ctrlreg_at(3, BigInt(page(g, 9).mfn) << 12n); }, EINVAL],
      ['a root past the machine', (c) => { c.set_ctrlreg_at(3, BigInt(g.hv.frames.count) << 12n); }, EINVAL],
    ];
    for (const [what, spoil, rc] of bad) {
      const c = VcpuGuestContext.over(ctx.view.buffer.slice(0));
      c.gdt_ents = 16n;
      c.set_gdt_frames_at(0, BigInt(gdt.mfn));
      spoil(c);
      expect(vcpuOp(g, VcpuOp.VCPUOP_initialise, 1, c), what).toBe(rc);
      expect(typeRefs(), what).toEqual(before);
      expect(g.d.vcpus[1]!.initialised, what).toBe(false);
    }
    // A bad user root lets go of the kernel root and the GDT it had taken.
    const c = VcpuGuestContext.over(ctx.view.buffer.slice(0));
    c.gdt_ents = 16n;
    c.set_gdt_frames_at(0, BigInt(gdt.mfn));
    c.set_ctrlreg_at(1, BigInt(page(g, 9).mfn) << 12n);
    expect(vcpuOp(g, VcpuOp.VCPUOP_initialise, 1, c)).toBe(EINVAL);
    expect(typeRefs()).toEqual(before);
    // An unreadable context.
    expect(vcpuOp(g, VcpuOp.VCPUOP_initialise, 1, undefined, 0x7f0000000000n)).toBe(EFAULT);
    // And then a good one still works, with the GDT.
    c.set_ctrlreg_at(1, 0n);
    expect(vcpuOp(g, VcpuOp.VCPUOP_initialise, 1, c)).toBe(0n);
    expect(g.hv.frames.type[gdt.mfn]).toBe(PageType.segDesc);
    expect(auditPageTypes(g.hv.frames, [g.d.auditView()])).toEqual([]);
  });

  it('lets a vCPU set another\'s periodic timer and vcpu_info, but not its single-shot timer', () => {
    g = scriptedGuest('minimal', { vcpus: 2 });
    const arg = page(g, 6);
    const v1 = g.d.vcpus[1]!;
    const period = (ns: bigint) => (c: ScriptedCpu) => c.write(arg.va, new Uint8Array(BigUint64Array.of(ns).buffer));
    expect(call(g, Hypercall.HYPERVISOR_vcpu_op, [BigInt(VcpuOp.VCPUOP_set_periodic_timer), 1n, arg.va], period(5_000_000n))).toBe(0n);
    expect(v1.blocking.timers.period).toBe(5_000_000n);
    expect(call(g, Hypercall.HYPERVISOR_vcpu_op, [BigInt(VcpuOp.VCPUOP_set_periodic_timer), 1n, arg.va], period((1n << 62n) - 1n))).toBe(0n);
    expect(call(g, Hypercall.HYPERVISOR_vcpu_op, [BigInt(VcpuOp.VCPUOP_set_periodic_timer), 1n, arg.va], period(1n << 62n))).toBe(EINVAL);
    expect(vcpuOp(g, VcpuOp.VCPUOP_stop_periodic_timer, 1)).toBe(0n);
    expect(v1.blocking.timers.period).toBe(0n);
    expect(g.vcpu.blocking.timers.period).toBe(10_000_000n); // the caller's own is untouched
    expect(vcpuOp(g, VcpuOp.VCPUOP_set_singleshot_timer, 1)).toBe(EINVAL);
    expect(vcpuOp(g, VcpuOp.VCPUOP_stop_singleshot_timer, 1)).toBe(EINVAL);
    // register_vcpu_info for vCPU 1, from vCPU 0 (as Linux places every vCPU's before bringing them up).
    const info = page(g, 7);
    const reg = (c: ScriptedCpu) => c.write(arg.va, new Uint8Array(new BigUint64Array([BigInt(info.mfn), 64n]).buffer));
    expect(call(g, Hypercall.HYPERVISOR_vcpu_op, [BigInt(VcpuOp.VCPUOP_register_vcpu_info), 1n, arg.va], reg)).toBe(0n);
    expect(v1.info.view.byteOffset % 4096).toBe(64);
    expect(call(g, Hypercall.HYPERVISOR_vcpu_op, [BigInt(VcpuOp.VCPUOP_register_vcpu_info), 1n, arg.va], reg)).toBe(-16n); // EBUSY: once
  });

  it('gives any vCPU\'s runstate, and keeps the copies a guest registers: the runstate at every change, the clock with vcpu_info\'s', () => {
    g = scriptedGuest('minimal', { vcpus: 2 });
    const arg = page(g, 6), area = page(g, 7), timeArea = page(g, 8);
    const u64 = (x: bigint) => (c: ScriptedCpu) => c.write(arg.va, new Uint8Array(BigUint64Array.of(x).buffer));
    const op = (cmd: number, vcpu: bigint, before?: (c: ScriptedCpu) => void) => call(g, Hypercall.HYPERVISOR_vcpu_op, [BigInt(cmd), vcpu, arg.va], before);
    const RUNNABLE = 1, OFFLINE = 3;
    // vCPU 1 is down: offline since it was made.
    expect(op(VcpuOp.VCPUOP_get_runstate_info, 1n)).toBe(0n);
    const info = () => new DataView(g.hv.frames.bytes(arg.mfn).slice(0, 48).buffer);
    expect(info().getInt32(0, true)).toBe(OFFLINE);
    // Its copy, registered from vCPU 0, is written at once and at every change.
    expect(op(VcpuOp.VCPUOP_register_runstate_memory_area, 1n, u64(area.va))).toBe(0n);
    const copy = () => new DataView(g.hv.frames.bytes(area.mfn).slice(0, 48).buffer);
    expect(copy().getInt32(0, true)).toBe(OFFLINE);
    // Later copies go through vCPU 1's own tables: the boot ones here, as Linux gives its CPUs swapper_pg_dir.
    const ctx = VcpuGuestContext.over(new ArrayBuffer(VcpuGuestContext.SIZE));
    ctx.flags = VGCF_in_kernel;
    ctx.set_ctrlreg_at(3, BigInt(g.d.layout.l4Mfn) << 12n);
    expect(vcpuOp(g, VcpuOp.VCPUOP_initialise, 1, ctx)).toBe(0n);
    expect(vcpuOp(g, VcpuOp.VCPUOP_up, 1)).toBe(0n);
    expect(copy().getInt32(0, true)).toBe(RUNNABLE);
    expect(copy().getBigUint64(8, true)).toBe(g.d.vcpus[1]!.runstate.entry);
    // Not in the guest's range: -EFAULT, the old area kept.
    expect(op(VcpuOp.VCPUOP_register_runstate_memory_area, 1n, u64(0xffff800000000000n))).toBe(-14n);
    // The clock's second copy: vcpu_info's time, as it is, and again when it is rewritten.
    expect(op(VcpuOp.VCPUOP_register_vcpu_time_memory_area, 1n, u64(timeArea.va))).toBe(0n);
    const mine = () => Buffer.from(g.hv.frames.bytes(timeArea.mfn).slice(0, 32));
    const theirs = () => Buffer.from(new Uint8Array(g.d.vcpus[1]!.info.view.buffer, g.d.vcpus[1]!.info.view.byteOffset + VcpuInfo.OFFSETS.time, 32));
    expect(mine()).toEqual(theirs());
    expect(mine().readUInt32LE(0) % 2).toBe(0); // version even: not mid-update
    g.d.vcpus[1]!.info.updateTime();
    expect(mine()).toEqual(theirs());
    expect(op(VcpuOp.VCPUOP_register_vcpu_time_memory_area, 1n, u64(0x800000000000n))).toBe(-14n);
  });

  it('reads a second vCPU\'s hypercall arguments through its own tables, and writes nothing through a vCPU that has none', () => {
    g = scriptedGuest('minimal', { vcpus: 2 });
    const v1 = g.d.vcpus[1]!;
    const arg = page(g, 6), timeArea = page(g, 8), info = page(g, 7);
    const u64s = (...x: bigint[]) => (c: ScriptedCpu) => c.write(arg.va, new Uint8Array(BigUint64Array.from(x).buffer));
    // Before vCPU 1 has tables: its time area's later copies are not written (the first goes through the caller's).
    expect(call(g, Hypercall.HYPERVISOR_vcpu_op, [BigInt(VcpuOp.VCPUOP_register_vcpu_time_memory_area), 1n, arg.va], u64s(timeArea.va))).toBe(0n);
    g.hv.frames.bytes(timeArea.mfn).fill(0xee, 0, 32);
    expect(call(g, Hypercall.HYPERVISOR_vcpu_op, [BigInt(VcpuOp.VCPUOP_register_vcpu_info), 1n, arg.va], u64s(BigInt(info.mfn), 0n))).toBe(0n);
    expect(g.hv.frames.bytes(timeArea.mfn)[0]).toBe(0xee);
    // Up on the boot tables, vCPU 1 makes a hypercall with a pointer: read through its tables.
    const ctx = VcpuGuestContext.over(new ArrayBuffer(VcpuGuestContext.SIZE));
    ctx.flags = VGCF_in_kernel | VGCF_online;
    ctx.user_regs.rsp = g.d.layout.stackTop - 0x100n;
    ctx.set_ctrlreg_at(3, BigInt(g.d.layout.l4Mfn) << 12n);
    expect(vcpuOp(g, VcpuOp.VCPUOP_initialise, 1, ctx)).toBe(0n);
    v1.info.updateTime();
    expect(g.hv.frames.bytes(timeArea.mfn)[0]).not.toBe(0xee); // now through its own tables
    const ev1 = v1.engine as ScriptedVcpu;
    ev1.cpu.hypercallPage = g.cpu.hypercallPage;
    const bind = g.d.layout.stackTop + 0x5000n;
    let rc = -1n;
    ev1.script(
      (c) => { c.write(bind, Uint8Array.of(0 /* VIRQ_TIMER */, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0)); return c.hypercall(Hypercall.HYPERVISOR_event_channel_op, [1n /* bind_virq */, bind]); },
      (c) => { rc = c.regs.rax; return stop(); },
    );
    while (ev1.steps.length && g.d.running) v1.handleExit(v1.run());
    expect(rc).toBe(0n);
  });
});
