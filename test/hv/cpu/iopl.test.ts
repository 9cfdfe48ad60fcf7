// The virtual IOPL on the scripted engine (no KVM), as Xen's pv-iopl test
// checks it: cli, sti, in and out fault (#GP(0)) unless the virtual IOPL
// admits the mode; the kernel is virtual CPL 1 (0 with
// VMASST_TYPE_architectural_iopl), user mode 3. Admitted, cli and sti are
// the event mask and ports answer as Xen answers a domU (the PIT's counter
// 2 counts; the rest is absent hardware).

import { afterEach, describe, expect, it } from 'vitest';
import { Hypercall, VmAssist } from '../../../src/abi/generated/xen.js';
import { PhysdevOp } from '../../../src/abi/generated/physdev.js';
import type { ScriptedCpu } from '../../../src/engine/scripted/scripted-cpu.js';
import { SEL } from '../../../src/hv/mm/xen-space.js';
import { scriptedDomain, scriptedGuest, scriptedMachine, trapTable, type ScriptedGuest } from '../../support/scripted.js';
import { VirtualClock } from '../../../src/hv/sched/host-clock.js';
import { PIT_HZ } from '../../../src/hv/devices/pit.js';

let g: ScriptedGuest;
afterEach(() => g?.hv.close());
const stop = () => ({ kind: 'interrupted' as const });
const GP_HANDLER = 0x3f1000n;
const CLI = [0xfa], STI = [0xfb], OUTB_80 = [0xe6, 0x80], INB_40 = [0xe4, 0x40], IN_DX_EAX = [0xed];
const EINVAL = -22n;

function setup(g: ScriptedGuest) {
  g.play(
    trapTable(g, [[13, 0, GP_HANDLER]]),
    (c) => c.hypercall(Hypercall.HYPERVISOR_stack_switch, [BigInt(SEL.DS), g.d.layout.stackTop - 0x600n]),
    stop,
  );
}

function setIopl(g: ScriptedGuest, iopl: number): bigint {
  const at = g.d.layout.stackTop - 0x800n;
  let rc = 0n;
  g.play(
    (c) => { c.write(at, Uint8Array.of(iopl, 0, 0, 0)); return c.hypercall(Hypercall.HYPERVISOR_physdev_op, [BigInt(PhysdevOp.PHYSDEVOP_set_iopl), at]); },
    (c) => { rc = BigInt.asIntN(64, c.regs.rax); return stop(); },
  );
  return rc;
}

/** Runs `bytes` (which raise #GP(0) at CPL 3 on the host) in the current mode: 'ok' when emulated, '#GP' when the guest got it. */
function attempt(g: ScriptedGuest, bytes: number[], regs: Partial<Record<'rax' | 'rdx', bigint>> = {}): 'ok' | '#GP' {
  let outcome: 'ok' | '#GP' = 'ok';
  let rip = 0n, rsp = 0n;
  g.play(
    (c: ScriptedCpu) => { rip = c.regs.rip; rsp = c.regs.rsp; Object.assign(c.regs, regs); return c.faulting(bytes, 13); },
    (c: ScriptedCpu) => {
      if (c.regs.rip === GP_HANDLER) {
        outcome = '#GP';
        expect(c.readU64(c.regs.rsp + 16n)).toBe(0n); // error code 0
        // Back where it was, as the handler's iret would (and to the mode it was in).
        if ((c.readU64(c.regs.rsp + 24n) & 3n) === 3n) g.vcpu.space.toggle();
        c.regs.rsp = rsp;
      } else {
        expect(c.regs.rip).toBe(rip + BigInt(bytes.length));
      }
      c.regs.rip = rip;
      return stop();
    },
  );
  return outcome;
}

function toUser(g: ScriptedGuest) {
  if (!g.vcpu.space.userCr3Mfn) g.vcpu.space.setUserCr3(g.vcpu.space.cr3Mfn);
  g.vcpu.space.toggle();
}

describe('the virtual IOPL (PHYSDEVOP_set_iopl)', () => {
  it('faults cli and out everywhere at IOPL 0, admits the kernel at 1, and user mode only at 3', () => {
    g = scriptedGuest();
    setup(g);
    const want: Record<number, [string, string]> = { 0: ['#GP', '#GP'], 1: ['ok', '#GP'], 3: ['ok', 'ok'] };
    for (const iopl of [0, 1, 3]) {
      expect(setIopl(g, iopl)).toBe(0n);
      for (const insn of [CLI, OUTB_80]) {
        expect(attempt(g, insn), `kernel ${insn} at IOPL ${iopl}`).toBe(want[iopl]![0]);
        toUser(g);
        expect(attempt(g, insn), `user ${insn} at IOPL ${iopl}`).toBe(want[iopl]![1]);
        if (g.vcpu.space.userMode) g.vcpu.space.toggle();
      }
    }
    expect(setIopl(g, 4)).toBe(EINVAL);
    expect(g.vcpu.traps.iopl).toBe(3);
    expect(g.d.running).toBe(true);
  });

  it('makes cli and sti the event mask, and reads of absent ports answer all ones', () => {
    g = scriptedGuest();
    setup(g);
    setIopl(g, 1);
    g.vcpu.info.masked = false;
    expect(attempt(g, CLI)).toBe('ok');
    expect(g.vcpu.info.masked).toBe(true);
    expect(attempt(g, STI)).toBe('ok');
    expect(g.vcpu.info.masked).toBe(false);
    let al = 0n, eax = 0n;
    g.play((c) => { c.regs.rax = 0x1234_5600n; return c.faulting(INB_40, 13); }, (c) => { al = c.regs.rax; return stop(); });
    expect(al).toBe(0x1234_56ffn); // 8 bits read, the rest kept
    g.play((c) => { c.regs.rax = 0xdead_0000_0000_0000n; return c.faulting(IN_DX_EAX, 13); }, (c) => { eax = c.regs.rax; return stop(); });
    expect(eax).toBe(0xffff_ffffn); // 32 bits read, zero-extended
  });
});

describe('ports under the virtual IOPL', () => {
  it('drives the PIT\'s counter 2 with emulated in and out, on the domain\'s clock', () => {
    const clock = new VirtualClock();
    const { engine, hv } = scriptedMachine(1, clock);
    g = scriptedDomain(engine, hv);
    setup(g);
    setIopl(g, 1);
    const out = (port: number, v: number) => expect(attempt(g, [0xe6, port], { rax: BigInt(v) })).toBe('ok');
    const inb = (port: number) => {
      let al = 0n;
      g.play((c) => c.faulting([0xe4, port], 13), (c) => { al = c.regs.rax & 0xffn; return stop(); });
      return Number(al);
    };
    out(0x61, 0x01);
    out(0x43, 0xb0);
    out(0x42, 0xff);
    out(0x42, 0xff);
    inb(0x42);
    expect(inb(0x42)).toBe(0xff);
    clock.advance((256n * 1_000_000_000n) / PIT_HZ + 1n);
    inb(0x42);
    expect(inb(0x42)).toBe(0xfe);
    // Through DX too, and the same device state: port 0x61 reads the gate back.
    let al = 0n;
    g.play((c) => { c.regs.rdx = 0x61n; return c.faulting([0xec], 13); }, (c) => { al = c.regs.rax & 0x1n; return stop(); });
    expect(al).toBe(1n);
    expect(g.d.ports.counts).toEqual({ reads: 5, writes: 4 });
  });
});

describe('VMASST_TYPE_architectural_iopl', () => {
  it('admits the kernel at any IOPL, takes the IOPL from iret frames, and reports it in bounce frames', () => {
    g = scriptedGuest();
    setup(g);
    g.play((c) => c.hypercall(Hypercall.HYPERVISOR_vm_assist, [0n, BigInt(VmAssist.VMASST_TYPE_architectural_iopl)]), (c) => { expect(c.regs.rax).toBe(0n); return stop(); });
    expect(attempt(g, CLI)).toBe('ok'); // vCPL 0 <= IOPL 0
    // An iret to the kernel with IOPL 3 in its rflags sets the virtual IOPL to 3.
    let rip = 0n;
    g.play(
      (c) => {
        rip = c.regs.rip;
        for (const w of [BigInt(SEL.DS), c.regs.rsp, 0x3202n, BigInt(SEL.CS64 & ~3), rip, 0n]) c.push(w);
        return c.jumpTo(c.hypercallPage + 32n * BigInt(Hypercall.HYPERVISOR_iret));
      },
      (c) => { expect(c.regs.rip).toBe(rip); return stop(); },
    );
    expect(g.vcpu.traps.iopl).toBe(3);
    toUser(g);
    expect(attempt(g, CLI)).toBe('ok');
    if (g.vcpu.space.userMode) g.vcpu.space.toggle();
    // A fault now reports IOPL 3 in the saved rflags.
    let saved = 0n;
    g.play((c) => c.faulting([0xf4], 13), (c) => { saved = c.readU64(c.regs.rsp + 40n); return stop(); }); // hlt: a #GP the emulator leaves; rflags after rcx, r11, error code, rip, cs
    expect(saved & 0x3000n).toBe(0x3000n);
  });
});
