// Writable page tables: decoding the stores kernels use on page-table
// entries (no KVM), and on KVM a guest that rewrites its own L1 entries
// through their read-only mapping (mov, lock cmpxchg, a 4-byte mov) and
// one that tries to map its L1 writable that way.

import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { decodePtStore } from '../../src/hv/ptwr.js';
import { HAVE_KVM } from '../engine/kvm-gate.js';
import { KvmEngine } from '../../src/engine/kvm/kvm-engine.js';
import { Hypervisor } from '../../src/hv/hypervisor.js';
import { auditPageTypes } from '../../src/hv/page-audit.js';

const insn = (...b: number[]) => decodePtStore(Uint8Array.from([...b, 0x90, 0x90, 0x90, 0x90, 0x90]));

describe('page-table store decoder', () => {
  it('decodes mov, xchg and cmpxchg stores with their operands and lengths', () => {
    expect(insn(0x48, 0x89, 0x07)).toEqual({ kind: 'mov', size: 8, length: 3, reg: 'rax' });          // mov %rax,(%rdi)
    expect(insn(0x4c, 0x89, 0x67, 0x08)).toEqual({ kind: 'mov', size: 8, length: 4, reg: 'r12' });    // mov %r12,8(%rdi)
    expect(insn(0x89, 0x0c, 0x24)).toEqual({ kind: 'mov', size: 4, length: 3, reg: 'rcx' });          // mov %ecx,(%rsp)
    expect(insn(0x48, 0x89, 0x84, 0xc8, 0x00, 0x01, 0x00, 0x00)).toMatchObject({ length: 8 });         // SIB + disp32
    expect(insn(0x48, 0xc7, 0x07, 0x01, 0x00, 0x00, 0x80)).toEqual({ kind: 'mov', size: 8, length: 7, imm: 0xffffffff80000001n });
    expect(insn(0xf0, 0x4c, 0x0f, 0xb1, 0x27)).toEqual({ kind: 'cmpxchg', size: 8, length: 5, reg: 'r12' });
    expect(insn(0x48, 0x87, 0x37)).toEqual({ kind: 'xchg', size: 8, length: 3, reg: 'rsi' });
    expect(insn(0x48, 0x89, 0x05, 0x10, 0x00, 0x00, 0x00)).toMatchObject({ length: 7 });               // RIP-relative
  });

  it('declines everything else', () => {
    expect(insn(0x48, 0x89, 0xc7)).toBeUndefined();          // register to register
    expect(insn(0x66, 0x89, 0x07)).toBeUndefined();          // 2-byte store
    expect(insn(0x88, 0x07)).toBeUndefined();                // 1-byte store
    expect(insn(0xf0, 0x48, 0x89, 0x07)).toBeUndefined();    // lock mov is invalid
    expect(decodePtStore(Uint8Array.from([0x48, 0xc7, 0x47, 0x08]))).toBeUndefined(); // truncated immediate
    expect(decodePtStore(new Uint8Array(0))).toBeUndefined();
    expect(insn(0x0f, 0x0b)).toBeUndefined();                // ud2
  });
});

const ELF = path.resolve(import.meta.dirname, '../guests/build/elf');

describe.skipIf(!HAVE_KVM)('writable page tables on KVM', () => {
  let engine: KvmEngine;
  let hv: Hypervisor;
  beforeAll(() => {
    engine = new KvmEngine();
    hv = new Hypervisor(engine, { memoryBytes: 32 << 20 });
  });
  afterAll(() => {
    hv?.close();
    engine?.close();
  });

  it('emulates a guest\'s stores to its own L1 as validated updates, and the guest sees the new mappings', async () => {
    const free = hv.frames.free;
    const out: Buffer[] = [];
    const d = hv.createDomain(fs.readFileSync(path.join(ELF, 'ptwr.elf')), { memoryBytes: 8 << 20, console: (b) => out.push(Buffer.from(b)) });
    const end = await hv.run(d, { timeoutMs: 20_000 });
    expect(end).toEqual({ kind: 'shutdown', reason: 0, reasonName: 'poweroff' });
    const words = Buffer.concat(out);
    expect([0, 8, 16].map((o) => words.readBigUInt64LE(o))).toEqual([0xbbbbbbbbn, 0xaaaaaaaan, 0xbbbbbbbbn]);
    expect(d.exitCounts.get('page-table write')).toBe(3);
    expect(hv.frames.free).toBe(free);
  });

  it('shows the guest a page unmapped and then mapped again (the mapping is an addition: no flush)', async () => {
    const out: Buffer[] = [];
    const d = hv.createDomain(fs.readFileSync(path.join(ELF, 'remap.elf')), { memoryBytes: 8 << 20, console: (b) => out.push(Buffer.from(b)) });
    expect(await hv.run(d, { timeoutMs: 20_000 })).toEqual({ kind: 'shutdown', reason: 0, reasonName: 'poweroff' });
    const w = Buffer.concat(out);
    expect([0, 8, 16, 24].map((o) => w.readBigUInt64LE(o))).toEqual([0xaaaaaaaan, 0xbbbbbbbbn, 0n, 0n]);
  });

  it('refuses a store that would map the L1 writable: the fault stands and only that domain goes', async () => {
    const bystander = hv.createDomain(fs.readFileSync(path.join(ELF, 'transports.elf')), { memoryBytes: 8 << 20 });
    const d = hv.createDomain(fs.readFileSync(path.join(ELF, 'ptwr-bad.elf')), { memoryBytes: 8 << 20 });
    const end = await hv.run(d, { timeoutMs: 20_000 });
    expect(end.kind).toBe('crashed');
    expect(end.kind === 'crashed' && end.reason).toMatch(/unhandled #PF page fault \(vector 14, error code 0x7\).*as a page-table update it was refused: PT-3: frame 0x[0-9a-f]+ cannot be mapped writable/);
    expect(auditPageTypes(hv.frames, [bystander.auditView()])).toEqual([]);
    expect((await hv.run(bystander, { timeoutMs: 20_000 })).kind).toBe('shutdown');
  });
});
