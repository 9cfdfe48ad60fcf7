// The virtual trap machinery on the scripted engine (no KVM): exceptions
// bounced to the guest's handlers with Xen's frame, the iret hypercall
// returning from them, event upcalls, guest user mode (its system calls,
// its refused hypercalls, the mode switches), as a guest written for Xen
// sees them.

import { afterEach, describe, expect, it } from 'vitest';
import { Hypercall, MmuextCmd, VcpuInfo, Virq } from '../../../src/abi/generated/xen.js';
import { EventChannelOp } from '../../../src/abi/generated/event-channel.js';
import type { ScriptedCpu } from '../../../src/engine/scripted/scripted-cpu.js';
import { LSTAR_VIRT, SEL, STUBS_VIRT } from '../../../src/hv/mm/xen-space.js';
import { ScriptedEngine } from '../../../src/engine/scripted/scripted-engine.js';
import { Hypervisor, machineBytesFor } from '../../../src/hv/hypervisor.js';
import { scriptedDomain, scriptedGuest, trapTable, type ScriptedGuest } from '../../support/scripted.js';

let g: ScriptedGuest;
afterEach(() => g?.hv.close());

// Handler addresses: guest code the script plays (away from the hypercall page, which the CPU runs).
const HANDLER_UD = 0x3f1000n, HANDLER_PF = 0x3f1100n, EVENT_CB = 0x3f1200n, SYSCALL_CB = 0x3f1300n, FAILSAFE = 0x3f1400n;
const ARG = (g: ScriptedGuest) => g.d.layout.stackTop - 0x800n;
const stop = () => ({ kind: 'interrupted' as const });
const u64s = (...v: bigint[]) => { const b = new Uint8Array(8 * v.length); const d = new DataView(b.buffer); v.forEach((x, i) => d.setBigUint64(8 * i, BigInt.asUintN(64, x), true)); return b; };

/** The guest handler's return: pop rcx and r11 from the bounce frame, push flags 0, jump to the iret slot. */
function iretFromHandler(g: ScriptedGuest, c: ScriptedCpu) {
  c.regs.rcx = c.pop();
  c.regs.r11 = c.pop();
  c.push(0n);
  return c.jumpTo(c.hypercallPage + 32n * BigInt(Hypercall.HYPERVISOR_iret));
}

describe('exceptions bounced to the guest', () => {
  it('delivers #UD to its handler with Xen\'s frame, and iret resumes the interrupted state', () => {
    g = scriptedGuest();
    let faultRip = 0n, faultRsp = 0n;
    g.play(
      trapTable(g, [[6, 0, HANDLER_UD], [14, 0, HANDLER_PF]]),
      (c) => {
        expect(c.regs.rax).toBe(0n);
        faultRip = c.regs.rip;
        faultRsp = c.regs.rsp;
        c.regs.rcx = 0x1111n;
        c.regs.r11 = 0x2222n;
        return c.raise(6);
      },
      (c) => {
        // Rule: the handler runs on the interrupted kernel stack, 16-byte aligned,
        // under a frame of rcx, r11, rip, cs (RPL 0: kernel mode), rflags, rsp, ss.
        expect(c.regs.rip).toBe(HANDLER_UD);
        expect(c.regs.rsp).toBe((faultRsp & ~0xfn) - 7n * 8n);
        const f = [0, 1, 2, 3, 4, 5, 6].map((i) => c.readU64(c.regs.rsp + BigInt(8 * i)));
        expect(f[0]).toBe(0x1111n);
        expect(f[1]).toBe(0x2222n);
        expect(f[2]).toBe(faultRip);
        expect(f[3]! & 0xffffn).toBe(BigInt(SEL.CS64 & ~3));
        expect(f[5]).toBe(faultRsp);
        expect(f[6]).toBe(BigInt(SEL.DS));
        c.regs.rcx = 0n;
        return iretFromHandler(g, c);
      },
      (c) => {
        // Rule: iret restores rip, rsp, rcx and r11 from the frame.
        expect(c.regs.rip).toBe(faultRip);
        expect(c.regs.rsp).toBe(faultRsp);
        expect(c.regs.rcx).toBe(0x1111n);
        expect(c.regs.r11).toBe(0x2222n);
        return stop();
      },
    );
    expect(g.d.running).toBe(true);
    expect(g.d.exitCounts.get('exception delivered')).toBe(1);
  });

  it('gives a #PF handler the address in vcpu_info.arch.cr2 and the error code without U in kernel mode', () => {
    g = scriptedGuest();
    const unmapped = 0x7f0000000000n;
    g.play(
      trapTable(g, [[14, 0, HANDLER_PF]]),
      (c) => c.store(unmapped, new Uint8Array(8), stop),
      (c) => {
        expect(c.regs.rip).toBe(HANDLER_PF);
        expect(c.readU64(c.regs.rsp + 16n)).toBe(6n & ~4n | 2n); // write, not present, kernel mode
        return stop();
      },
    );
    // Rule: vcpu_info.arch.cr2 holds the faulting address.
    expect(g.vcpu.info.view.getBigUint64(VcpuInfo.OFFSETS.arch, true)).toBe(unmapped);
  });

  it('crashes the domain alone, with the reason, when no handler is registered, and returns every frame', () => {
    g = scriptedGuest();
    const free = g.hv.frames.free;
    g.play((c) => c.raise(13, 0x18n));
    expect(g.d.end).toEqual({ kind: 'crashed', reason: expect.stringMatching(/unhandled #GP general protection \(vector 13, error code 0x18\).*no trap handler/) });
    const n = g.hv.destroyDomain(g.d);
    expect(g.hv.frames.free).toBe(free + n);
  });

  it('delivers `int $n` as vector n when its DPL admits kernel mode, else #GP((n << 3) | 2)', () => {
    g = scriptedGuest();
    let rip = 0n;
    g.play(
      trapTable(g, [[0x80, 3, HANDLER_UD], [0x81, 0, HANDLER_PF], [13, 0, FAILSAFE]]),
      (c) => { rip = c.regs.rip; return c.softwareInterrupt(0x80); },
      (c) => {
        expect(c.regs.rip).toBe(HANDLER_UD);
        expect(c.readU64(c.regs.rsp + 16n)).toBe(rip + 2n); // a trap: returns after the int
        c.regs.rip = rip + 0x40n;
        return c.softwareInterrupt(0x81);
      },
      (c) => {
        expect(c.regs.rip).toBe(FAILSAFE);
        expect(c.readU64(c.regs.rsp + 16n)).toBe(BigInt((0x81 << 3) | 2));
        return stop();
      },
    );
  });
});

describe('event upcalls', () => {
  it('enters the event callback with events masked when an event is pending and unmasked', () => {
    g = scriptedGuest();
    let rip = 0n;
    g.play(
      (c) => c.hypercall(Hypercall.HYPERVISOR_set_callbacks, [EVENT_CB, FAILSAFE, SYSCALL_CB]),
      (c) => {
        const at = ARG(g);
        c.write(at, new Uint8Array(12).fill(0));
        new DataView(c.read(at, 12).buffer);
        c.write(at, Uint8Array.of(Virq.VIRQ_TIMER, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0));
        return c.hypercall(Hypercall.HYPERVISOR_event_channel_op, [BigInt(EventChannelOp.EVTCHNOP_bind_virq), at]);
      },
      (c) => {
        expect(c.regs.rax).toBe(0n);
        g.vcpu.info.masked = false;
        rip = c.regs.rip;
        // The host raises the VIRQ (as the timer would) while the guest runs: at the next entry it is delivered.
        g.d.events.raiseVirq(Virq.VIRQ_TIMER, 0);
        return stop();
      },
      (c) => {
        // Rule: rip is the event callback, the frame holds the interrupted rip, events are now masked.
        expect(c.regs.rip).toBe(EVENT_CB);
        expect(c.readU64(c.regs.rsp + 16n)).toBe(rip);
        expect(g.vcpu.info.masked).toBe(true);
        return stop();
      },
    );
    expect(g.d.exitCounts.get('event upcall')).toBe(1);
  });
});

describe('an upcall and the hypervisor\'s own stubs', () => {
  /** Callbacks set, VIRQ_TIMER bound, events unmasked. */
  const ready = (g: ScriptedGuest) => [
    (c: ScriptedCpu) => c.hypercall(Hypercall.HYPERVISOR_set_callbacks, [EVENT_CB, FAILSAFE, SYSCALL_CB]),
    (c: ScriptedCpu) => {
      c.write(ARG(g), Uint8Array.of(Virq.VIRQ_TIMER, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0));
      return c.hypercall(Hypercall.HYPERVISOR_event_channel_op, [BigInt(EventChannelOp.EVTCHNOP_bind_virq), ARG(g)]);
    },
    (c: ScriptedCpu) => { g.vcpu.info.masked = false; return stop(); },
  ];

  it('takes a rip the guest put in the stubs itself (by iret, at CPL 3) as the guest\'s: the upcall goes into its registers', () => {
    g = scriptedGuest();
    const forged = STUBS_VIRT + 1n;
    g.play(
      ...ready(g),
      (c) => {
        g.d.events.raiseVirq(Virq.VIRQ_TIMER, 0);
        for (const w of [BigInt(SEL.DS), c.regs.rsp, 0x202n, BigInt(SEL.CS64 & ~3), forged, 0n]) c.push(w);
        return c.jumpTo(c.hypercallPage + 32n * BigInt(Hypercall.HYPERVISOR_iret));
      },
      (c) => {
        // Rule: a hostile rip makes nothing throw in the core; the callback's frame holds it (its fetch would fault).
        expect(c.regs.rip).toBe(EVENT_CB);
        expect(c.readU64(c.regs.rsp + 16n)).toBe(forged);
        return stop();
      },
    );
    expect(g.d.running).toBe(true);
    expect(g.d.exitCounts.get('event upcall')).toBe(1);
  });

  it('puts no upcall into a vCPU stopped at CPL 0 in the syscall stub (where syscall enters ring 0): the refusal comes first', () => {
    const engine = new ScriptedEngine();
    const hv = new Hypervisor(engine, { memoryBytes: machineBytesFor(4 << 20), syscallAtCpl3: false, slot256Usable: false });
    g = scriptedDomain(engine, hv);
    g.play(
      ...ready(g),
      (c) => {
        g.d.events.raiseVirq(Virq.VIRQ_TIMER, 0);
        // A syscall took the vCPU into ring 0 at LSTAR, and a kick stopped it before the stub's hlt.
        g.ev.special.cs = { ...g.ev.special.cs, selector: SEL.CS64 & ~3, dpl: 0 };
        c.regs.rcx = c.regs.rip + 2n;
        c.regs.rip = LSTAR_VIRT;
        return stop();
      },
      () => { throw new Error('the guest ran on past a refused syscall'); },
    );
    // Rule: the event callback never ran at CPL 0; the refused syscall crashed the domain, alone.
    expect(g.d.end).toEqual({ kind: 'crashed', reason: expect.stringMatching(/syscall is refused/) });
    expect(g.d.exitCounts.get('event upcall') ?? 0).toBe(0);
  });
});

describe('guest user mode', () => {
  const userRip = 0x3f8000n;
  /** The steps that take the guest to user mode at userRip: callbacks, a kernel stack, user tables (the kernel's own), iret to an RPL 3 frame. */
  function toUserMode(g: ScriptedGuest, kstack: bigint, userRsp: bigint) {
    return [
      (c: ScriptedCpu) => c.hypercall(Hypercall.HYPERVISOR_set_callbacks, [EVENT_CB, FAILSAFE, SYSCALL_CB]),
      (c: ScriptedCpu) => c.hypercall(Hypercall.HYPERVISOR_stack_switch, [BigInt(SEL.DS), kstack]),
      (c: ScriptedCpu) => {
        c.write(ARG(g), u64s(BigInt(MmuextCmd.MMUEXT_NEW_USER_BASEPTR), BigInt(g.vcpu.space.cr3Mfn), 0n));
        return c.hypercall(Hypercall.HYPERVISOR_mmuext_op, [ARG(g), 1n, 0n, 0x7ff0n]);
      },
      (c: ScriptedCpu) => {
        expect(c.regs.rax).toBe(0n);
        // iret to user mode: the guest pushes ss, rsp, rflags, cs (RPL 3), rip, flags; the slot pushes rcx, r11, rax.
        for (const w of [BigInt(SEL.DS), userRsp, 0x202n, BigInt(SEL.CS64), userRip, 0n]) c.push(w);
        return c.jumpTo(c.hypercallPage + 32n * BigInt(Hypercall.HYPERVISOR_iret));
      },
    ];
  }

  it('enters user mode by iret to an RPL 3 frame, and refuses its hypercalls', () => {
    g = scriptedGuest();
    const userRsp = g.d.layout.stackTop - 0xc00n; // all within the one boot stack page
    g.play(
      ...toUserMode(g, g.d.layout.stackTop - 0x600n, userRsp),
      (c) => {
        expect(g.vcpu.space.userMode).toBe(true);
        expect([c.regs.rip, c.regs.rsp]).toEqual([userRip, userRsp]);
        // Rule: a hypercall from user mode is refused: the port is closed, the guest kernel gets #GP.
        return c.hypercall(Hypercall.HYPERVISOR_xen_version, [0n, 0n]);
      },
    );
    expect(g.d.end).toEqual({ kind: 'crashed', reason: expect.stringMatching(/#GP.*in guest user mode/) });
  });

  it('bounces a user syscall to the syscall callback on the kernel stack, back in kernel mode', () => {
    g = scriptedGuest();
    const kstack = g.d.layout.stackTop - 0x600n;
    g.play(
      ...toUserMode(g, kstack, g.d.layout.stackTop - 0xc00n),
      (c) => c.syscall(),
      (c) => {
        // Rule: kernel mode again, at the callback, on the kernel stack, the frame holding the user's rip.
        expect(g.vcpu.space.userMode).toBe(false);
        expect(c.regs.rip).toBe(SYSCALL_CB);
        expect(c.regs.rsp).toBe(kstack - 7n * 8n);
        expect(c.readU64(c.regs.rsp + 16n)).toBe(userRip + 2n);
        expect(c.readU64(c.regs.rsp + 24n) & 3n).toBe(3n); // cs keeps RPL 3: user mode was interrupted
        return stop();
      },
    );
    expect(g.d.running).toBe(true);
  });

  // The race behind Linux's oops "supervisor instruction fetch at xen_asm_exc_xen_hypervisor_callback"
  // with a user CR2: a kick (for an event) lands after the CPU has pushed a user fault's frame on the
  // ring-0 stack and before the exception stub's hlt. That frame is not yet handled, so the upcall
  // must not be written into it: the fault is bounced first, with the user's rip, and the upcall
  // nests on top of it, or waits while the fault's trap masks events.
  describe('an event that arrives between a user fault and its exception stub', () => {
    const userPage = 0x7f1234567000n;
    /** User mode with VIRQ_TIMER bound and the #PF trap masking events (`pfFlags` 4) or not (0); then the race. */
    function race(pfFlags: number, kstack: bigint) {
      return [
        trapTable(g, [[14, pfFlags, HANDLER_PF]]),
        (c: ScriptedCpu) => {
          c.write(ARG(g), Uint8Array.of(Virq.VIRQ_TIMER, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0));
          return c.hypercall(Hypercall.HYPERVISOR_event_channel_op, [BigInt(EventChannelOp.EVTCHNOP_bind_virq), ARG(g)]);
        },
        ...toUserMode(g, kstack, g.d.layout.stackTop - 0xc00n),
        (c: ScriptedCpu) => {
          expect(g.vcpu.info.masked).toBe(false);
          g.d.events.raiseVirq(Virq.VIRQ_TIMER, 0);
          // An instruction fetch from a user page not yet mapped (error code: U | I), as a new process's first touch of its text.
          c.regs.rip = userPage;
          return c.raiseThenInterrupted(14, 0x14n, userPage);
        },
      ];
    }

    it('bounces the fault first, with the user rip and U, and keeps the upcall for when events are unmasked', () => {
      g = scriptedGuest();
      const kstack = g.d.layout.stackTop - 0x600n;
      g.play(
        ...race(4, kstack),
        (c) => {
          // Rule: the #PF handler runs with Xen's frame for a user fault: the user's rip, cs RPL 3, error code U | I.
          expect(c.regs.rip).toBe(HANDLER_PF);
          expect(c.regs.rsp).toBe(kstack - 8n * 8n);
          expect(c.readU64(c.regs.rsp + 16n)).toBe(0x14n);
          expect(c.readU64(c.regs.rsp + 24n)).toBe(userPage);
          expect(c.readU64(c.regs.rsp + 32n) & 3n).toBe(3n);
          expect(g.vcpu.space.userMode).toBe(false);
          // The trap masked events: the upcall is still pending, not delivered.
          expect(g.vcpu.info.masked).toBe(true);
          expect(g.vcpu.info.upcallPending).toBe(true);
          return stop();
        },
      );
      expect(g.vcpu.info.view.getBigUint64(VcpuInfo.OFFSETS.arch, true)).toBe(userPage);
      expect(g.d.exitCounts.get('event upcall') ?? 0).toBe(0);
      expect(g.d.running).toBe(true);
    });

    it('with events left unmasked by the trap, nests the upcall on the fault\'s frame, as Xen does on its return to the guest', () => {
      g = scriptedGuest();
      const kstack = g.d.layout.stackTop - 0x600n;
      g.play(
        ...race(0, kstack),
        (c) => {
          // Rule: the event callback runs first, interrupting the #PF handler at its first instruction (kernel mode, RPL 0) ...
          expect(c.regs.rip).toBe(EVENT_CB);
          const pfFrame = kstack - 8n * 8n;
          expect(c.regs.rsp).toBe(pfFrame - 7n * 8n);
          expect(c.readU64(c.regs.rsp + 16n)).toBe(HANDLER_PF);
          expect(c.readU64(c.regs.rsp + 24n) & 3n).toBe(0n);
          // ... and the fault's frame beneath it still holds the user's rip and error code.
          expect(c.readU64(pfFrame + 16n)).toBe(0x14n);
          expect(c.readU64(pfFrame + 24n)).toBe(userPage);
          return stop();
        },
      );
      expect(g.d.exitCounts.get('event upcall')).toBe(1);
      expect(g.d.exitCounts.get('exception delivered')).toBe(1);
    });
  });
});
