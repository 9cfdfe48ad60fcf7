// Event channels between two domains on the scripted engine (no KVM): one
// domain allocates a port for the other, the other binds it, a send from
// either side sets the peer's pending bit and, when the peer's events are
// unmasked, enters its event callback at its next run.

import { afterEach, describe, expect, it } from 'vitest';
import { Hypercall, SharedInfo, VcpuInfo } from '../../../src/abi/generated/xen.js';
import { EventChannelOp } from '../../../src/abi/generated/event-channel.js';
import { scriptedDomain, scriptedGuest, type ScriptedGuest } from '../../support/scripted.js';

let a: ScriptedGuest;
afterEach(() => a?.hv.close());
const stop = () => ({ kind: 'interrupted' as const });
const EVENT_CB = 0x3f1200n;
const bytes = (...w: number[]) => { const b = new Uint8Array(4 * w.length); const d = new DataView(b.buffer); w.forEach((x, i) => d.setUint32(4 * i, x, true)); return b; };

describe('interdomain event channels', () => {
  it('delivers a send to the peer as an upcall at its next run, and only there', () => {
    a = scriptedGuest();
    const b = scriptedDomain(a.engine, a.hv);
    const argA = a.d.layout.stackTop - 0x800n, argB = b.d.layout.stackTop - 0x800n;
    let portA = 0, portB = 0;
    // A: alloc_unbound { dom: DOMID_SELF, remote_dom: B } -> port.
    a.play(
      (c) => {
        c.write(argA, bytes(0x7ff0 | (b.d.id << 16), 0));
        return c.hypercall(Hypercall.HYPERVISOR_event_channel_op, [BigInt(EventChannelOp.EVTCHNOP_alloc_unbound), argA]);
      },
      (c) => { expect(c.regs.rax).toBe(0n); portA = new DataView(c.read(argA + 4n, 4).buffer).getUint32(0, true); return stop(); },
    );
    // B: its event callback, then bind_interdomain { remote_dom: A, remote_port } -> local port.
    b.play(
      (c) => c.hypercall(Hypercall.HYPERVISOR_set_callbacks, [EVENT_CB, EVENT_CB, EVENT_CB]),
      (c) => {
        c.write(argB, bytes(a.d.id, portA, 0));
        return c.hypercall(Hypercall.HYPERVISOR_event_channel_op, [BigInt(EventChannelOp.EVTCHNOP_bind_interdomain), argB]);
      },
      (c) => { expect(c.regs.rax).toBe(0n); portB = new DataView(c.read(argB + 8n, 4).buffer).getUint32(0, true); b.vcpu.info.masked = false; return stop(); },
    );
    expect(portB).toBeGreaterThan(0);
    // A sends; B is not running: its upcall is pending, delivered when it next runs.
    // Rule (as Xen): binding sets the new port pending. B takes it, as its handler would: the
    // port's pending bit, the selector and the flag cleared.
    expect(b.d.events.isPending(portB)).toBe(true);
    const pending = new DataView(b.d.sharedInfo.buffer, b.d.sharedInfo.byteOffset + SharedInfo.OFFSETS.evtchn_pending);
    pending.setBigUint64(8 * (portB >> 6), pending.getBigUint64(8 * (portB >> 6), true) & ~(1n << BigInt(portB & 63)), true);
    expect(b.d.events.isPending(portB)).toBe(false);
    b.vcpu.info.view.setBigUint64(VcpuInfo.OFFSETS.evtchn_pending_sel, 0n, true);
    b.vcpu.info.view.setUint8(VcpuInfo.OFFSETS.evtchn_upcall_pending, 0);
    let woken = 0;
    b.vcpu.wake = () => { woken++; };
    a.play(
      (c) => { c.write(argA, bytes(portA)); return c.hypercall(Hypercall.HYPERVISOR_event_channel_op, [BigInt(EventChannelOp.EVTCHNOP_send), argA]); },
      (c) => { expect(c.regs.rax).toBe(0n); return stop(); },
    );
    expect(woken).toBe(1);
    expect(b.d.events.isPending(portB)).toBe(true);
    expect(a.d.events.isPending(portA)).toBe(false);
    let ripB = 0n;
    b.play((c) => { ripB = c.regs.rip; return stop(); });
    // Rule: B's next run entered its event callback with events masked.
    expect(ripB).toBe(EVENT_CB);
    expect(b.vcpu.info.masked).toBe(true);
    expect(b.d.exitCounts.get('event upcall')).toBe(1);
  });
});
