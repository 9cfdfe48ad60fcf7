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
