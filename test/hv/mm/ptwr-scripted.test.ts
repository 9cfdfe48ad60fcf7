// Writable page tables end to end on the scripted engine (no KVM): a guest
// kernel store into one of its own L1 tables, which it maps read-only,
// faults, and the core emulates it as a validated entry update, through
// the same L1 path as mmu_update; a store that would map a frame the
// domain does not own is refused and changes nothing.

import { afterEach, describe, expect, it } from 'vitest';
import { PageType } from '../../../src/hv/mm/frames.js';
import { parseGuestKernel } from '../../../src/hv/domain/elf.js';
import { scriptedGuest, ELF_DIR, type ScriptedGuest } from '../../support/scripted.js';
import * as fs from 'node:fs';
import * as path from 'node:path';

let g: ScriptedGuest;
afterEach(() => g?.hv.close());
const stop = () => ({ kind: 'interrupted' as const });
const MOV_RAX_TO_RDI = Uint8Array.of(0x48, 0x89, 0x07); // mov %rax,(%rdi)

/** An L1 of the boot tables, and its last slot that maps an ordinary data page (the slot's guest-virtual address, its entry). */
function bootL1(g: ScriptedGuest): { mfn: number; slot: number; slotVa: bigint; old: bigint } {
  const virtBase = parseGuestKernel(fs.readFileSync(path.join(ELF_DIR, 'minimal.elf'))).virtBase;
  const ft = g.hv.frames;
  for (let pfn = g.d.layout.pfn.ptBase; pfn < g.d.layout.pfn.ptBase + g.d.layout.nrPtFrames; pfn++) {
    const mfn = g.d.memory.mfnOf(pfn);
    if (ft.type[mfn] !== PageType.l1) continue;
    const words = ft.words(mfn);
    for (let slot = 511; slot >= 0; slot--) {
      const e = words[slot]!;
      if (!(e & 1n) || ft.type[Number((e >> 12n) & 0xffffffffffn)] !== PageType.writable) continue;
      return { mfn, slot, slotVa: virtBase + (BigInt(pfn) << 12n) + BigInt(8 * slot), old: e };
    }
  }
  throw new Error('no boot L1 maps a data page');
}

describe('writable page tables on the scripted engine', () => {
  it('emulates a kernel store into its own L1 as a validated update and resumes after the instruction', () => {
    g = scriptedGuest();
    const l1 = bootL1(g);
    const data = g.d.memory.mfnOf(g.d.layout.pfn.stack); // a frame of the domain, mapped read-write already
    const entry = (BigInt(data) << 12n) | 0x3n; // present, writable
    let rip = 0n;
    g.play(
      (c) => {
        rip = c.regs.rip;
        c.poke(rip, MOV_RAX_TO_RDI);
        c.regs.rax = entry;
        c.regs.rdi = l1.slotVa;
        return c.store(l1.slotVa, new Uint8Array(8), stop);
      },
      (c) => {
        // Rule: rip is past the 3-byte store; the entry holds the value, with US forced (the kernel runs at CPL 3).
        expect(c.regs.rip).toBe(rip + 3n);
        return stop();
      },
    );
    expect(g.d.running).toBe(true);
    expect(g.hv.frames.words(l1.mfn)[l1.slot]).toBe(entry | 4n);
    expect(g.d.exitCounts.get('page-table write')).toBe(1);
    expect(g.hv.frames.typeCount[data]).toBeGreaterThan(0); // the new writable mapping holds a writable type reference
  });

  it('refuses a store that would map a frame of another owner, changing nothing, and crashes the domain with the reason', () => {
    g = scriptedGuest();
    const l1 = bootL1(g);
    const foreign = g.hv.xen.zero; // a hypervisor frame
    g.play((c) => {
      c.poke(c.regs.rip, MOV_RAX_TO_RDI);
      c.regs.rax = (BigInt(foreign) << 12n) | 0x3n;
      c.regs.rdi = l1.slotVa;
      return c.store(l1.slotVa, new Uint8Array(8), stop);
    });
    expect(g.hv.frames.words(l1.mfn)[l1.slot]).toBe(l1.old);
    expect(g.d.end).toEqual({ kind: 'crashed', reason: expect.stringMatching(/#PF.*as a page-table update it was refused: PT-5/) });
  });
});
