// Xen's exact answers where the host's would differ, on the scripted
// engine (no KVM), as Xen's test framework checks them: a kernel syscall
// returning to a non-canonical rip (XSA-7), a non-canonical access through
// an ignored %ss override (memop-seg), and the FIFO event-channel ABI not
// offered (XSA-188).

import { afterEach, describe, expect, it } from 'vitest';
import { Hypercall } from '../../../src/abi/generated/xen.js';
import { EventChannelOp } from '../../../src/abi/generated/event-channel.js';
import { scriptedGuest, trapTable, type ScriptedGuest } from '../../support/scripted.js';

let g: ScriptedGuest;
afterEach(() => g?.hv.close());
const stop = () => ({ kind: 'interrupted' as const });
const HANDLER = 0x3f1000n;
const NON_CANONICAL = 0x0000_8000_0000_0000n;

const handlers = (g: ScriptedGuest, vectors: number[]) => trapTable(g, vectors.map((v) => [v, 0, HANDLER + BigInt(v * 0x10)] as const));

describe('Xen\'s answers', () => {
  it('gives the guest #GP(0) at the non-canonical rip a kernel syscall returns to (XSA-7), after the hypercall', () => {
    g = scriptedGuest();
    let rip = 0n;
    g.play(
      handlers(g, [13]),
      (c) => {
        // A syscall whose return address is the first non-canonical one; XENVER_version is the hypercall.
        rip = NON_CANONICAL - 2n;
        c.regs.rip = rip;
        c.regs.rax = BigInt(Hypercall.HYPERVISOR_xen_version);
        c.regs.rdi = 0n;
        return c.syscall();
      },
      (c) => {
        // Rule: the #GP handler runs, its frame holding the non-canonical rip and error code 0.
        expect(c.regs.rip).toBe(HANDLER + 13n * 0x10n);
        expect(c.readU64(c.regs.rsp + 16n)).toBe(0n);
        expect(c.readU64(c.regs.rsp + 24n)).toBe(NON_CANONICAL);
        return stop();
      },
    );
    expect(g.d.running).toBe(true);
  });

  it('turns the host\'s #SS for an ignored %ss override into #GP(0), and keeps #SS for rsp- and rbp-based operands (memop-seg)', () => {
    g = scriptedGuest();
    g.play(handlers(g, [12, 13]), stop);
    const fault = (bytes: number[]) => {
      let vector = 0;
      g.play((c) => c.faulting(bytes, 12, 0n), (c) => { vector = Number((c.regs.rip - HANDLER) / 0x10n); c.regs.rsp += 8n * 8n; return stop(); });
      return vector;
    };
    expect(fault([0x36, 0x48, 0x8b, 0x00])).toBe(13);                    // mov %ss:(%rax),%rax
    expect(fault([0x36, 0x48, 0x8b, 0x04, 0x25, 0, 0, 0, 0x80])).toBe(13); // mov %ss:abs,%rax
    expect(fault([0x36, 0x48, 0x8b, 0x04, 0x24])).toBe(12);              // mov %ss:(%rsp),%rax
    expect(fault([0x48, 0x8b, 0x45, 0x00])).toBe(12);                    // mov (%rbp),%rax
  });

  it('answers EVTCHNOP_init_control as Xen (a bad frame is -EINVAL), and does not offer the FIFO ABI (XSA-188)', () => {
    g = scriptedGuest();
    const at = g.d.layout.stackTop - 0x800n;
    const init = (gfn: bigint, offset: number, vcpu: number) => {
      let rc = 0n;
      g.play(
        (c) => {
          const b = new Uint8Array(24);
          const d = new DataView(b.buffer);
          d.setBigUint64(0, BigInt.asUintN(64, gfn), true);
          d.setUint32(8, offset, true);
          d.setUint32(12, vcpu, true);
          c.write(at, b);
          return c.hypercall(Hypercall.HYPERVISOR_event_channel_op, [BigInt(EventChannelOp.EVTCHNOP_init_control), at]);
        },
        (c) => { rc = BigInt.asIntN(64, c.regs.rax); return stop(); },
      );
      return rc;
    };
    const mine = BigInt(g.d.memory.mfnOf(g.d.layout.pfn.stack + 4));
    expect(init(-2n, 0, 0)).toBe(-22n);                       // XSA-188's bad GFN: -EINVAL
    expect(init(mine, 0, 1)).toBe(-2n);                       // no such vCPU: -ENOENT
    expect(init(mine, 4096 - 64, 0)).toBe(-22n);              // crosses the page
    expect(init(mine, 4, 0)).toBe(-22n);                      // misaligned
    expect(init(BigInt(g.d.layout.l4Mfn), 0, 0)).toBe(-22n);  // a page table
    expect(init(mine, 0, 0)).toBe(-38n);                      // a request Xen would carry out: not offered
    let rc = 0n;
    g.play((c) => c.hypercall(Hypercall.HYPERVISOR_event_channel_op, [BigInt(EventChannelOp.EVTCHNOP_expand_array), at]), (c) => { rc = BigInt.asIntN(64, c.regs.rax); return stop(); });
    expect(rc).toBe(-95n);                                    // -EOPNOTSUPP
  });

  it('offers the XENFEAT bits of Xen\'s PV domU that paravane implements (Linux needs 5 and 7), submap 0 only', () => {
    g = scriptedGuest();
    const at = g.d.layout.stackTop - 0x800n;
    const features = (idx: number) => {
      let rc = 0n, map = 0;
      g.play(
        (c) => { c.write(at, Uint8Array.of(idx, 0, 0, 0, 0xff, 0xff, 0xff, 0xff)); return c.hypercall(Hypercall.HYPERVISOR_xen_version, [6n /* XENVER_get_features */, at]); },
        (c) => { rc = BigInt.asIntN(64, c.regs.rax); map = new DataView(c.read(at + 4n, 4).buffer).getUint32(0, true); return stop(); },
      );
      return { rc, map };
    };
    // mmu_pt_update_preserve_ad (5), highmem_assist (6), gnttab_map_avail_bits (7).
    expect(features(0)).toEqual({ rc: 0n, map: (1 << 5) | (1 << 6) | (1 << 7) });
    expect(features(1).rc).toBe(-22n);
  });
});
