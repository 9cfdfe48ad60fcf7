// Writable page tables: the decoder in brief (no KVM; every form, the
// flags and the refusals are in ptwr-decode.test.ts), and on KVM guests that
// rewrite their own L1 entries through their read-only mapping (mov, lock
// cmpxchg, a 4-byte mov; then byte, word and dword stores, lock or, lock
// and, lock cmpxchg, btr and bts) and ones that try to map their L1
// writable that way, with an 8-byte and a 1-byte store.

import { describe, expect, it } from 'vitest';
import { decodePtStore } from '../../../src/hv/mm/ptwr-decode.js';
import { RFLAGS as FLAGS } from '../../../src/hv/cpu/rflags.js';
import { auditPageTypes } from '../../../src/hv/mm/page-audit.js';
import { elfGuest, guestMachine, runGuest } from '../../support/kvm-harness.js';

const insn = (...b: number[]) => decodePtStore(Uint8Array.from([...b, 0x90, 0x90, 0x90, 0x90, 0x90]));
const rdi = { scale: 1, disp: 0n, ripRelative: false, base: 'rdi' };

describe('page-table store decoder', () => {
  it('decodes mov, xchg and cmpxchg stores with their operands and lengths', () => {
    expect(insn(0x48, 0x89, 0x07)).toEqual({ op: 'mov', size: 8, length: 3, lock: false, mem: rdi, reg: { reg: 'rax', high: false } }); // mov %rax,(%rdi)
    expect(insn(0x4c, 0x89, 0x67, 0x08)).toMatchObject({ op: 'mov', size: 8, length: 4, reg: { reg: 'r12' }, mem: { disp: 8n } });  // mov %r12,8(%rdi)
    expect(insn(0x89, 0x0c, 0x24)).toMatchObject({ op: 'mov', size: 4, length: 3, reg: { reg: 'rcx' }, mem: { base: 'rsp' } });    // mov %ecx,(%rsp)
    expect(insn(0x48, 0x89, 0x84, 0xc8, 0x00, 0x01, 0x00, 0x00)).toMatchObject({ length: 8 });                                       // SIB + disp32
    expect(insn(0x48, 0xc7, 0x07, 0x01, 0x00, 0x00, 0x80)).toMatchObject({ op: 'mov', size: 8, length: 7, imm: 0xffffffff80000001n });
    expect(insn(0xf0, 0x4c, 0x0f, 0xb1, 0x27)).toMatchObject({ op: 'cmpxchg', size: 8, length: 5, lock: true, reg: { reg: 'r12' } });
    expect(insn(0x48, 0x87, 0x37)).toMatchObject({ op: 'xchg', size: 8, length: 3, reg: { reg: 'rsi' } });
    expect(insn(0x48, 0x89, 0x05, 0x10, 0x00, 0x00, 0x00)).toMatchObject({ length: 7, mem: { ripRelative: true } });                 // RIP-relative
  });

  it('decodes 1- and 2-byte stores and the read-modify-write forms kernels use', () => {
    expect(insn(0x66, 0x89, 0x07)).toMatchObject({ op: 'mov', size: 2, length: 3 });             // mov %ax,(%rdi)
    expect(insn(0x88, 0x07)).toMatchObject({ op: 'mov', size: 1, length: 2 });                   // mov %al,(%rdi)
    expect(insn(0xf0, 0x80, 0x27, 0xfd)).toMatchObject({ op: 'and', size: 1, length: 4, imm: 0xfdn });
    expect(insn(0xf0, 0x48, 0x0f, 0xb3, 0x07)).toMatchObject({ op: 'btr', size: 8, length: 5 });
  });

  it('declines everything else, saying why', () => {
    expect(insn(0x48, 0x89, 0xc7)).toMatch(/register operand/);                         // register to register
    expect(insn(0xf0, 0x48, 0x89, 0x07)).toMatch(/lock mov/);                           // lock mov is invalid
    expect(decodePtStore(Uint8Array.from([0x48, 0xc7, 0x47, 0x08]))).toBe('truncated instruction');
    expect(decodePtStore(new Uint8Array(0))).toBe('truncated instruction');
    expect(insn(0x0f, 0x0b)).toMatch(/opcode 0f 0b/);                                   // ud2
  });
});

describe('writable page tables on KVM', () => {
  const m = guestMachine({ memoryBytes: 32 << 20 });

  it('emulates a guest\'s stores to its own L1 as validated updates, and the guest sees the new mappings', async () => {
    const free = m.hv.frames.free;
    const { d, end, out: words } = await runGuest(m.hv, elfGuest('ptwr'));
    expect(end).toEqual({ kind: 'shutdown', reason: 0, reasonName: 'poweroff' });
    expect([0, 8, 16].map((o) => words.readBigUInt64LE(o))).toEqual([0xbbbbbbbbn, 0xaaaaaaaan, 0xbbbbbbbbn]);
    expect(d.exitCounts.get('page-table write')).toBe(3);
    expect(m.hv.frames.free).toBe(free);
  });

  it('shows the guest a page unmapped and then mapped again (the mapping is an addition: no flush)', async () => {
    const { end, out: w } = await runGuest(m.hv, elfGuest('remap'));
    expect(end).toEqual({ kind: 'shutdown', reason: 0, reasonName: 'poweroff' });
    expect([0, 8, 16, 24].map((o) => w.readBigUInt64LE(o))).toEqual([0xaaaaaaaan, 0xbbbbbbbbn, 0n, 0n]);
  });

  it('refuses a store that would map the L1 writable: the fault stands and only that domain goes', async () => {
    const bystander = m.hv.createDomain(elfGuest('transports'), { memoryBytes: 8 << 20 });
    const { end } = await runGuest(m.hv, elfGuest('ptwr-bad'));
    expect(end.kind).toBe('crashed');
    expect(end.kind === 'crashed' && end.reason).toMatch(/unhandled #PF page fault \(vector 14, error code 0x7\).*as a page-table update it was refused: PT-3: frame 0x[0-9a-f]+ cannot be mapped writable/);
    expect(auditPageTypes(m.hv.frames, [bystander.auditView()])).toEqual([]);
    expect((await m.hv.run(bystander, { timeoutMs: 20_000 })).kind).toBe('shutdown');
  });

  it('emulates byte, word and dword stores, lock or, lock and, lock cmpxchg, btr and bts, with the flags the CPU sets', async () => {
    const free = m.hv.frames.free;
    const { d, end, out: buf } = await runGuest(m.hv, elfGuest('ptwr-rmw'));
    expect(end).toEqual({ kind: 'shutdown', reason: 0, reasonName: 'poweroff' });
    expect(buf.length).toBe(21 * 8);
    const q = (i: number) => buf.readBigUInt64LE(8 * i);
    // The layout is at `out` in test/guests/elf/ptwr-rmw.S. The CPU may set
    // the accessed and dirty bits of an entry it walks: they are masked.
    const AD = 0x60n;
    const same = (a: bigint, b: bigint) => expect((a & ~AD).toString(16)).toBe((b & ~AD).toString(16));
    const [a, b] = [q(0), q(1)];
    expect(a & 1n).toBe(1n);
    same(q(2), a & ~1n);                                         // 1. lock btrq $0: not present
    same(q(3), (b & ~0xffn) | (a & 0xfen));                      // 2. B's bytes 1-7 (movb %ch, movw, movl)
    same(q(4), (b & ~0xffn) | (a & 0xffn));                      // 3. lock orb $1: present
    expect(q(7)).toBe(0xbbbbbbbbn);                              //    A reads B's marker
    expect(q(5) & 0x20n).toBe(0n);                               // 4. lock andq $~0x20
    same(q(5), q(4));
    same(q(6), a);                                               // 6. A's entry again
    expect(q(8)).toBe(0xaaaaaaaan);                              //    A reads its own marker
    // Flags: as the CPU sets them on the copy, for the flags each instruction defines.
    const { CF, PF, AF, ZF, SF, OF } = FLAGS;
    const defined = [CF, CF | PF | ZF | SF | OF, CF | PF | ZF | SF | OF, CF | PF | AF | ZF | SF | OF]; // btr, or, and, cmpxchg
    defined.forEach((m, i) => expect([i, q(13 + i) & m]).toEqual([i, q(9 + i) & m]));
    expect(q(16) & ZF).toBe(0n);                                 // 5. the cmpxchg failed...
    expect(q(20)).toBe(q(19));                                   //    ...and loaded the entry into rax, as on the copy
    same(q(20), q(5));
    expect(q(17) & CF).toBe(CF);                                 // 6. lock btrq %rax: bit 0 was set
    expect(q(18) & CF).toBe(0n);                                 //    lock btsq with offset -64: bit 0 was clear
    expect(d.exitCounts.get('page-table write')).toBe(10);
    expect(m.hv.frames.free).toBe(free);
  });

  it('refuses a 1-byte lock or that would map the L1 writable, as it refuses the 8-byte store', async () => {
    const { d, end } = await runGuest(m.hv, elfGuest('ptwr-bad-byte'));
    expect(end.kind).toBe('crashed');
    expect(end.kind === 'crashed' && end.reason).toMatch(/unhandled #PF page fault \(vector 14, error code 0x7\).*as a page-table update it was refused: PT-3: frame 0x[0-9a-f]+ cannot be mapped writable/);
    expect(d.exitCounts.get('page-table write')).toBe(0);
  });
});
