// The guest's view of CR4 for a 64-bit PV vCPU, as Xen's
// pv_fixup_guest_cr4 makes it from whatever the guest writes (`mov` to
// CR4, VCPUOP_initialise's ctrlreg[4]): the bits a PV guest chooses (TSD,
// DE, FSGSBASE, OSXSAVE, each only where the CPUID policy offers its
// feature) from the value written, the bits it may see of the hardware's
// settings (PAE, MCE, OSFXSR, OSXMMEXCPT) from the CR4 the vCPU runs
// with, and nothing else. FSGSBASE is live: the vCPU runs with the guest's
// choice (VirtualTraps.cr4), as Xen loads it at every context switch. A write never faults: bits outside these are
// dropped, as Linux's boot-time cr4_set_bits expects of Xen.

import { CR4 } from '../mm/xen-space.js';

const TSD = 0x4n, DE = 0x8n, PAE = 0x20n, MCE = 0x40n, OSFXSR = 0x200n, OSXMMEXCPT = 0x400n;
export const CR4_FSGSBASE = 0x10000n;

/**
 * The bits the guest chooses (Xen's PV_CR4_GUEST_MASK) that this host's
 * PV policy offers: TSD (TSC is offered), DE, and FSGSBASE where the
 * policy offers it (an engine that applies CR4.FSGSBASE to CPL 3 code).
 * OSXSAVE is not (its CPUID bit is hidden: cpuid-policy.ts), so writes of
 * it are dropped, as Xen drops them under such a policy.
 */
const CR4_GUEST_CHOSEN = TSD | DE;
/** The bits a guest sees of the hardware's CR4 (Xen's PV_CR4_GUEST_VISIBLE_MASK). */
const CR4_HW_VISIBLE = PAE | MCE | OSFXSR | OSXMMEXCPT;

/** The CR4 a PV guest sees after writing `value` (Xen's pv_fixup_guest_cr4), `fsgsbase` if the policy offers it. */
export function fixupGuestCr4(value: bigint, fsgsbase: boolean): bigint {
  return (value & (CR4_GUEST_CHOSEN | (fsgsbase ? CR4_FSGSBASE : 0n))) | (CR4 & CR4_HW_VISIBLE);
}
