// What CPUID tells a PV guest, as Xen's PV policy tells it: the host's
// answer (from the engine) with what a deprivileged kernel cannot use
// hidden, the hypervisor bit set, and Xen's leaves at 0x40000000 (the
// "XenVMMXenVMM" signature, the version) by which
// Linux and Xen's test framework recognise Xen. Guests reach it through
// Xen's forced-emulation prefix (`ud2a; .ascii "xen"; cpuid`).
// Inputs: leaf and sub-leaf from the guest's registers (hostile, any value).

import type { CpuidResult } from '../../engine/types.js';
import { XEN_MAJOR, XEN_MINOR } from '../hypercalls/basic.js';

/** Where Xen's leaves start, and the last one paravane answers. */
export const XEN_CPUID_BASE = 0x40000000;
const XEN_CPUID_LAST = XEN_CPUID_BASE + 2;
/** "XenVMMXenVMM" as ebx, ecx, edx. */
const XEN_SIGNATURE = [0x566e6558, 0x65584d4d, 0x4d4d566e] as const;

const bits = (...n: number[]): number => n.reduce((m, b) => (m | (1 << b)) >>> 0, 0);

/**
 * Leaf 1 ECX: hidden are what needs ring 0 or a feature paravane does not
 * give the guest: MONITOR (3), DS-CPL (4), VMX (5), SMX (6), EST (7), TM2
 * (8), SDBG (11), FMA (12, VEX: needs OSXSAVE), xTPR (14), PDCM (15), PCID
 * (17), DCA (18), x2APIC (21), TSC-deadline (24), XSAVE (26) and OSXSAVE
 * (27) (the guest's CR4 has no OSXSAVE here, so XSAVE would #UD), AVX (28)
 * and F16C (29) (VEX: need OSXSAVE). HYPERVISOR (31) is set.
 */
const L1_ECX_HIDE = bits(3, 4, 5, 6, 7, 8, 11, 12, 14, 15, 17, 18, 21, 24, 26, 27, 28, 29);
const L1_ECX_SET = bits(31);
/**
 * Leaf 1 EDX: VME (1), PSE (3), APIC (9), MTRR (12), PGE (13), PSE36 (17),
 * DS (21), ACPI (22), TM (29), PBE (31) are hidden from PV guests, as Xen
 * does (no virtual 8086 mode, no superpages, no local APIC or MTRRs, global
 * pages are the hypervisor's).
 */
const L1_EDX_HIDE = bits(1, 3, 9, 12, 13, 17, 21, 22, 29, 31);
/**
 * Leaf 7.0 EBX, kept: BMI1 (3), BMI2 (8), ERMS (9), RDSEED (18), ADX (19),
 * CLFLUSHOPT (23), CLWB (24), SHA (29); FSGSBASE (0) where the engine
 * applies the guest's CR4.FSGSBASE (see fsgsbase); the rest (SMEP, SMAP, INVPCID, AVX2 and AVX-512,
 * which need OSXSAVE, SGX, MPX, RDT, ...) hidden. ECX and EDX: none kept.
 */
const L7_EBX_KEEP = bits(3, 8, 9, 18, 19, 23, 24, 29);
/**
 * Leaf 0x80000001 ECX, kept: LAHF (0), ABM (5), SSE4A (6), MisAlignSSE (7),
 * PREFETCHW (8); hidden: SVM, the extended APIC, IBS, SKINIT, WDT, the
 * VEX/XOP families (which need OSXSAVE), topology and performance counters.
 */
const X1_ECX_KEEP = bits(0, 5, 6, 7, 8);
/** Leaf 0x80000001 EDX: 1 GiB pages (26) hidden (no superpages for PV). */
const X1_EDX_HIDE = bits(26);

export class PvCpuidPolicy {
  private readonly maxBasic: number;
  private readonly maxExt: number;

  /** `host(leaf, subleaf)` is the engine's raw CPUID. */
  /** The CPU's vendor, as leaf 0 names it: GenuineIntel is Intel. */
  get intel(): boolean {
    const [, b, c, d] = this.host(0, 0);
    return b === 0x756e6547 && d === 0x49656e69 && c === 0x6c65746e; // "Genu" "ineI" "ntel"
  }

  /**
   * Whether FSGSBASE is offered: only where the engine applies the guest's
   * CR4.FSGSBASE to the code it runs at CPL 3 (`engineFsgsbase`), so that
   * the instructions fault while the guest keeps the bit clear (XSA-293),
   * and the processor has it.
   */
  readonly fsgsbase: boolean;
  /**
   * Whether guests may return to 32-bit code (compatibility mode): only
   * where the engine runs it (its capability `compat-mode`). Elsewhere an
   * iret to a 32-bit code selector goes to the failsafe callback.
   */
  readonly compatMode: boolean;

  constructor(private readonly host: (leaf: number, subleaf: number) => CpuidResult, engine: { fsgsbase?: boolean; compatMode?: boolean } = {}) {
    this.maxBasic = Math.min(host(0, 0)[0], 0xd);
    this.maxExt = Math.min(host(0x80000000, 0)[0], 0x80000008);
    this.fsgsbase = engine.fsgsbase === true && this.maxBasic >= 7 && (host(7, 0)[1] & 1) !== 0;
    this.compatMode = engine.compatMode === true;
  }

  /** CPUID as the guest (vCPU `vcpu`) sees it. */
  cpuid(leaf: number, subleaf: number, vcpu: number): CpuidResult {
    leaf >>>= 0;
    if (leaf >= XEN_CPUID_BASE && leaf < XEN_CPUID_BASE + 0x10000) return this.xenLeaf(leaf);
    const ext = leaf >= 0x80000000;
    if (ext ? leaf > this.maxExt : leaf > this.maxBasic) return [0, 0, 0, 0];
    const [a, b, c, d] = this.host(leaf, subleaf);
    switch (leaf) {
      case 0:
        return [this.maxBasic, b, c, d];
      case 1:
        // EBX: the initial APIC id is the vCPU's, as Xen numbers them (2 * id).
        return [a, ((b & 0x00ffffff) | ((vcpu * 2) << 24)) >>> 0, ((c & ~L1_ECX_HIDE) | L1_ECX_SET) >>> 0, (d & ~L1_EDX_HIDE) >>> 0];
      case 5: case 6: // MONITOR/MWAIT and power management: not for a deprivileged kernel
        return [0, 0, 0, 0];
      case 7:
        return subleaf === 0 ? [0, (b & (L7_EBX_KEEP | (this.fsgsbase ? 1 : 0))) >>> 0, 0, 0] : [0, 0, 0, 0];
      case 0xd: // XSAVE is hidden: no state components
        return [0, 0, 0, 0];
      case 0x80000000:
        return [this.maxExt, b, c, d];
      case 0x80000001:
        return [a, b, (c & X1_ECX_KEEP) >>> 0, (d & ~X1_EDX_HIDE) >>> 0];
      default:
        return [a, b, c, d];
    }
  }

  private xenLeaf(leaf: number): CpuidResult {
    switch (leaf) {
      case XEN_CPUID_BASE:
        return [XEN_CPUID_LAST, ...XEN_SIGNATURE];
      case XEN_CPUID_BASE + 1:
        return [((XEN_MAJOR << 16) | XEN_MINOR) >>> 0, 0, 0, 0];
      case XEN_CPUID_BASE + 2:
        // Hypercall pages a guest may have filled through an MSR: none (PV guests get theirs from
        // the HYPERCALL_PAGE ELF note, or call by syscall), so no MSR either; no optional features.
        return [0, 0, 0, 0];
      default:
        return [0, 0, 0, 0];
    }
  }
}
