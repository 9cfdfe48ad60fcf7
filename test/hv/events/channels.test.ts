// Event channels (src/hv/events/channels.ts) on plain memory: two domains' shared_info
// pages, every operation with Xen's errors, and the 2-level pending/mask/
// selector protocol the guest sees. Delivery to a running guest (upcalls on
// resume, block, poll, timers) is tested on KVM with the kit's events and
// pingpong examples (test/hv/examples.test.ts) and in test/hv/sched/sched.test.ts.

import { beforeEach, describe, expect, it } from 'vitest';
import { EventChannels, EventError, NR_EVENT_CHANNELS } from '../../../src/hv/events/channels.js';
import { EvtchnStat } from '../../../src/abi/generated/event-channel.js';

const PENDING = 2048, MASK = 2560, SEL = 8;
let pages: Map<number, Uint8Array>;
let doms: Map<number, EventChannels>;
let notified: string[];

function domain(id: number): EventChannels {
  const page = new Uint8Array(4096);
  page[1] = 1; // vcpu_info[0].evtchn_upcall_mask: events start masked
  pages.set(id, page);
  const ev = new EventChannels(id, page, 1, {
    lookup: (d) => doms.get(d),
    notify: (v) => { notified.push(`${id}:${v}`); },
    vcpuInfo: () => ({ words: new Int32Array(page.buffer), base: 0 }),
  });
  doms.set(id, ev);
  return ev;
}
const bit = (id: number, base: number, b: number) => (pages.get(id)![base + (b >> 3)]! >> (b & 7)) & 1;
const upcallPending = (id: number) => pages.get(id)![0];
function refused(f: () => unknown, errno: number): void {
  let err: unknown;
  try { f(); } catch (e) { err = e; }
  expect(err).toBeInstanceOf(EventError);
  expect((err as EventError).errno).toBe(errno);
}

beforeEach(() => {
  pages = new Map();
  doms = new Map();
  notified = [];
});

describe('event channels', () => {
  it('connects two domains: alloc_unbound, bind_interdomain, send both ways, close returns the peer to unbound', () => {
    const a = domain(1), b = domain(2);
    const pa = a.allocUnbound(2);
    expect(pa).toBe(1); // port 0 is reserved
    expect(a.status(pa)).toEqual({ status: EvtchnStat.EVTCHNSTAT_unbound, vcpu: 0, a: 2, b: 0 });
    const pb = b.bindInterdomain(1, pa);
    expect(bit(2, PENDING, pb)).toBe(1); // a new interdomain port starts pending
    expect(b.status(pb)).toEqual({ status: EvtchnStat.EVTCHNSTAT_interdomain, vcpu: 0, a: 1, b: pa });
    b.send(pb);
    expect(bit(1, PENDING, pa)).toBe(1);
    expect(bit(1, SEL, pa >> 6)).toBe(1);
    expect(upcallPending(1)).toBe(1);
    expect(notified).toContain('1:0');
    a.close(pa);
    expect(b.status(pb)).toEqual({ status: EvtchnStat.EVTCHNSTAT_unbound, vcpu: 0, a: 1, b: 0 });
    b.send(pb); // unbound: dropped, not an error
    refused(() => a.send(pa), 22); // a free port
    refused(() => b.bindInterdomain(1, pa), 22); // no longer left unbound for b
    refused(() => b.bindInterdomain(9, 1), 3); // -ESRCH
    expect(a.status(a.allocUnbound(9))).toMatchObject({ status: EvtchnStat.EVTCHNSTAT_unbound, a: 9 }); // as Xen: the peer need not exist yet
  });

  it('keeps a masked event pending without an upcall, and unmask delivers it', () => {
    const a = domain(1);
    const p = a.bindIpi(0);
    pages.get(1)![MASK + (p >> 3)]! |= 1 << (p & 7); // the guest masks the port
    a.send(p);
    expect(bit(1, PENDING, p)).toBe(1);
    expect(upcallPending(1)).toBe(0);
    expect(notified).toEqual(['1:0']); // pollers are still woken for masked ports
    a.unmask(p);
    expect(bit(1, MASK, p)).toBe(0);
    expect(upcallPending(1)).toBe(1);
    expect(bit(1, SEL, p >> 6)).toBe(1);
    // A second event on a pending port changes nothing and notifies no one.
    notified.length = 0;
    a.send(p);
    expect(notified).toEqual([]);
  });

  it('binds VIRQs per vCPU once, refuses bad ones, and raises them', () => {
    const a = domain(1);
    const t = a.bindVirq(0, 0); // VIRQ_TIMER
    refused(() => a.bindVirq(0, 0), 17); // -EEXIST
    refused(() => a.bindVirq(24, 0), 22); // past NR_VIRQS
    refused(() => a.bindVirq(0, 1), 2); // no vCPU 1: -ENOENT
    refused(() => a.send(t), 22); // VIRQ ports cannot be sent on
    expect(a.raiseVirq(0)).toBe(true);
    expect(a.raiseVirq(2)).toBe(false); // VIRQ_CONSOLE not bound
    expect(bit(1, PENDING, t)).toBe(1);
    expect(a.status(t)).toMatchObject({ status: EvtchnStat.EVTCHNSTAT_virq, a: 0 });
    refused(() => a.bindVcpu(t, 0), 22); // a per-vCPU VIRQ cannot move
    a.close(t);
    expect(a.bindVirq(0, 0)).toBe(t); // lowest free port again
  });

  it('refuses ports out of range or not in use, and runs out of ports with -ENOSPC', () => {
    const a = domain(1);
    for (const p of [-1, NR_EVENT_CHANNELS, 0, 5]) refused(() => a.close(p), 22);
    refused(() => a.unmask(NR_EVENT_CHANNELS), 22);
    refused(() => a.status(NR_EVENT_CHANNELS + 1), 22);
    expect(a.status(0).status).toBe(EvtchnStat.EVTCHNSTAT_closed);
    for (let i = 1; i < NR_EVENT_CHANNELS; i++) a.bindIpi(0);
    refused(() => a.bindIpi(0), 28);
  });

  it('loopback: a domain binds to its own unbound port', () => {
    const a = domain(1);
    const p1 = a.allocUnbound(1);
    const p2 = a.bindInterdomain(1, p1);
    a.send(p1);
    expect(bit(1, PENDING, p2)).toBe(1);
    a.closeAll();
    expect(a.status(p1).status).toBe(EvtchnStat.EVTCHNSTAT_closed);
  });
});
