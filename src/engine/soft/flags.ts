// RFLAGS for the software CPU, computed lazily: an arithmetic instruction
// records its operands and result, and a flag is worked out only when
// something reads it (a jcc reads one or two; pushf reads them all). Sizes
// are in bytes (1, 2, 4, 8).

export const CF = 0x1, PF = 0x4, AF = 0x10, ZF = 0x40, SF = 0x80, TF = 0x100, IF = 0x200, DF = 0x400, OF = 0x800;
export const IOPL = 0x3000, NT = 0x4000, RF = 0x10000, VM = 0x20000, AC = 0x40000, ID = 0x200000;
/** The six arithmetic flags. */
export const ARITH = CF | PF | AF | ZF | SF | OF;
/** The bits of RFLAGS this CPU keeps (bit 1 always reads 1). */
export const KEPT = ARITH | TF | IF | DF | IOPL | NT | RF | AC | ID;

export const MASK: readonly bigint[] = [0n, 0xffn, 0xffffn, 0n, 0xffffffffn, 0n, 0n, 0n, 0xffffffffffffffffn];
export const SIGN: readonly bigint[] = [0n, 0x80n, 0x8000n, 0n, 0x80000000n, 0n, 0n, 0n, 0x8000000000000000n];

/** How the arithmetic flags are to be worked out. */
export const enum Lazy { None, Add, Sub, Logic, Inc, Dec }

const PARITY = new Uint8Array(256).map((_, i) => {
  let p = 1;
  for (let b = i; b; b >>= 1) p ^= b & 1;
  return p ? PF : 0;
});

export class Flags {
  /** RFLAGS; its arithmetic bits are stale while `kind` is not None. */
  bits = 0x2;
  kind: Lazy = Lazy.None;
  a = 0n;
  b = 0n;
  r = 0n;
  size = 8;
  /** Carry in (adc, sbb), or CF kept across inc/dec. */
  carry = 0;

  set(kind: Lazy, a: bigint, b: bigint, r: bigint, size: number, carry = 0): void {
    this.kind = kind;
    this.a = a;
    this.b = b;
    this.r = r;
    this.size = size;
    this.carry = carry;
  }

  cf(): boolean {
    switch (this.kind) {
      case Lazy.None: return (this.bits & CF) !== 0;
      case Lazy.Add: return this.carry ? this.r <= this.a : this.r < this.a;
      case Lazy.Sub: return this.carry ? this.a <= this.b : this.a < this.b;
      case Lazy.Logic: return false;
      default: return this.carry !== 0;
    }
  }

  zf(): boolean {
    return this.kind === Lazy.None ? (this.bits & ZF) !== 0 : this.r === 0n;
  }

  sf(): boolean {
    return this.kind === Lazy.None ? (this.bits & SF) !== 0 : (this.r & SIGN[this.size]!) !== 0n;
  }

  of(): boolean {
    const s = SIGN[this.size]!;
    switch (this.kind) {
      case Lazy.None: return (this.bits & OF) !== 0;
      case Lazy.Add: case Lazy.Inc: return (~(this.a ^ this.b) & (this.a ^ this.r) & s) !== 0n;
      case Lazy.Sub: case Lazy.Dec: return ((this.a ^ this.b) & (this.a ^ this.r) & s) !== 0n;
      default: return false;
    }
  }

  pf(): boolean {
    return this.kind === Lazy.None ? (this.bits & PF) !== 0 : PARITY[Number(this.r & 0xffn)] !== 0;
  }

  af(): boolean {
    if (this.kind === Lazy.None) return (this.bits & AF) !== 0;
    if (this.kind === Lazy.Logic) return false;
    return ((this.a ^ this.b ^ this.r) & 0x10n) !== 0n;
  }

  /** Writes the arithmetic flags into `bits`; afterwards they are exact there. */
  materialize(): number {
    if (this.kind !== Lazy.None) {
      const v = (this.cf() ? CF : 0) | (this.pf() ? PF : 0) | (this.af() ? AF : 0) | (this.zf() ? ZF : 0) | (this.sf() ? SF : 0) | (this.of() ? OF : 0);
      this.bits = (this.bits & ~ARITH) | v;
      this.kind = Lazy.None;
    }
    return this.bits;
  }

  /** Sets the arithmetic flags directly (shifts, multiplies, bit tests). */
  setArith(v: number): void {
    this.materialize();
    this.bits = (this.bits & ~ARITH) | (v & ARITH);
  }

  /** ZF, SF and PF of `r` (for results set directly), the rest as given. */
  static szp(r: bigint, size: number): number {
    return (r === 0n ? ZF : 0) | ((r & SIGN[size]!) !== 0n ? SF : 0) | PARITY[Number(r & 0xffn)]!;
  }

  /** Condition code `cc` (the low nibble of jcc, setcc, cmovcc). */
  cond(cc: number): boolean {
    let t: boolean;
    switch (cc >> 1) {
      case 0: t = this.of(); break;
      case 1: t = this.cf(); break;
      case 2: t = this.zf(); break;
      case 3: t = this.cf() || this.zf(); break;
      case 4: t = this.sf(); break;
      case 5: t = this.pf(); break;
      case 6: t = this.sf() !== this.of(); break;
      default: t = this.zf() || this.sf() !== this.of(); break;
    }
    return cc & 1 ? !t : t;
  }
}
