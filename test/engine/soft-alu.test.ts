// Differential test of the software CPU's integer instructions against the
// host's own processor. A small C program (alu-oracle.c, built with gcc at
// test time) runs each case natively with inline asm; the software engine
// runs the same instruction, encoded by hand below, in a probe guest at
// CPL 3 followed by `out %al,$0x10`. Both report rax, rbx, rcx and rdx in
// full (so the upper bits a byte, word or dword operation must keep, or a
// dword operation must clear, are checked too) and RFLAGS.
//
// Cases come from a seeded PRNG (the same every run), with edge values
// mixed in: 0, 1, all ones, the sign bit and its neighbours, small counts,
// garbage in the bits above the operand. The arithmetic flags are compared
// only where the architecture defines them (Intel SDM vol. 2, AMD APM
// vol. 3, "Flags Affected"); a flag an instruction leaves unaffected is
// defined (it keeps its input value). "count" is the shift count after
// masking with 31 (63 for 64-bit operands):
//
//   add adc sub sbb cmp neg       all six
//   inc dec                       all six (CF is kept)
//   not                           all six (none is affected)
//   xadd cmpxchg popcnt           all six
//   and or xor                    all but AF
//   shl shr sar                   count 0: all six (kept); else CF ZF SF PF, OF only if count = 1;
//                                 shl and shr leave CF undefined for count >= operand width (8-, 16-bit)
//   rol ror rcl rcr               count 0: all six; else CF, SF ZF AF PF (kept), OF only if count = 1
//   shld shrd                     count 0: all six; else CF ZF SF PF, OF only if count = 1
//                                 (a 16-bit count above 16 leaves the result undefined: not generated)
//   imul (2-op), mul, imul (1-op) CF OF
//   div idiv                      none (registers only; dividing cases that fault are not generated)
//   bsf bsr                       ZF (only non-zero sources: the destination is undefined for 0)
//   tzcnt lzcnt                   CF ZF (run only if the host has bmi1 / abm)
//   bt bts btr btc                CF, ZF (kept)
//
// The host must be x86-64; gcc must be on the path (a missing gcc fails
// the test, it is not skipped).

import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { execFileSync, spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';
import { SoftEngine } from '../../src/engine/soft/soft-engine.js';
import type { Exit } from '../../src/engine/types.js';
import { bootTestGuest, LAYOUT, PORT, type TestGuest } from '../../src/engine/probe-guest.js';

const ORACLE_SOURCE = fileURLToPath(new URL('./alu-oracle.c', import.meta.url));
const CF = 0x1, PF = 0x4, AF = 0x10, ZF = 0x40, SF = 0x80, OF = 0x800;
const ARITH = CF | PF | AF | ZF | SF | OF;
/** The seed of every case; change it to explore other inputs. */
const SEED = 0x5eeda1;
/** Random cases per instruction and operand size. */
const PER_SIZE = 100;
const MAX_REPORTED = 30;

type Size = 1 | 2 | 4 | 8;
const ALL_SIZES: readonly Size[] = [1, 2, 4, 8];
const WIDE_SIZES: readonly Size[] = [2, 4, 8];

interface Regs { rax: bigint; rbx: bigint; rcx: bigint; rdx: bigint }
const REG_NAMES = ['rax', 'rbx', 'rcx', 'rdx'] as const;

interface Case { op: string; size: Size; regs: Regs; flags: number }
type Outcome = { regs: Regs; flags: number } | { error: string };

const mask = (size: Size): bigint => (1n << BigInt(size * 8)) - 1n;
const sign = (size: Size): bigint => 1n << BigInt(size * 8 - 1);
const hex = (v: bigint | number): string => `0x${v.toString(16)}`;

/** A 32-bit xorshift: small, fast and the same on every host. */
class Rng {
  private s: number;
  constructor(seed: number) { this.s = seed >>> 0 || 1; }
  u32(): number {
    let x = this.s;
    x = (x ^ (x << 13)) >>> 0;
    x = (x ^ (x >>> 17)) >>> 0;
    x = (x ^ (x << 5)) >>> 0;
    return (this.s = x);
  }
  below(n: number): number { return this.u32() % n; }
  u64(): bigint { return (BigInt(this.u32()) << 32n) | BigInt(this.u32()); }
  pick<T>(xs: readonly T[]): T { return xs[this.below(xs.length)]!; }
}

/** An operand of `size` bytes: an edge value about half the time, else random bits. */
function operand(rng: Rng, size: Size): bigint {
  const m = mask(size), s = sign(size);
  switch (rng.below(16)) {
    case 0: return 0n;
    case 1: return 1n;
    case 2: return m;
    case 3: return s;
    case 4: return s - 1n;
    case 5: return s + 1n;
    case 6: return m - 1n;
    case 7: return BigInt(rng.below(33));
    case 8: return m - BigInt(rng.below(33));
    case 9: return rng.u64() & rng.u64() & m; // sparse
    case 10: return (rng.u64() | rng.u64()) & m; // dense
    default: return rng.u64() & m;
  }
}

/** `v` in the low `size` bytes of a register whose other bits are garbage (which the instruction must keep or clear). */
function inReg(rng: Rng, size: Size, v: bigint): bigint {
  return size === 8 ? v : (rng.u64() & ~mask(size)) | (v & mask(size));
}

/** A shift count in cl (rcx's other bits are garbage): the edges of every width, and random bytes. */
function countReg(rng: Rng, size: Size): bigint {
  const bits = size * 8;
  const count = rng.below(3) === 0 ? rng.below(256) : rng.pick([0, 1, 2, 3, 7, 8, 9, 15, 16, 17, 18, 31, 32, 33, 34, 63, 64, 65, 255, bits - 1, bits, bits + 1]);
  return (rng.u64() & ~0xffn) | BigInt(count);
}

/** The shift count the hardware uses: cl masked to 5 bits (6 for 64-bit operands). */
const maskedCount = (c: Case): number => Number(c.regs.rcx & 0xffn) & (c.size === 8 ? 63 : 31);

interface Op {
  name: string;
  sizes: readonly Size[];
  /** The instruction's bytes, prefixes included. */
  encode(size: Size): number[];
  /** The arithmetic flags the architecture defines after this case. */
  defined(c: Case): number;
  /** The input registers (default: rax and rbx operands, rcx a count, rdx garbage). */
  inputs?(rng: Rng, size: Size): Regs;
  /** A /proc/cpuinfo flag the host must have for the instruction to exist there. */
  feature?: string;
}

/**
 * 66 for 16-bit operands, then f3 if asked, REX.W for 64-bit operands, the
 * opcode (its last byte with bit 0 set for non-byte operands when `w`) and
 * a register-direct ModRM.
 */
function encode(size: Size, opcode: readonly number[], modrm: number, opts: { w?: boolean; f3?: boolean } = {}): number[] {
  const out: number[] = [];
  if (size === 2) out.push(0x66);
  if (opts.f3) out.push(0xf3);
  if (size === 8) out.push(0x48);
  const op = [...opcode];
  if (opts.w && size !== 1) op[op.length - 1]! |= 1;
  return [...out, ...op, modrm];
}

/** ModRM, register-direct: reg field, r/m field (0 rax, 1 rcx, 2 rdx, 3 rbx). */
const rr = (reg: number, rm: number): number => 0xc0 | (reg << 3) | rm;
const RAX = 0, RCX = 1, RBX = 3;

const all = (): number => ARITH;

function defaultInputs(rng: Rng, size: Size): Regs {
  return { rax: inReg(rng, size, operand(rng, size)), rbx: inReg(rng, size, operand(rng, size)), rcx: countReg(rng, size), rdx: rng.u64() };
}

/** add r/m, r and its kin: rbx into rax. */
const binary = (name: string, base: number, defined: (c: Case) => number = all): Op =>
  ({ name, sizes: ALL_SIZES, encode: (s) => encode(s, [base], rr(RBX, RAX), { w: true }), defined });

/** inc, dec, not, neg on rax. */
const unary = (name: string, opcode: number, n: number): Op =>
  ({ name, sizes: ALL_SIZES, encode: (s) => encode(s, [opcode], rr(n, RAX), { w: true }), defined: all });

/** Shifts and rotates of rax by cl. */
function shift(name: string, n: number): Op {
  const rotate = n < 4;
  return {
    name, sizes: ALL_SIZES,
    encode: (s) => encode(s, [0xd2], rr(n, RAX), { w: true }),
    defined(c) {
      const count = maskedCount(c);
      if (count === 0) return ARITH;
      const of = count === 1 ? OF : 0;
      if (rotate) return (ARITH & ~OF) | of;
      const cf = (name === 'shl' || name === 'shr') && count >= c.size * 8 ? 0 : CF;
      return cf | ZF | SF | PF | of;
    },
  };
}

/** mul, imul, div, idiv of rdx:rax (ax for bytes) by rbx. */
function muldiv(name: string, n: number): Op {
  const division = n >= 6;
  return {
    name, sizes: ALL_SIZES,
    encode: (s) => encode(s, [0xf6], rr(n, RBX), { w: true }),
    defined: () => (division ? 0 : CF | OF),
    inputs: division ? (rng, size) => divisionInputs(rng, size, n === 7) : undefined,
  };
}

/** A division that does not fault: divisor not 0, quotient within the operand. */
function divisionInputs(rng: Rng, size: Size, signed: boolean): Regs {
  const bits = BigInt(size * 8), m = mask(size);
  let d = operand(rng, size) || BigInt(1 + rng.below(m > 1000n ? 1000 : 100));
  let lo = operand(rng, size), hi = operand(rng, size);
  const fits = (): boolean => {
    if (!signed) return hi < d;
    const q = BigInt.asIntN(Number(bits) * 2, (hi << bits) | lo) / BigInt.asIntN(Number(bits), d);
    return q >= -sign(size) && q < sign(size);
  };
  if (!signed && !fits()) hi = rng.below(4) === 0 ? d - 1n : rng.u64() % d;
  if (signed && !fits()) hi = lo & sign(size) ? m : 0n; // the dividend sign-extended: fits unless MIN / -1
  if (signed && !fits()) d = 1n;
  const rax = rng.u64(), rdx = rng.u64();
  if (size === 1) return { rax: (rax & ~0xffffn) | (hi << 8n) | lo, rbx: inReg(rng, size, d), rcx: rng.u64(), rdx };
  return { rax: inReg(rng, size, lo), rbx: inReg(rng, size, d), rcx: rng.u64(), rdx: inReg(rng, size, hi) };
}

/** bsf, bsr, tzcnt, lzcnt, popcnt: rbx into rax. */
function scan(name: string, opcode: number, f3: boolean, defined: number, feature?: string): Op {
  return {
    name, sizes: WIDE_SIZES, feature, defined: () => defined,
    encode: (s) => encode(s, [0x0f, opcode], rr(RAX, RBX), { f3 }),
    inputs(rng, size) {
      const regs = defaultInputs(rng, size);
      // bsf and bsr leave the destination undefined for a zero source; the others are tried on zero too.
      if (!f3 && (regs.rbx & mask(size)) === 0n) regs.rbx |= 1n << BigInt(rng.below(size * 8));
      return regs;
    },
  };
}

/** bt, bts, btr, btc with the bit offset in rbx, the bit string in rax. */
const bitTest = (name: string, opcode: number): Op =>
  ({ name, sizes: WIDE_SIZES, encode: (s) => encode(s, [0x0f, opcode], rr(RBX, RAX)), defined: () => CF | ZF });

/** shld, shrd: rax is the destination, rbx the source, cl the count. */
function doubleShift(name: string, opcode: number): Op {
  return {
    name, sizes: WIDE_SIZES,
    encode: (s) => encode(s, [0x0f, opcode], rr(RBX, RAX)),
    defined(c) {
      const count = maskedCount(c);
      return count === 0 ? ARITH : CF | ZF | SF | PF | (count === 1 ? OF : 0);
    },
    inputs(rng, size) {
      const regs = defaultInputs(rng, size);
      while (size === 2 && (Number(regs.rcx & 0xffn) & 31) > 16) regs.rcx = countReg(rng, size);
      return regs;
    },
  };
}

const OPS: readonly Op[] = [
  binary('add', 0x00), binary('or', 0x08, () => ARITH & ~AF), binary('adc', 0x10), binary('sbb', 0x18),
  binary('and', 0x20, () => ARITH & ~AF), binary('sub', 0x28), binary('xor', 0x30, () => ARITH & ~AF), binary('cmp', 0x38),
  unary('inc', 0xfe, 0), unary('dec', 0xfe, 1), unary('not', 0xf6, 2), unary('neg', 0xf6, 3),
  shift('rol', 0), shift('ror', 1), shift('rcl', 2), shift('rcr', 3), shift('shl', 4), shift('shr', 5), shift('sar', 7),
  { name: 'imul2', sizes: WIDE_SIZES, encode: (s) => encode(s, [0x0f, 0xaf], rr(RAX, RBX)), defined: () => CF | OF },
  muldiv('mul', 4), muldiv('imul1', 5), muldiv('div', 6), muldiv('idiv', 7),
  scan('bsf', 0xbc, false, ZF), scan('bsr', 0xbd, false, ZF),
  scan('tzcnt', 0xbc, true, CF | ZF, 'bmi1'), scan('lzcnt', 0xbd, true, CF | ZF, 'abm'), scan('popcnt', 0xb8, true, ARITH, 'popcnt'),
  bitTest('bt', 0xa3), bitTest('bts', 0xab), bitTest('btr', 0xb3), bitTest('btc', 0xbb),
  { name: 'xadd', sizes: ALL_SIZES, encode: (s) => encode(s, [0x0f, 0xc0], rr(RBX, RAX), { w: true }), defined: all },
  {
    // cmpxchg %cl/%cx/%ecx/%rcx, %bl/%bx/%ebx/%rbx: the accumulator equals the destination about half the time.
    name: 'cmpxchg', sizes: ALL_SIZES, encode: (s) => encode(s, [0x0f, 0xb0], rr(RCX, RBX), { w: true }), defined: all,
    inputs(rng, size) {
      const rbx = inReg(rng, size, operand(rng, size));
      const rax = rng.below(2) ? inReg(rng, size, rbx) : inReg(rng, size, operand(rng, size));
      return { rax, rbx, rcx: inReg(rng, size, operand(rng, size)), rdx: rng.u64() };
    },
  },
  doubleShift('shld', 0xa5), doubleShift('shrd', 0xad),
];

const HOST_FLAGS = new Set(
  process.platform === 'linux' ? (/^flags\s*:(.*)$/m.exec(fs.readFileSync('/proc/cpuinfo', 'utf8'))?.[1] ?? '').trim().split(/\s+/) : [],
);
const onHost = (op: Op): boolean => op.feature === undefined || HOST_FLAGS.has(op.feature);

function makeCases(): Case[] {
  const rng = new Rng(SEED);
  const cases: Case[] = [];
  for (const op of OPS) {
    if (!onHost(op)) continue;
    for (const size of op.sizes) {
      for (let i = 0; i < PER_SIZE; i++) {
        const regs = op.inputs ? op.inputs(rng, size) : defaultInputs(rng, size);
        cases.push({ op: op.name, size, regs, flags: rng.u32() & ARITH });
      }
    }
  }
  return cases;
}

/** Builds the oracle; a host without gcc fails here, loudly. */
function buildOracle(dir: string): string {
  const bin = path.join(dir, 'alu-oracle');
  try {
    execFileSync('gcc', ['-O1', '-o', bin, ORACLE_SOURCE], { stdio: ['ignore', 'pipe', 'pipe'] });
  } catch (e) {
    const err = e as NodeJS.ErrnoException & { stderr?: Buffer };
    if (err.code === 'ENOENT') throw new Error('gcc is not on the path: this test compiles test/engine/alu-oracle.c with it to run instructions on the host CPU');
    throw new Error(`gcc failed to build test/engine/alu-oracle.c:\n${err.stderr?.toString() ?? String(e)}`);
  }
  return bin;
}

/** Every case on the host CPU, through one oracle process. */
function runOracle(bin: string, cases: readonly Case[]): Outcome[] {
  const input = cases.map((c) => `${c.op} ${c.size} ${[c.regs.rax, c.regs.rbx, c.regs.rcx, c.regs.rdx, c.flags | 2].map((v) => v.toString(16)).join(' ')}\n`).join('');
  const res = spawnSync(bin, [], { input, encoding: 'utf8', maxBuffer: 256 << 20 });
  if (res.error) throw res.error;
  if (res.status !== 0) throw new Error(`the oracle failed (status ${res.status}, signal ${res.signal}): ${res.stderr}`);
  const lines = res.stdout.trimEnd().split('\n');
  if (lines.length !== cases.length) throw new Error(`the oracle answered ${lines.length} of ${cases.length} cases`);
  return lines.map((line) => {
    const [rax, rbx, rcx, rdx, flags] = line.split(' ').map((w) => BigInt(`0x${w}`)) as [bigint, bigint, bigint, bigint, bigint];
    return { regs: { rax, rbx, rcx, rdx }, flags: Number(flags) };
  });
}

function describeExit(e: Exit): string {
  if (e.kind === 'io') return `io ${e.direction} port ${hex(e.port)}${e.port === PORT.FAULT ? ` (guest exception, vector ${e.data[0]})` : ''}`;
  if (e.kind === 'internal-error') return `internal-error: ${e.message ?? ''}`;
  return e.kind;
}

describe.skipIf(process.arch !== 'x64')('software CPU integer instructions against the host CPU', () => {
  const OP_BY_NAME = new Map(OPS.map((op) => [op.name, op]));
  let engine: SoftEngine;
  let guest: TestGuest;
  let dir: string | undefined;
  const cases = makeCases();
  const mismatches = new Map<string, string[]>();
  const counts = new Map<string, number>();
  let oracleBin = '';

  /** The case in the software CPU: the instruction then `out %al,$0x10`, from CPL 3. */
  function runSoft(c: Case): Outcome {
    const code = [...OP_BY_NAME.get(c.op)!.encode(c.size), 0xe6, PORT.A];
    guest.main.set(code, LAYOUT.CODE);
    const r = guest.vcpu.regs;
    r.rax = c.regs.rax; r.rbx = c.regs.rbx; r.rcx = c.regs.rcx; r.rdx = c.regs.rdx;
    r.rsp = BigInt(LAYOUT.USER_STACK);
    r.rip = BigInt(LAYOUT.CODE);
    r.rflags = BigInt(c.flags | 2);
    const e = guest.vcpu.run();
    if (e.kind !== 'io' || e.port !== PORT.A || r.rip !== BigInt(LAYOUT.CODE + code.length)) {
      // A fault leaves the vCPU in its ring-0 stub: start again from a fresh guest.
      const error = `${describeExit(e)} at rip ${hex(r.rip)}`;
      guest.destroy();
      guest = bootTestGuest(engine, 'pio');
      return { error };
    }
    return { regs: { rax: r.rax, rbx: r.rbx, rcx: r.rcx, rdx: r.rdx }, flags: Number(r.rflags) };
  }

  function compare(c: Case, host: Outcome, soft: Outcome): string | undefined {
    const bytes = OP_BY_NAME.get(c.op)!.encode(c.size).map((b) => b.toString(16).padStart(2, '0')).join(' ');
    const input = `${c.op} ${c.size} [${bytes}] rax=${hex(c.regs.rax)} rbx=${hex(c.regs.rbx)} rcx=${hex(c.regs.rcx)} rdx=${hex(c.regs.rdx)} flagsIn=${hex(c.flags)}`;
    if ('error' in host) return `${input}: host failed: ${host.error}`;
    if ('error' in soft) return `${input}: soft ${soft.error}`;
    const defined = OP_BY_NAME.get(c.op)!.defined(c);
    // A failed 32-bit cmpxchg with a register destination: AMD leaves that register whole (as the software
    // CPU does), Intel writes it back and so clears its upper half. Only its low half is compared.
    const vendorDependent = (n: string): boolean => c.op === 'cmpxchg' && c.size === 4 && n === 'rbx' && (c.regs.rax & 0xffffffffn) !== (c.regs.rbx & 0xffffffffn);
    const regs = REG_NAMES.filter((n) => vendorDependent(n) ? (host.regs[n] & 0xffffffffn) !== (soft.regs[n] & 0xffffffffn) : host.regs[n] !== soft.regs[n]);
    const flagDiff = (host.flags ^ soft.flags) & defined;
    if (!regs.length && !flagDiff) return undefined;
    const show = (o: { regs: Regs; flags: number }): string => [...regs.map((n) => `${n}=${hex(o.regs[n])}`), `flags=${hex(o.flags & defined)}`].join(', ');
    return `${input}: host=(${show(host)}) soft=(${show(soft)}) diff=flags^${hex(flagDiff)} (defined ${hex(defined)})`;
  }

  beforeAll(() => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'paravane-alu-'));
    oracleBin = buildOracle(dir);
    const host = runOracle(oracleBin, cases);
    engine = new SoftEngine();
    guest = bootTestGuest(engine, 'pio');
    cases.forEach((c, i) => {
      counts.set(c.op, (counts.get(c.op) ?? 0) + 1);
      const m = compare(c, host[i]!, runSoft(c));
      if (!m) return;
      const list = mismatches.get(c.op) ?? [];
      if (list.length < MAX_REPORTED) list.push(m);
      mismatches.set(c.op, list);
    });
  });

  afterAll(() => {
    guest?.destroy();
    engine?.close();
    if (dir) fs.rmSync(dir, { recursive: true, force: true });
  });

  it('has an oracle that runs instructions on the host with the flags it is given', () => {
    const probe: Case[] = [
      { op: 'add', size: 1, regs: { rax: 0x1ffn, rbx: 1n, rcx: 0n, rdx: 0n }, flags: 0 },
      { op: 'adc', size: 8, regs: { rax: 1n, rbx: 1n, rcx: 0n, rdx: 0n }, flags: CF },
      { op: 'add', size: 4, regs: { rax: 0xffffffff00000001n, rbx: 1n, rcx: 0n, rdx: 0n }, flags: 0 },
    ];
    const [a, b, c] = runOracle(oracleBin, probe) as [Outcome, Outcome, Outcome];
    expect(a).toMatchObject({ regs: { rax: 0x100n } });
    expect('flags' in a && a.flags & ARITH).toBe(CF | PF | AF | ZF);
    expect(b).toMatchObject({ regs: { rax: 3n } });
    expect(c).toMatchObject({ regs: { rax: 2n } }); // a 32-bit result clears the upper half
    expect(cases.length).toBeGreaterThan(5000);
  });

  for (const op of OPS) {
    it.skipIf(!onHost(op))(`${op.name} (sizes ${op.sizes.join(', ')}) matches the host`, () => {
      expect(counts.get(op.name)).toBe(op.sizes.length * PER_SIZE);
      expect(mismatches.get(op.name) ?? []).toEqual([]);
    });
  }
});
