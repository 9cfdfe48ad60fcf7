// XenStore on a domain's store ring, on the scripted engine (no KVM): the
// domain's nodes written as Xen's toolstack writes them, start_info naming
// the ring and its event channel, requests taken from the ring when the
// guest notifies (several at once, across the ring's wrap), replies and
// watch events put back and the guest notified, a full reply ring drained
// as the guest reads, Xen's error codes for a broken ring, a reset, and the
// nodes gone when the domain goes.

import { afterEach, describe, expect, it } from 'vitest';
import { Hypercall, StartInfo } from '../../../src/abi/generated/xen.js';
import { EventChannelOp } from '../../../src/abi/generated/event-channel.js';
import { XenstoreDomainInterface, XsdSockmsgType as T } from '../../../src/abi/generated/io-xs-wire.js';
import { scriptedDomain, scriptedMachine, type ScriptedGuest } from '../../support/scripted.js';
import type { Hypervisor } from '../../../src/hv/hypervisor.js';

const O = XenstoreDomainInterface.OFFSETS;
let hv: Hypervisor | undefined;
afterEach(() => { hv?.close(); hv = undefined; });

/** The guest's side of its store ring. */
function guestRing(g: ScriptedGuest) {
  const page = g.d.memory.page(g.d.layout.pfn.store);
  const v = new DataView(page.buffer, page.byteOffset, 4096);
  const put = (bytes: Uint8Array) => {
    let prod = v.getUint32(O.req_prod, true);
    for (const b of bytes) page[O.req + (prod++ % 1024)] = b;
    v.setUint32(O.req_prod, prod >>> 0, true);
  };
  const msg = (type: number, reqId: number, ...parts: string[]) => {
    const payload = Buffer.from(parts.join(''), 'latin1');
    const h = Buffer.alloc(16);
    h.writeUInt32LE(type, 0); h.writeUInt32LE(reqId, 4); h.writeUInt32LE(0, 8); h.writeUInt32LE(payload.length, 12);
    return Buffer.concat([h, payload]);
  };
  /** Takes every whole message out of the reply ring. */
  const take = (): Array<{ type: number; reqId: number; text: string }> => {
    const out = [];
    for (;;) {
      const cons = v.getUint32(O.rsp_cons, true), prod = v.getUint32(O.rsp_prod, true);
      if (((prod - cons) >>> 0) < 16) break;
      const at = (i: number) => page[O.rsp + ((cons + i) % 1024)]!;
      const word = (i: number) => at(i) | (at(i + 1) << 8) | (at(i + 2) << 16) | (at(i + 3) * 2 ** 24);
      const len = word(12);
      if (((prod - cons) >>> 0) < 16 + len) break;
      out.push({ type: word(0), reqId: word(4), text: Buffer.from(Array.from({ length: len }, (_, i) => at(16 + i))).toString('latin1') });
      v.setUint32(O.rsp_cons, (cons + 16 + len) >>> 0, true);
    }
    return out;
  };
  const port = StartInfo.over(g.d.memory.page(g.d.layout.pfn.startInfo).slice().buffer).store_evtchn;
  /** EVTCHNOP_send on the store's port, as xenbus notifies. */
  const notify = () => {
    const arg = g.d.layout.stackTop - 0x800n;
    let rc = 0n;
    g.play(
      (c) => { c.write(arg, Uint8Array.of(port & 0xff, port >> 8, 0, 0)); return c.hypercall(Hypercall.HYPERVISOR_event_channel_op, [BigInt(EventChannelOp.EVTCHNOP_send), arg]); },
      (c) => { rc = c.regs.rax; return { kind: 'interrupted' }; },
    );
    expect(rc).toBe(0n);
  };
  return { v, put, msg, take, notify, port };
}

function machine(n = 1) {
  const m = scriptedMachine(n);
  hv = m.hv;
  return Array.from({ length: n }, (_, i) => scriptedDomain(m.engine, m.hv, 'minimal', { name: `g${i}` }));
}

describe('XenStore on the store ring', () => {
  it('gives a domain its nodes as Xen\'s toolstack does, and answers its requests on the ring, notifying it', () => {
    const [g] = machine() as [ScriptedGuest];
    const r = guestRing(g);
    expect(r.port).toBeGreaterThan(0);
    expect(r.v.getUint32(O.server_features, true)).toBe(3); // reconnection, error
    r.put(r.msg(T.XS_READ, 1, 'name\0'));
    r.put(r.msg(T.XS_READ, 2, 'domid\0'));
    r.put(r.msg(T.XS_DIRECTORY, 3, 'control\0'));
    r.notify();
    expect(r.take()).toEqual([
      { type: T.XS_READ, reqId: 1, text: 'g0' },
      { type: T.XS_READ, reqId: 2, text: String(g.d.id) },
      { type: T.XS_DIRECTORY, reqId: 3, text: 'shutdown\0sysrq\0feature-poweroff\0feature-reboot\0feature-suspend\0feature-s3\0feature-s4\0' },
    ]);
    expect(g.d.events.isPending(r.port)).toBe(true);
    // Its own nodes are its to write; the toolstack's are not.
    r.put(r.msg(T.XS_WRITE, 4, 'control/feature-poweroff\0', '1'));
    r.put(r.msg(T.XS_WRITE, 5, 'name\0', 'other'));
    r.notify();
    expect(r.take().map((m) => [m.type, m.text])).toEqual([[T.XS_WRITE, 'OK\0'], [T.XS_ERROR, 'EACCES\0']]);
    expect(hv!.xenstore.store.dump(`/local/domain/${g.d.id}`)).toMatch(/store = ""  \(n0,r\d+\)\n ring-ref = "\d+"  \(n0,r\d+\)\n port = "\d+"/);
  });

  it('delivers a watch event when the toolstack writes, carries requests across the ring\'s wrap, and drains a full reply ring as the guest reads', () => {
    const [g] = machine() as [ScriptedGuest];
    const r = guestRing(g);
    // Indices near the wrap of 2^32, as a guest may start them anywhere.
    for (const at of [O.req_cons, O.req_prod, O.rsp_cons, O.rsp_prod]) r.v.setUint32(at, 0xfffffff0, true);
    r.put(r.msg(T.XS_WATCH, 1, 'control/shutdown\0', 'tok\0'));
    r.notify();
    expect(r.take().map((m) => m.text)).toEqual(['OK\0', 'control/shutdown\0tok\0']);
    hv!.xenstore.handle({ caller: { domid: 0, privileged: true }, send: () => {} }, T.XS_WRITE, 9, 0, Buffer.from(`/local/domain/${g.d.id}/control/shutdown\0poweroff`));
    expect(r.take()).toEqual([{ type: T.XS_WATCH_EVENT, reqId: 0, text: 'control/shutdown\0tok\0' }]);
    // 40 reads of a 900-byte value: more than the reply ring holds at once.
    r.put(r.msg(T.XS_WRITE, 2, 'data/big\0', 'x'.repeat(900)));
    r.notify();
    expect(r.take()).toEqual([{ type: T.XS_WRITE, reqId: 2, text: 'OK\0' }]);
    for (let i = 0; i < 40; i++) r.put(r.msg(T.XS_READ, 100 + i, 'data/big\0')); // 1000 bytes of requests
    r.notify();
    // Unread replies stop the serving (as Xen's): the requests wait in their ring, not as replies here.
    r.notify();
    expect(((r.v.getUint32(O.req_prod, true) - r.v.getUint32(O.req_cons, true)) >>> 0)).toBeGreaterThan(900);
    const got = r.take();
    expect(got.length).toBeLessThan(40);
    let all = got;
    while (all.length < 40) {
      r.notify(); // the guest read some: more come
      const more = r.take();
      expect(more.length).toBeGreaterThan(0);
      all = all.concat(more);
    }
    expect(all.every((m) => m.text === 'x'.repeat(900))).toBe(true);
    expect(all.map((m) => m.reqId)).toEqual(Array.from({ length: 40 }, (_, i) => 100 + i));
  });

  it('takes a request longer than the ring in pieces, as xenbus writes it', () => {
    const [g] = machine() as [ScriptedGuest];
    const r = guestRing(g);
    const value = 'v'.repeat(2000);
    const m = r.msg(T.XS_WRITE, 3, 'data/long\0', value);
    for (let at = 0; at < m.length; at += 1000) {
      r.put(m.subarray(at, at + 1000)); // as much as the ring has room for, then a notification
      r.notify();
      expect(r.v.getUint32(O.req_cons, true)).toBe(r.v.getUint32(O.req_prod, true)); // taken: room for the rest
    }
    expect(r.take()).toEqual([{ type: T.XS_WRITE, reqId: 3, text: 'OK\0' }]);
    const stored = hv!.xenstore.store.read({ domid: 0, privileged: true }, 0, `/local/domain/${g.d.id}/data/long`);
    expect(Buffer.from(stored).toString()).toBe(value);
  });

  it('stops serving a broken ring with Xen\'s error code, serves it again after a reset, and takes a gone domain\'s nodes out', () => {
    const [g, h] = machine(2) as [ScriptedGuest, ScriptedGuest];
    const r = guestRing(g), rh = guestRing(h);
    rh.put(rh.msg(T.XS_WATCH, 1, '@releaseDomain\0', 'rel\0'));
    rh.notify();
    expect(rh.take().map((m) => m.text)).toEqual(['OK\0', '@releaseDomain\0rel\0']);
    r.v.setUint32(O.req_prod, r.v.getUint32(O.req_cons, true) + 2000, true);
    r.notify();
    expect(r.v.getUint32(O.error, true)).toBe(2); // XENSTORE_ERROR_RINGIDX
    // The guest resets the connection: both rings emptied, serving again.
    r.v.setUint32(O.connection, 1, true);
    r.notify();
    expect([r.v.getUint32(O.connection, true), r.v.getUint32(O.error, true), r.v.getUint32(O.req_prod, true)]).toEqual([0, 0, 0]);
    r.put(r.msg(T.XS_READ, 7, 'name\0'));
    r.notify();
    expect(r.take()).toEqual([{ type: T.XS_READ, reqId: 7, text: 'g0' }]);
    // A payload past XENSTORE_PAYLOAD_MAX.
    const big = r.msg(T.XS_READ, 8, 'x');
    big.writeUInt32LE(5000, 12);
    r.put(big);
    r.notify();
    expect(r.v.getUint32(O.error, true)).toBe(3); // XENSTORE_ERROR_PROTO
    // The domain goes: its nodes with it, and the other domain's watch fires.
    const id = g.d.id;
    hv!.destroyDomain(g.d);
    expect(hv!.xenstore.store.exists(`/local/domain/${id}`)).toBe(false);
    expect(hv!.xenstore.store.exists(`/local/domain/${h.d.id}/name`)).toBe(true);
    expect(rh.take().map((m) => m.text)).toEqual(['@releaseDomain\0rel\0']);
  });
});
