// Debug registers on the scripted engine (no KVM), as Xen gives them to a
// PV guest and its debug-regs test checks them: set_debugreg and
// get_debugreg with Xen's checks (no breakpoint in the hypervisor's area,
// DR7's general-detect bit refused, reserved bits kept, I/O breakpoints
// only with CR4.DE, DR4/DR5 as DR6/DR7 unless CR4.DE), the same through
// `mov` to and from DRn, what reaches the engine, and DR6 after a #DB.

import { afterEach, describe, expect, it } from 'vitest';
import { Hypercall } from '../../../src/abi/generated/xen.js';
import { scriptedGuest, trapTable, type ScriptedGuest } from '../../support/scripted.js';

let g: ScriptedGuest;
afterEach(() => g?.hv.close());
const stop = () => ({ kind: 'interrupted' as const });
const EPERM = -1n, EINVAL = -22n, ENODEV = -19n;
const HANDLER = 0x3f1000n;

function hc(g: ScriptedGuest, nr: number, args: bigint[]): bigint {
  let rc = 0n;
  g.play((c) => c.hypercall(nr, args), (c) => { rc = c.regs.rax; return stop(); });
  return BigInt.asIntN(64, rc) < 0n && BigInt.asIntN(64, rc) > -4096n ? BigInt.asIntN(64, rc) : rc;
}
const set = (g: ScriptedGuest, reg: number, v: bigint) => hc(g, Hypercall.HYPERVISOR_set_debugreg, [BigInt(reg), v]);
const get = (g: ScriptedGuest, reg: number) => hc(g, Hypercall.HYPERVISOR_get_debugreg, [BigInt(reg)]);

describe('debug registers', () => {
  it('takes breakpoint addresses of the guest\'s only, and loads them into the engine', () => {
    g = scriptedGuest();
    expect(set(g, 0, 0x400000n)).toBe(0n);
    expect(get(g, 0)).toBe(0x400000n);
    expect(g.ev.getDebugRegisters().db[0]).toBe(0x400000n);
    for (const bad of [0xffff800000001000n, 0xffff87fffffff000n, 0x0000800000000000n]) expect(set(g, 1, bad), `address ${bad.toString(16)}`).toBe(EPERM);
    expect(get(g, 1)).toBe(0n);
    expect(set(g, 8, 0n)).toBe(EINVAL);
    expect(get(g, 8)).toBe(EINVAL);
  });

  it('keeps DR6 and DR7 reserved bits, refuses general detect, and I/O breakpoints without CR4.DE', () => {
    g = scriptedGuest();
    expect(set(g, 6, 0n)).toBe(0n);
    expect(get(g, 6)).toBe(0xffff0ff0n);
    expect(set(g, 7, 1n << 13n)).toBe(EPERM); // GD
    expect(set(g, 7, 0xffff_ffff_ffff_d8ffn)).toBe(0n);
    expect(get(g, 7)).toBe(0xffff_04ffn); // bits 11, 12, 14, 15 and 32-63 cleared, 10 set
    // An I/O breakpoint (RW0 = 10b) enabled by L0: needs CR4.DE.
    expect(set(g, 7, 0x2_0001n)).toBe(EPERM);
    // DR4 and DR5 are DR6 and DR7 while CR4.DE is clear.
    expect(get(g, 5)).toBe(get(g, 7));
    g.vcpu.traps.cr4 |= 0x8n; // CR4.DE, as `mov %cr4` would set it
    expect(set(g, 7, 0x2_0001n)).toBe(0n);
    expect(get(g, 7) & 0x3_0003n).toBe(0x2_0001n);        // the guest sees its I/O breakpoint
    expect(g.ev.getDebugRegisters().dr7 & 3n).toBe(0n);  // the hardware is not given it
    expect(get(g, 4)).toBe(ENODEV);
    expect(set(g, 5, 0n)).toBe(ENODEV);
  });

  it('emulates mov to and from DRn with the same checks, #GP for a refused value', () => {
    g = scriptedGuest();
    g.play(trapTable(g, [[13, 0, HANDLER]]), stop);
    let rip = 0n;
    g.play((c) => { rip = c.regs.rip; c.regs.rax = 0x500000n; return c.faulting([0x0f, 0x23, 0xc0], 13); }, (c) => { expect(c.regs.rip).toBe(rip + 3n); return stop(); });
    expect(get(g, 0)).toBe(0x500000n);
    g.play((c) => c.faulting([0x0f, 0x21, 0xf0], 13), (c) => { expect(c.regs.rax).toBe(0xffff0ff0n); return stop(); }); // mov %dr6,%rax
    g.play((c) => { c.regs.rax = 0xffff800000000000n; return c.faulting([0x0f, 0x23, 0xc0], 13); }, (c) => { expect(c.regs.rip).toBe(HANDLER); return stop(); });
    expect(get(g, 0)).toBe(0x500000n);
  });

  it('gives the guest\'s #DB handler the hardware\'s DR6 through get_debugreg, and resets the hardware\'s', () => {
    g = scriptedGuest();
    g.play(trapTable(g, [[1, 0, HANDLER]]), stop);
    g.ev.debug.dr6 = 0xffff0ff1n; // breakpoint 0 hit
    g.play((c) => c.raise(1), (c) => { expect(c.regs.rip).toBe(HANDLER); return stop(); });
    expect(get(g, 6) & 1n).toBe(1n);
    expect(g.ev.getDebugRegisters().dr6).toBe(0xffff0ff0n);
  });
});
