// The software CPU's floating point: a sliver of x87 and SSE, enough for a
// kernel to take the exceptions hardware raises (#NM with CR0.TS, #MF on an
// unmasked x87 fault at the next waiting instruction, #XM on an unmasked
// SSE fault) and to move data through XMM registers. x87 values are kept
// as doubles, not 80-bit extended reals. The CPUID of the software CPU
// offers neither FPU nor SSE: a guest that asks is told the truth.

export const FCW_DEFAULT = 0x37f;
export const MXCSR_DEFAULT = 0x1f80;
/** The MXCSR bits a CPU without DAZ-less quirks accepts (MXCSR_MASK). */
export const MXCSR_MASK = 0xffff;

/** x87 status word bits. */
const FSW_IE = 0x1, FSW_ZE = 0x4, FSW_SF = 0x40, FSW_ES = 0x80, FSW_B = 0x8000;
/** MXCSR: the invalid and divide-by-zero flags, and their masks. */
const MX_IE = 0x1, MX_ZE = 0x4, MX_IM = 0x80, MX_ZM = 0x200;

export class Fpu {
  /** The register stack, top first. */
  st: number[] = [];
  fcw = FCW_DEFAULT;
  fsw = 0;
  mxcsr = MXCSR_DEFAULT;
  /** XMM0-15 as low and high quadwords. */
  readonly xmm: Array<[bigint, bigint]> = Array.from({ length: 16 }, () => [0n, 0n]);

  init(): void {
    this.st = [];
    this.fcw = FCW_DEFAULT;
    this.fsw = 0;
  }

  /** An unmasked x87 exception waits for the next waiting instruction (#MF). */
  get pending(): boolean {
    return (this.fsw & FSW_ES) !== 0;
  }

  /** Records x87 exception `flag`; unmasked, it becomes pending. Returns whether the result is to be dropped. */
  private x87Fault(flag: number): boolean {
    this.fsw |= flag;
    if (this.fcw & flag) return false;
    this.fsw |= FSW_ES | FSW_B;
    return true;
  }

  push(v: number): void {
    if (this.st.length >= 8) {
      if (this.x87Fault(FSW_IE | FSW_SF)) return;
      v = NaN;
      this.st.pop();
    }
    this.st.unshift(v);
  }

  pop(): void {
    this.st.shift();
  }

  /** st(i), or a stack-underflow fault (undefined when unmasked). */
  get(i: number): number | undefined {
    if (i < this.st.length) return this.st[i]!;
    return this.x87Fault(FSW_IE | FSW_SF) ? undefined : NaN;
  }

  /** a op b for the D8-form arithmetic (0 add, 1 mul, 4 sub, 5 subr, 6 div, 7 divr); undefined: an unmasked fault, nothing stored. */
  arith(op: number, a: number, b: number): number | undefined {
    if (op === 5 || op === 7) [a, b] = [b, a];
    switch (op) {
      case 0: return a + b;
      case 1: return a * b;
      case 4: case 5: return a - b;
      default:
        if (b === 0 && a !== 0 && !Number.isNaN(a) && Number.isFinite(a)) return this.x87Fault(FSW_ZE) ? undefined : a / b;
        if (b === 0 && a === 0) return this.x87Fault(FSW_IE) ? undefined : NaN;
        return a / b;
    }
  }

  /** Scalar single-precision a op b (0x58 add, 0x59 mul, 0x5c sub, 0x5e div); 'fault' when an unmasked exception is raised. */
  sse(op: number, a: number, b: number): number | 'fault' {
    if (op === 0x5e && b === 0 && !Number.isNaN(a)) {
      const flag = a === 0 ? MX_IE : MX_ZE, mask = a === 0 ? MX_IM : MX_ZM;
      this.mxcsr |= flag;
      if (!(this.mxcsr & mask)) return 'fault';
    }
    switch (op) {
      case 0x58: return Math.fround(a + b);
      case 0x59: return Math.fround(a * b);
      case 0x5c: return Math.fround(a - b);
      default: return Math.fround(a / b);
    }
  }
}

const f32 = new DataView(new ArrayBuffer(4));

export function bitsToFloat(bits: bigint): number {
  f32.setUint32(0, Number(bits & 0xffffffffn), true);
  return f32.getFloat32(0, true);
}

export function floatToBits(v: number): bigint {
  f32.setFloat32(0, v, true);
  return BigInt(f32.getUint32(0, true));
}
