// The bits of an x86-64 page-table entry (Intel SDM vol. 3, section 4.5),
// in one place for every walk, check and builder. As numbers for the low
// and high 32-bit words (the hot paths work on halves: BigInt arithmetic
// allocates), and as BigInts for whole entries.

/** Bits of the low word (entry bits 0-31). */
export const PTE_LO = {
  P: 0x1, RW: 0x2, US: 0x4, PWT: 0x8, PCD: 0x10, A: 0x20, D: 0x40,
  /** PSE in an upper-level entry, PAT in an L1 entry. */
  PSE: 0x80,
  G: 0x100,
} as const;

/** Bits of the high word (entry bits 32-63). */
export const PTE_HI = {
  /** Bits 32-51: the frame number's upper part. */
  ADDR: 0x000fffff,
  /** Bit 62: Xen's _PAGE_GNTTAB, refused in guest entries (52-61 are the guest's). */
  GNTTAB: 0x40000000,
  /** Bit 63: no execute. */
  NX: 0x80000000,
} as const;

/** Whole-entry bits. */
export const PTE = {
  P: BigInt(PTE_LO.P), RW: BigInt(PTE_LO.RW), US: BigInt(PTE_LO.US), A: BigInt(PTE_LO.A), D: BigInt(PTE_LO.D),
  PS: BigInt(PTE_LO.PSE), NX: 1n << 63n,
} as const;
