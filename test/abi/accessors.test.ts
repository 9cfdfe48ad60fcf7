// The TypeScript accessors must put every member where the generated C
// header expects it: each scalar leaf of each structure is written through
// its accessor into a zeroed buffer, then read back by a C program compiled
// against guest-kit/include, which also checks that no other byte changed.

import { describe, expect, it } from 'vitest';
import { execFileSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import * as abi from '../../src/abi/generated/index.js';
import { compile, GUEST_INCLUDE, ROOT, tmpDir } from './probe-harness.js';
import { StartInfo } from '../../src/abi/generated/xen.js';

interface LeafCase {
  id: number; module: string; cls: string; size: number; cPath: string;
  chain: Array<[string, number?]>; offset: number; width: number; signed: boolean;
}

const cases = JSON.parse(fs.readFileSync(path.join(ROOT, 'test/abi/generated/layout-leaves.json'), 'utf8')) as LeafCase[];
const modules = abi as unknown as Record<string, Record<string, new (v: DataView, base?: number) => unknown>>;

function moduleFor(name: string): Record<string, new (v: DataView, base?: number) => unknown> {
  const m = modules[name.replace(/-/g, '_')];
  if (!m) throw new Error(`no generated module ${name}`);
  return m;
}

/** A leaf value with every byte nonzero and distinct from its neighbours' values. */
function pattern(c: LeafCase): bigint {
  let v = 0n;
  for (let j = 0; j < c.width; j++) v |= BigInt(((c.id * 31 + j * 17) % 255) + 1) << BigInt(8 * j);
  return v;
}

/** Writes one leaf through the generated accessor chain (props, `x_at(i)`, `set_x_at(i, v)`). */
function writeLeaf(c: LeafCase, view: DataView): void {
  const Cls = moduleFor(c.module)[c.cls];
  if (!Cls) throw new Error(`no class ${c.cls} in ${c.module}`);
  let obj = new Cls(view, 0) as Record<string, unknown>;
  const raw = pattern(c);
  const signedRaw = c.signed ? BigInt.asIntN(c.width * 8, raw) : raw;
  const value = c.width === 8 ? signedRaw : Number(signedRaw);
  c.chain.forEach(([name, index], k) => {
    const last = k === c.chain.length - 1;
    if (index === undefined) {
      if (last) obj[name] = value;
      else obj = obj[name] as Record<string, unknown>;
    } else if (last) {
      (obj[`set_${name}_at`] as (i: number, v: unknown) => void).call(obj, index, value);
    } else {
      obj = (obj[`${name}_at`] as (i: number) => Record<string, unknown>).call(obj, index);
    }
  });
}

describe('TypeScript accessors against the generated C layout', () => {
  it(`place all ${cases.length} leaves where C reads them, touching no other byte`, () => {
    const dir = tmpDir('accessors');
    const bin = compile(path.join(ROOT, 'test/abi/generated/layout-roundtrip.c'), path.join(dir, 'roundtrip'), [`-I${GUEST_INCLUDE}`]);
    const chunks: Buffer[] = [];
    for (const c of cases) {
      const rec = Buffer.alloc(4 + c.size);
      rec.writeUInt32LE(c.id, 0);
      writeLeaf(c, new DataView(rec.buffer, rec.byteOffset + 4, c.size));
      chunks.push(rec);
    }
    const out = execFileSync(bin, { input: Buffer.concat(chunks), encoding: 'utf8', maxBuffer: 64 << 20 });
    const lines = out.trim().split('\n');
    expect(lines.length).toBe(cases.length);
    const bad: string[] = [];
    for (const line of lines) {
      const [id, value, state] = line.split(' ');
      const c = cases[Number(id)]!;
      const want = '0x' + pattern(c).toString(16);
      if (value !== want || state !== 'clean') bad.push(`${c.cls}.${c.cPath}: wrote ${want}, C read ${value} (${state})`);
    }
    expect(bad).toEqual([]);
  });

  it('refuses a view that does not hold the whole structure', () => {
    expect(() => new StartInfo(new DataView(new ArrayBuffer(StartInfo.SIZE - 1)))).toThrow(RangeError);
    expect(() => new StartInfo(new DataView(new ArrayBuffer(StartInfo.SIZE)), 1)).toThrow(/do not fit/);
  });

  it('refuses array indexes outside the C array', () => {
    const si = StartInfo.over(new ArrayBuffer(StartInfo.SIZE));
    expect(() => si.magic_at(32)).toThrow(RangeError);
    expect(() => si.magic_at(-1)).toThrow(RangeError);
    expect(() => si.magic_at(1.5)).toThrow(RangeError);
  });

  it('writes C strings NUL-terminated and zero-filled, and refuses ones that do not fit', () => {
    const si = StartInfo.over(new ArrayBuffer(StartInfo.SIZE));
    si.magic = 'xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx';
    si.magic = 'xen-3.0-x86_64';
    expect(si.magic).toBe('xen-3.0-x86_64');
    expect(si.magic_at(14)).toBe(0);
    expect(si.magic_at(31)).toBe(0);
    expect(() => { si.magic = 'x'.repeat(32); }).toThrow(/does not fit/);
    expect(() => { si.cmd_line = 'caf\u0101'; }).toThrow(/Latin-1/);
  });
});
