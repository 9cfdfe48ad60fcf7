// The RFLAGS bits the hypervisor reads, builds and filters (Intel SDM vol. 1, 3.4.3).

export const RFLAGS = {
  CF: 0x1n, FIXED: 0x2n, PF: 0x4n, AF: 0x10n, ZF: 0x40n, SF: 0x80n, TF: 0x100n, IF: 0x200n, DF: 0x400n, OF: 0x800n,
  IOPL: 0x3000n, NT: 0x4000n, RF: 0x10000n, VM: 0x20000n, AC: 0x40000n, ID: 0x200000n,
} as const;

/** The arithmetic flags. */
export const ARITH = RFLAGS.CF | RFLAGS.PF | RFLAGS.AF | RFLAGS.ZF | RFLAGS.SF | RFLAGS.OF;
