// The CPU state a 64-bit PV vCPU starts with, as Xen sets it up: the
// hypervisor's GDT, IDT and TSS (per vCPU, in the hypervisor's slots), the
// guest kernel on Xen's flat ring-3 selectors, `syscall` pointed at the
// LSTAR stub, and the boot registers of the start-of-day protocol (rsi =
// start_info). Inputs: the builder's layout (trusted).

import type { Segment, SpecialRegisters, Vcpu } from '../../engine/types.js';
import { CR0, CR4, CSTAR_OFFSET, EFER, GDT_LIMIT, IDT_VIRT, LSTAR_VIRT, MSR, PerDomainSpace, SEL, SYSCALL_FMASK, TSS_LIMIT } from '../mm/xen-space.js';

/** Initial state of a vCPU, from the builder. */
export interface VcpuBoot {
  rip: bigint;
  rsp: bigint;
  rsi: bigint;
  cr3: bigint;
}

function seg(selector: number, type: number, code: boolean): Segment {
  return {
    base: 0n, limit: 0xffffffff, selector, type, present: true, dpl: selector & 3,
    db: !code, s: true, l: code, g: true, avl: false, unusable: false,
  };
}

const NULL_SEG: Segment = {
  base: 0n, limit: 0, selector: 0, type: 0, present: false, dpl: 0, db: false, s: false, l: false, g: false, avl: false, unusable: true,
};

/** Sets up engine vCPU `index` to enter the guest at `boot`. */
export function setupVcpu(engine: Vcpu, index: number, boot: VcpuBoot): void {
  const at = PerDomainSpace.vcpuLayout(index);
  const s: SpecialRegisters = engine.getSpecialRegisters();
  const data = seg(SEL.DS, 3, false);
  Object.assign(s, {
    cs: seg(SEL.CS64, 11, true), ss: data, ds: NULL_SEG, es: NULL_SEG, fs: NULL_SEG, gs: NULL_SEG,
    tr: { base: at.tss, limit: TSS_LIMIT, selector: SEL.TSS, type: 11, present: true, dpl: 0, db: false, s: false, l: false, g: false, avl: false, unusable: false },
    ldt: NULL_SEG,
    gdt: { base: at.gdt, limit: GDT_LIMIT },
    idt: { base: IDT_VIRT, limit: 256 * 16 - 1 },
    cr0: CR0, cr3: boot.cr3, cr4: CR4, efer: EFER,
  });
  engine.setSpecialRegisters(s);
  engine.setMsrs([
    [MSR.STAR, (BigInt(SEL.CS32 & ~3) << 48n) | (BigInt(SEL.HV_CS) << 32n)],
    [MSR.LSTAR, LSTAR_VIRT], [MSR.CSTAR, LSTAR_VIRT + BigInt(CSTAR_OFFSET)], [MSR.FMASK, SYSCALL_FMASK],
    [MSR.FS_BASE, 0n], [MSR.GS_BASE, 0n], [MSR.KERNEL_GS_BASE, 0n],
  ]);
  const r = engine.regs;
  for (const k of ['rax', 'rbx', 'rcx', 'rdx', 'rdi', 'rbp', 'r8', 'r9', 'r10', 'r11', 'r12', 'r13', 'r14', 'r15'] as const) r[k] = 0n;
  r.rip = boot.rip;
  r.rsp = boot.rsp;
  r.rsi = boot.rsi;
  r.rflags = 0x200n;
}
