// The privileged-instruction emulator on the scripted engine (no KVM):
// CPUID through Xen's forced-emulation prefix with the PV policy, `mov`
// from and to the control registers, rdmsr and wrmsr, each as Xen answers
// a PV domU; what is refused reaches the guest as #GP, and what must never
// be emulated (an MSR that would redirect the hypervisor's own entry
// points, a privileged instruction from guest user mode) is not.

import { afterEach, describe, expect, it } from 'vitest';
import { DEFAULT_CPUID } from '../../../src/engine/scripted/scripted-engine.js';
import { Hypercall } from '../../../src/abi/generated/xen.js';
import type { ScriptedCpu } from '../../../src/engine/scripted/scripted-cpu.js';
import { MSR } from '../../../src/hv/mm/xen-space.js';
import { scriptedGuest, trapTable, type ScriptedGuest } from '../../support/scripted.js';

let g: ScriptedGuest;
afterEach(() => g?.hv.close());
const stop = () => ({ kind: 'interrupted' as const });
const GP_HANDLER = 0x3f1000n;
const FORCED_CPUID = [0x0f, 0x0b, 0x78, 0x65, 0x6e, 0x0f, 0xa2];
const MOV_CR3_RAX = [0x0f, 0x20, 0xd8], MOV_CR0_RAX = [0x0f, 0x20, 0xc0], MOV_RAX_CR0 = [0x0f, 0x22, 0xc0];
const MOV_CR2_RAX = [0x0f, 0x20, 0xd0], MOV_CR4_RAX = [0x0f, 0x20, 0xe0], MOV_RAX_CR3 = [0x0f, 0x22, 0xd8], MOV_CR3_RSP = [0x0f, 0x20, 0xdc];
const RDMSR = [0x0f, 0x32], WRMSR = [0x0f, 0x30];
const str = (...w: number[]) => Buffer.from(Uint32Array.from(w).buffer).toString('latin1');

/** A #GP handler at GP_HANDLER. */
const gpHandler = (g: ScriptedGuest) => trapTable(g, [[13, 0, GP_HANDLER]]);

/** Runs one instruction that raises `vector` at rip, then hands the CPU to `then`; returns the rip it ran at. */
function run(g: ScriptedGuest, bytes: number[], vector: number, regs: Partial<Record<'rax' | 'rcx' | 'rdx', bigint>>, then: (c: ScriptedCpu, rip: bigint) => void): void {
  let rip = 0n;
  g.play(
    (c) => {
      rip = c.regs.rip;
      Object.assign(c.regs, regs);
      return c.faulting(bytes, vector);
    },
    (c) => { then(c, rip); return stop(); },
  );
}

describe('CPUID through the forced-emulation prefix', () => {
  it('answers Xen\'s leaves: the signature, the version, no MSR-filled hypercall pages', () => {
    g = scriptedGuest();
    const leaf = (n: number) => {
      let out: bigint[] = [];
      run(g, FORCED_CPUID, 6, { rax: BigInt(n), rcx: 0n }, (c, rip) => {
        // Rule: rip is past the prefix and the cpuid (7 bytes); the answer is in eax, ebx, ecx, edx.
        expect(c.regs.rip).toBe(rip + 7n);
        out = [c.regs.rax, c.regs.rbx, c.regs.rcx, c.regs.rdx];
      });
      return out.map(Number);
    };
    const base = leaf(0x40000000);
    expect(base[0]).toBe(0x40000002);
    expect(str(base[1]!, base[2]!, base[3]!)).toBe('XenVMMXenVMM');
    expect(leaf(0x40000001)[0]).toBe((4 << 16) | 17);
    expect(leaf(0x40000002)).toEqual([0, 0, 0, 0]);
    expect(g.d.exitCounts.get('privileged instruction')).toBe(3);
    expect(g.d.running).toBe(true);
  });

  it('hides what a PV kernel cannot use and sets the hypervisor bit', () => {
    g = scriptedGuest();
    const leaf = (n: number) => {
      let out: number[] = [];
      run(g, FORCED_CPUID, 6, { rax: BigInt(n), rcx: 0n }, (c) => { out = [c.regs.rax, c.regs.rbx, c.regs.rcx, c.regs.rdx].map(Number); });
      return out;
    };
    const [, , c1, d1] = leaf(1);
    const has = (v: number, b: number) => ((v >>> b) & 1) === 1;
    expect(has(c1!, 31)).toBe(true);                        // hypervisor
    for (const b of [3, 5, 17, 21, 26, 27, 28]) expect(has(c1!, b), `leaf 1 ecx bit ${b}`).toBe(false); // MONITOR VMX PCID x2APIC XSAVE OSXSAVE AVX
    for (const b of [1, 3, 9, 12, 13]) expect(has(d1!, b), `leaf 1 edx bit ${b}`).toBe(false);          // VME PSE APIC MTRR PGE
    for (const b of [0, 4, 6, 25, 26]) expect(has(d1!, b), `leaf 1 edx bit ${b}`).toBe(true);            // FPU TSC PAE SSE SSE2 kept
    expect(has(leaf(7)[1]!, 0)).toBe(false);                // FSGSBASE
    expect(has(leaf(0x80000001)[3]!, 26)).toBe(false);      // 1 GiB pages
    expect(has(leaf(0x80000001)[3]!, 29)).toBe(true);       // long mode
    const [, b0, c0, d0] = leaf(0);
    expect(str(b0!, d0!, c0!)).toBe('AuthenticAMD'); // the host's vendor: ebx, edx, ecx
  });

  it('leaves a plain ud2, and a prefix without cpuid, as #UD for the guest', () => {
    g = scriptedGuest();
    g.play((c) => c.faulting([0x0f, 0x0b, 0x90], 6));
    expect(g.d.end).toEqual({ kind: 'crashed', reason: expect.stringMatching(/unhandled #UD/) });
  });
});

describe('control registers', () => {
  it('reads CR3 as the current base pointer, CR4 as the virtual one, CR0 with the virtual TS, CR2 as the last #PF\'s', () => {
    g = scriptedGuest();
    run(g, MOV_CR3_RAX, 13, {}, (c, rip) => {
      expect(c.regs.rax).toBe(BigInt(g.vcpu.space.cr3Mfn) << 12n);
      expect(c.regs.rip).toBe(rip + 3n);
    });
    run(g, MOV_CR4_RAX, 13, {}, (c) => expect(c.regs.rax).toBe(0x620n));
    g.play((c) => c.hypercall(Hypercall.HYPERVISOR_fpu_taskswitch, [1n]), stop);
    run(g, MOV_CR0_RAX, 13, {}, (c) => expect(c.regs.rax & 8n).toBe(8n));
    g.vcpu.info.cr2 = 0x7f001234n;
    run(g, MOV_CR2_RAX, 13, {}, (c) => expect(c.regs.rax).toBe(0x7f001234n));
    // Rule: the guest's rsp is the frame's, not the ring-0 stack's.
    let rsp = 0n;
    g.play((c) => { rsp = c.regs.rsp; return c.faulting(MOV_CR3_RSP, 13); }, (c) => { expect(c.regs.rsp).toBe(BigInt(g.vcpu.space.cr3Mfn) << 12n); c.regs.rsp = rsp; return stop(); });
    expect(g.d.exitCounts.get('privileged instruction')).toBe(5);
  });

  it('writes CR4 as Xen\'s pv_fixup_guest_cr4: TSD and DE taken, hardware bits kept, the rest dropped, never a #GP', () => {
    g = scriptedGuest();
    g.play(gpHandler(g), stop);
    // What Linux's cr4_set_bits may write at boot: PGE, MCE, PCE, OSXSAVE, FSGSBASE beside DE and TSD.
    const MOV_RAX_CR4 = [0x0f, 0x22, 0xe0];
    run(g, MOV_RAX_CR4, 13, { rax: 0x620n | 0x80n | 0x40n | 0x100n | 0x40000n | 0x10000n | 0x8n | 0x4n }, (c, rip) => expect(c.regs.rip).toBe(rip + 3n));
    run(g, MOV_CR4_RAX, 13, {}, (c) => expect(c.regs.rax).toBe(0x620n | 0x8n | 0x4n));
    // Clearing what the hypervisor keeps set (PAE, OSFXSR) changes nothing of it; DE and TSD go.
    run(g, MOV_RAX_CR4, 13, { rax: 0n }, () => {});
    run(g, MOV_CR4_RAX, 13, {}, (c) => expect(c.regs.rax).toBe(0x620n));
    expect(g.d.running).toBe(true);
  });

  it('writes CR0.TS as fpu_taskswitch does, and gives #GP for any other CR0 change', () => {
    g = scriptedGuest();
    g.play(gpHandler(g), stop);
    run(g, MOV_CR0_RAX, 13, {}, () => {});
    let cr0 = 0n;
    run(g, MOV_CR0_RAX, 13, {}, (c) => { cr0 = c.regs.rax; });
    run(g, MOV_RAX_CR0, 13, { rax: cr0 | 8n }, () => expect(g.vcpu.traps.taskSwitched).toBe(true));
    run(g, MOV_RAX_CR0, 13, { rax: cr0 & ~0x80000000n }, (c) => {
      // Rule: paging off is refused: the guest's #GP handler runs, error code 0.
      expect(c.regs.rip).toBe(GP_HANDLER);
      expect(c.readU64(c.regs.rsp + 16n)).toBe(0n);
    });
  });

  it('loads a new CR3 only if it names a validated L4 of the domain, else #GP', () => {
    g = scriptedGuest();
    g.play(gpHandler(g), stop);
    const l4 = g.vcpu.space.cr3Mfn;
    const data = g.d.memory.mfnOf(g.d.layout.pfn.stack);
    run(g, MOV_RAX_CR3, 13, { rax: BigInt(data) << 12n }, (c) => expect(c.regs.rip).toBe(GP_HANDLER));
    run(g, MOV_RAX_CR3, 13, { rax: BigInt(g.hv.xen.zero) << 12n }, (c) => expect(c.regs.rip).toBe(GP_HANDLER));
    expect(g.vcpu.space.cr3Mfn).toBe(l4);
    run(g, MOV_RAX_CR3, 13, { rax: BigInt(l4) << 12n }, (c, rip) => expect(c.regs.rip).toBe(rip + 3n));
    expect(g.vcpu.space.cr3Mfn).toBe(l4);
  });
});

describe('MSRs', () => {
  it('reads and writes the FS, GS and kernel GS bases, refusing non-canonical ones with #GP', () => {
    g = scriptedGuest();
    g.play(gpHandler(g), stop);
    run(g, WRMSR, 13, { rcx: BigInt(MSR.FS_BASE), rax: 0x1000n, rdx: 0x7fffn }, (c, rip) => expect(c.regs.rip).toBe(rip + 2n));
    expect(g.ev.getMsrs([MSR.FS_BASE])[0]).toBe(0x7fff00001000n);
    run(g, RDMSR, 13, { rcx: BigInt(MSR.FS_BASE) }, (c) => expect([c.regs.rdx, c.regs.rax]).toEqual([0x7fffn, 0x1000n]));
    run(g, WRMSR, 13, { rcx: BigInt(MSR.KERNEL_GS_BASE), rax: 0n, rdx: 0x8000n }, (c) => expect(c.regs.rip).toBe(GP_HANDLER));
    expect(g.ev.getMsrs([MSR.KERNEL_GS_BASE])[0]).toBe(0n);
  });

  it('never lets the guest move the hypervisor\'s syscall entry, or write an MSR it does not know: #GP', () => {
    g = scriptedGuest();
    g.play(gpHandler(g), stop);
    const lstar = g.ev.getMsrs([MSR.LSTAR])[0];
    for (const msr of [MSR.LSTAR, MSR.STAR, MSR.CSTAR, MSR.FMASK, 0x174 /* SYSENTER_CS */, 0x1234]) {
      run(g, WRMSR, 13, { rcx: BigInt(msr), rax: 0x41414141n, rdx: 0n }, (c) => expect(c.regs.rip, `wrmsr ${msr.toString(16)}`).toBe(GP_HANDLER));
    }
    expect(g.ev.getMsrs([MSR.LSTAR])[0]).toBe(lstar);
    run(g, RDMSR, 13, { rcx: 0x1234n }, (c) => expect(c.regs.rip).toBe(GP_HANDLER));
    run(g, RDMSR, 13, { rcx: 0xc0000080n }, (c) => expect(c.regs.rax & 0x500n).toBe(0x500n)); // EFER: LME, LMA
  });

  it('takes a write of 0 to the microcode revision (0x8b) on Intel, as Xen: Linux\'s early_init_intel makes it', () => {
    g = scriptedGuest();
    g.play(gpHandler(g), stop);
    // AMD (the scripted CPU's default): #GP.
    run(g, WRMSR, 13, { rcx: 0x8bn, rax: 0n, rdx: 0n }, (c) => expect(c.regs.rip).toBe(GP_HANDLER));
    g.engine.cpuidTable = new Map([...DEFAULT_CPUID, ['0:0', [0xd, 0x756e6547, 0x6c65746e, 0x49656e69]]]); // "GenuineIntel"
    run(g, WRMSR, 13, { rcx: 0x8bn, rax: 0n, rdx: 0n }, (c, rip) => expect(c.regs.rip).toBe(rip + 2n));
    run(g, WRMSR, 13, { rcx: 0x8bn, rax: 1n, rdx: 0n }, (c) => expect(c.regs.rip).toBe(GP_HANDLER));
    run(g, RDMSR, 13, { rcx: 0x8bn, rax: 7n, rdx: 7n }, (c) => expect([c.regs.rdx, c.regs.rax]).toEqual([0n, 0n]));
  });

  it('emulates nothing from guest user mode: the kernel gets the #GP', () => {
    g = scriptedGuest();
    g.vcpu.space.setUserCr3(g.vcpu.space.cr3Mfn);
    g.vcpu.space.toggle();
    // An rdmsr that kernel mode would get emulated (FS_BASE) is user mode's #GP.
    g.play((c) => { c.regs.rcx = BigInt(MSR.FS_BASE); return c.faulting(RDMSR, 13); });
    expect(g.d.end).toEqual({ kind: 'crashed', reason: expect.stringMatching(/unhandled #GP.*in guest user mode/) });
  });
});
