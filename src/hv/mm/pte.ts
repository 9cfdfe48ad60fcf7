// Page-table entry bits for every walk, check and builder, from the ABI's
// PteFlags (abi/paravane/pte.proto): as numbers for the low and high 32-bit
// words (the hot paths work on halves: BigInt arithmetic allocates), and as
// BigInts for whole entries.

import { PteFlags } from '../../abi/generated/paravane-pte.js';

const HIGH = 2n ** 32n;

/** Bits of the low word (entry bits 0-31). */
export const PTE_LO = {
  P: PteFlags.PAGE_PRESENT, RW: PteFlags.PAGE_RW, US: PteFlags.PAGE_USER, PWT: PteFlags.PAGE_PWT,
  PCD: PteFlags.PAGE_PCD, A: PteFlags.PAGE_ACCESSED, D: PteFlags.PAGE_DIRTY,
  /** PSE in an upper-level entry, PAT in an L1 entry (the same bit). */
  PSE: PteFlags.PAGE_PSE,
  G: PteFlags.PAGE_GLOBAL,
  /** Bits 9-11, the guest's. */
  AVAIL: PteFlags.PAGE_AVAIL,
} as const;

/** Bits of the high word (entry bits 32-63). */
export const PTE_HI = {
  /** Bits 32-51: the frame number's upper part. */
  ADDR: Math.floor(PteFlags.PAGE_MFN_MASK / Number(HIGH)),
  /** Bit 62: Xen's _PAGE_GNTTAB, refused in guest entries (52-61 are the guest's). */
  GNTTAB: Number(PteFlags.PAGE_GNTTAB / HIGH),
  /** Bit 63: no execute. */
  NX: Number(PteFlags.PAGE_NX / HIGH),
} as const;

/** Whole-entry bits. */
export const PTE = {
  P: BigInt(PTE_LO.P), RW: BigInt(PTE_LO.RW), US: BigInt(PTE_LO.US), A: BigInt(PTE_LO.A), D: BigInt(PTE_LO.D),
  PS: BigInt(PTE_LO.PSE), NX: PteFlags.PAGE_NX,
} as const;

/** The machine frame an entry names, from its 32-bit halves (the one place this arithmetic is written). */
export function entryFrame(lo: number, hi: number): number {
  return (lo >>> 12) + (hi & PTE_HI.ADDR) * 0x100000;
}
