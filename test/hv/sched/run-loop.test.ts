// The run loop on a clock the test controls (VirtualClock) and the scripted
// engine: CPU shares by weight, caps, timer ticks beside busy domains, the
// timer advance, timeouts and aborts. Time moves only when a scripted guest
// runs (a busy guest runs until its engine deadline) or when every loop is
// parked in a wait, so every figure here is exact on any machine, loaded
// or not. (Latencies on real hardware belong in `npm run bench -- time`.)

import { describe, expect, it } from 'vitest';
import { Hypercall, SharedInfo, VcpuInfo, Virq } from '../../../src/abi/generated/xen.js';
import { EventChannelOp } from '../../../src/abi/generated/event-channel.js';
import { SchedOp } from '../../../src/abi/generated/sched.js';
import { VcpuOp } from '../../../src/abi/generated/vcpu.js';
import { VcpuGuestContext } from '../../../src/abi/generated/arch-x86.js';
import type { ScriptedVcpu } from '../../../src/engine/scripted/scripted-engine.js';
import type { Exit } from '../../../src/engine/types.js';
import type { ScriptedCpu } from '../../../src/engine/scripted/scripted-cpu.js';
import { VirtualClock } from '../../../src/hv/sched/host-clock.js';
import { scriptedDomain, scriptedMachine, type ScriptedGuest } from '../../support/scripted.js';

const MS = 1_000_000n;
const EVENT_CB = 0x3f1200n;

/** A guest that computes forever: each run lasts until its engine deadline. */
function busy(g: ScriptedGuest, clock: VirtualClock): void {
  g.ev.loop = (): Exit => {
    const until = g.ev.deadline ?? clock.now() + MS;
    clock.advanceTo(until > clock.now() ? until : clock.now() + 1n);
    return { kind: 'interrupted' };
  };
}

function machine(domains: number) {
  const clock = new VirtualClock();
  const { engine, hv } = scriptedMachine(domains, clock);
  const guests = Array.from({ length: domains }, () => scriptedDomain(engine, hv, 'minimal', {}, false));
  return { clock, hv, guests };
}

describe('the run loop on a virtual clock', () => {
  it('shares the CPU among busy domains by weight, 1:2:4, and ends each at its timeout with its frames returned', async () => {
    const { clock, hv, guests } = machine(3);
    const free = hv.frames.free;
    guests.forEach((g) => busy(g, clock));
    const t0 = clock.now();
    const ends = await clock.settle(Promise.all(guests.map((g, i) => hv.run(g.d, { weight: 256 << i, timeoutMs: 3000 }))));
    for (const e of ends) expect(e).toEqual({ kind: 'killed', reason: 'timed out after 3 s' });
    const cpu = guests.map((g) => Number(g.d.cpuNs));
    const total = cpu.reduce((a, b) => a + b);
    // Rule: the CPU was never idle, and each got its weight's share (within one slice of the largest).
    expect(total).toBeLessThanOrEqual(Number(clock.now() - t0));
    expect(total / Number(clock.now() - t0)).toBeGreaterThan(0.99);
    [1 / 7, 2 / 7, 4 / 7].forEach((want, i) => expect(Math.abs(cpu[i]! / total - want), `share ${i}`).toBeLessThan(0.02));
    expect(hv.frames.free).toBe(free + guests.reduce((n, g) => n + g.d.framesReturned, 0));
  });

  it('shares a domain\'s weight among its busy vCPUs: two beside a domain of one get half the CPU between them', async () => {
    const clock = new VirtualClock();
    const { engine, hv } = scriptedMachine(2, clock);
    const two = scriptedDomain(engine, hv, 'minimal', { vcpus: 2 }, false);
    const one = scriptedDomain(engine, hv, 'minimal', {}, false);
    const ctx = VcpuGuestContext.over(new ArrayBuffer(VcpuGuestContext.SIZE));
    ctx.flags = 4n | 0x20n; // in kernel, online
    ctx.set_ctrlreg_at(3, BigInt(two.d.layout.l4Mfn) << 12n);
    expect(two.d.domainContext().vcpus.initialise(1, ctx)).toBe(0n);
    busy(two, clock);
    busy({ ...two, ev: two.d.vcpus[1]!.engine as ScriptedVcpu }, clock);
    busy(one, clock);
    const t0 = clock.now();
    await clock.settle(Promise.all([hv.run(two.d, { timeoutMs: 2000 }), hv.run(one.d, { timeoutMs: 2000 })]));
    const span = Number(clock.now() - t0);
    const [a, b] = two.d.vcpus.map((v) => Number(v.cpuNs)) as [number, number];
    expect(Math.abs((a + b) / span - 0.5)).toBeLessThan(0.02);
    expect(Math.abs(Number(one.d.cpuNs) / span - 0.5)).toBeLessThan(0.02);
    expect(Math.abs(a - b) / (a + b)).toBeLessThan(0.02); // and the two vCPUs share theirs evenly
  });

  it('keeps a vCPU\'s runstate as Xen does: running while it runs, runnable while another domain does, the guest\'s copy current at every schedule', async () => {
    const clock = new VirtualClock();
    const { engine, hv } = scriptedMachine(2, clock);
    const a = scriptedDomain(engine, hv, 'minimal', {}, false);
    const b = scriptedDomain(engine, hv, 'minimal', {}, false);
    busy(b, clock);
    const arg = a.d.layout.stackTop + 0x1000n, area = a.d.layout.stackTop + 0x2000n;
    a.ev.script(
      (c) => c.hypercall(Hypercall.HYPERVISOR_vm_assist, [0n /* VMASST_CMD_enable */, 5n /* runstate_update_flag */]),
      (c) => { c.write(arg, new Uint8Array(BigUint64Array.of(area).buffer)); return c.hypercall(Hypercall.HYPERVISOR_vcpu_op, [BigInt(VcpuOp.VCPUOP_register_runstate_memory_area), 0n, arg]); },
    );
    // As busy(), but each run first reads the copy, as a guest's steal clock would.
    const seen: Array<{ state: number; entry: bigint; runnable: bigint; now: bigint }> = [];
    a.ev.loop = (c): Exit => {
      const v = new DataView(c.read(area, 48).buffer);
      seen.push({ state: v.getInt32(0, true), entry: v.getBigUint64(8, true), runnable: v.getBigUint64(24, true), now: a.d.clock.now() });
      const until = a.ev.deadline ?? clock.now() + MS;
      clock.advanceTo(until > clock.now() ? until : clock.now() + 1n);
      return { kind: 'interrupted' };
    };
    await clock.settle(Promise.all([hv.run(a.d, { timeoutMs: 500 }), hv.run(b.d, { timeoutMs: 500 })]));
    expect(seen.length).toBeGreaterThan(10);
    for (const s of seen) {
      // Rule: whenever it runs, its copy says running, since a moment ago, with no update in progress.
      expect(s.state).toBe(0);
      expect(s.entry >> 63n).toBe(0n);
      expect(s.entry <= s.now).toBe(true);
    }
    // Runnable time grows while the other domain runs, and accounts for what a did not get.
    const rs = a.vcpu.runstate;
    expect(seen.at(-1)!.runnable).toBeGreaterThan(seen[1]!.runnable);
    const [running, runnable] = [Number(rs.time[0]), Number(rs.time[1])];
    expect(Math.abs(running - Number(a.d.cpuNs)) / Number(a.d.cpuNs)).toBeLessThan(0.01);
    expect(Math.abs(runnable - Number(b.d.cpuNs)) / Number(b.d.cpuNs)).toBeLessThan(0.05);
    expect(rs.state).toBe(3); // offline once its domain is gone
  });

  it('holds a capped domain to its cap beside an uncapped one', async () => {
    const { clock, hv, guests } = machine(2);
    guests.forEach((g) => busy(g, clock));
    const t0 = clock.now();
    await clock.settle(Promise.all([hv.run(guests[0]!.d, { cap: 25, timeoutMs: 1000 }), hv.run(guests[1]!.d, { timeoutMs: 1000 })]));
    const span = Number(clock.now() - t0);
    expect(Number(guests[0]!.d.cpuNs) / span).toBeCloseTo(0.25, 1);
    expect(Number(guests[0]!.d.cpuNs) / span).toBeLessThanOrEqual(0.26);
    expect(Number(guests[1]!.d.cpuNs) / span).toBeGreaterThan(0.7);
  });

  it('wakes a blocked domain at each tick of its periodic timer beside two busy domains: none lost, none early', async () => {
    const { clock, hv, guests } = machine(3);
    const [timer, ...others] = guests as [ScriptedGuest, ScriptedGuest, ScriptedGuest];
    others.forEach((g) => busy(g, clock));
    const arg = timer.d.layout.stackTop - 0x800n;
    const ticks: bigint[] = [];
    let port = 0;
    const TICKS = 100;
    // Xen starts every vCPU with a 10 ms periodic timer; the guest binds VIRQ_TIMER, unmasks, and blocks.
    const block = (c: ScriptedCpu) => c.hypercall(Hypercall.HYPERVISOR_sched_op, [BigInt(SchedOp.SCHEDOP_block), 0n]);
    timer.ev.script(
      (c) => c.hypercall(Hypercall.HYPERVISOR_set_callbacks, [EVENT_CB, EVENT_CB, EVENT_CB]),
      (c) => {
        c.write(arg, Uint8Array.of(Virq.VIRQ_TIMER, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0));
        return c.hypercall(Hypercall.HYPERVISOR_event_channel_op, [BigInt(EventChannelOp.EVTCHNOP_bind_virq), arg]);
      },
      (c) => { port = new DataView(c.read(arg + 8n, 4).buffer).getUint32(0, true); rsp = c.regs.rsp; start = timer.vcpu.blocking.timers.next; return block(c); },
    );
    let rsp = 0n;
    // The first tick the guest can take: the timer's next expiry when it first blocks.
    let start = 0n;
    // The handler: at EVENT_CB, note the time, take the event (as a guest's handler does), and block again.
    timer.ev.loop = (c) => {
      if (c.regs.rip === EVENT_CB) {
        ticks.push(timer.d.clock.now());
        const info = timer.vcpu.info.view;
        info.setUint8(VcpuInfo.OFFSETS.evtchn_upcall_pending, 0);
        info.setBigUint64(VcpuInfo.OFFSETS.evtchn_pending_sel, 0n, true);
        const pending = new DataView(timer.d.sharedInfo.buffer, timer.d.sharedInfo.byteOffset + SharedInfo.OFFSETS.evtchn_pending);
        pending.setBigUint64(8 * (port >> 6), pending.getBigUint64(8 * (port >> 6), true) & ~(1n << BigInt(port & 63)), true);
        timer.vcpu.info.masked = false;
        // Back where it blocked, the bounce frame popped (as its iret would).
        c.regs.rip = 0x100000n;
        c.regs.rsp = rsp;
        if (ticks.length === TICKS) return c.hypercall(Hypercall.HYPERVISOR_sched_op, [BigInt(SchedOp.SCHEDOP_shutdown), arg], 'page');
      }
      return block(c);
    };
    timer.cpu.poke(arg, new Uint8Array(4)); // SCHEDOP_shutdown's reason: poweroff (0)
    const abort = new AbortController();
    const runs = others.map((g) => hv.run(g.d, { signal: abort.signal }));
    const end = await clock.settle(hv.run(timer.d));
    abort.abort('done');
    await clock.settle(Promise.all(runs));
    expect(end).toEqual({ kind: 'shutdown', reason: 0, reasonName: 'poweroff' });
    // Rule: tick k comes at or after start + k periods, and before the next period: none early, none lost.
    expect(ticks).toHaveLength(TICKS);
    ticks.forEach((t, k) => {
      const due = start + BigInt(k) * 10n * MS;
      expect(t >= due, `tick ${k} at ${t}, due ${due}`).toBe(true);
      expect(t < due + 10n * MS, `tick ${k} at ${t}, due ${due}`).toBe(true);
    });
    // The timer advance took them: the vCPU waited for each deadline in its own context.
    expect(timer.d.exitCounts.get('timer wait in guest')).toBeGreaterThan(TICKS / 2);
  });

  it('runs a second vCPU once vCPU 0 brings it up, from the state VCPUOP_initialise gave it, and never while it is down', async () => {
    const clock = new VirtualClock();
    const { engine, hv } = scriptedMachine(1, clock);
    const g = scriptedDomain(engine, hv, 'minimal', { vcpus: 2 }, false);
    const v1 = g.d.vcpus[1]!;
    const ev1 = v1.engine as ScriptedVcpu;
    ev1.cpu.hypercallPage = g.cpu.hypercallPage;
    const ENTRY = 0x100040n;
    const stackTop = g.d.layout.stackTop + 0x3000n; // a page of the slack after the boot stack
    const ctxAt = g.d.layout.stackTop + 0x4000n;
    const vcpuOp = (c: ScriptedCpu, cmd: number, vcpu: number, arg = 0n) => c.hypercall(Hypercall.HYPERVISOR_vcpu_op, [BigInt(cmd), BigInt(vcpu), arg]);
    const seen: string[] = [];
    // vCPU 1: where it starts, then it takes itself down; it must never run again.
    ev1.script((c) => {
      seen.push(`v1 at ${c.regs.rip.toString(16)} rsp ${c.regs.rsp.toString(16)} rdi ${c.regs.rdi}`);
      return vcpuOp(c, VcpuOp.VCPUOP_down, 1);
    });
    ev1.loop = () => { throw new Error('vCPU 1 ran while down'); };
    // vCPU 0: initialise vCPU 1 on the boot page tables, bring it up, then yield until it has gone down again.
    g.ev.script(
      (c) => {
        const ctx = VcpuGuestContext.over(new ArrayBuffer(VcpuGuestContext.SIZE));
        ctx.flags = 4n; // VGCF_in_kernel
        ctx.user_regs.rip = ENTRY;
        ctx.user_regs.rsp = stackTop;
        ctx.user_regs.rdi = 7n;
        ctx.set_ctrlreg_at(3, BigInt(g.d.layout.l4Mfn) << 12n);
        c.write(ctxAt, new Uint8Array(ctx.view.buffer));
        return vcpuOp(c, VcpuOp.VCPUOP_initialise, 1, ctxAt);
      },
      (c) => { seen.push(`initialise ${BigInt.asIntN(64, c.regs.rax)}`); return vcpuOp(c, VcpuOp.VCPUOP_up, 1); },
    );
    g.ev.loop = (c) => {
      if (seen.length === 2 && !v1.online) {
        c.write(ctxAt, new Uint8Array(4)); // SCHEDOP_shutdown's reason: poweroff
        return c.hypercall(Hypercall.HYPERVISOR_sched_op, [BigInt(SchedOp.SCHEDOP_shutdown), ctxAt]);
      }
      return c.hypercall(Hypercall.HYPERVISOR_sched_op, [BigInt(SchedOp.SCHEDOP_yield), 0n]);
    };
    const end = await clock.settle(hv.run(g.d, { timeoutMs: 1000 }));
    expect(seen).toEqual(['initialise 0', `v1 at ${ENTRY.toString(16)} rsp ${stackTop.toString(16)} rdi 7`]);
    expect(end).toEqual({ kind: 'shutdown', reason: 0, reasonName: 'poweroff' });
    expect(g.d.cpuNs).toBe(g.d.vcpus[0]!.cpuNs + v1.cpuNs);
  });

  it('refuses bad weights and caps before running, and kills a domain when its run is aborted', async () => {
    const { clock, hv, guests } = machine(2);
    await expect(hv.run(guests[0]!.d, { weight: 0 })).rejects.toThrow(/weight 0/);
    await expect(hv.run(guests[0]!.d, { cap: 101 })).rejects.toThrow(/cap 101/);
    busy(guests[1]!, clock);
    const abort = new AbortController();
    const run = hv.run(guests[1]!.d, { signal: abort.signal });
    clock.advance(5n * MS);
    abort.abort('stop now');
    expect(await clock.settle(run)).toEqual({ kind: 'killed', reason: 'stop now' });
  });
});
