// The M2P at Xen's address on a host that cannot map L4 slot 256
// (kvm_pvm, modelled by the scripted engine): a guest's load there is
// completed from the M2P by the emulator and the guest resumes after it; a
// store gets the #PF of a read-only page, a load past the M2P's end the #PF
// of an absent one. The second mapping XENMEM_machphys_mapping reports
// stays a plain read.

import { afterEach, describe, expect, it } from 'vitest';
import { PageFault, type ScriptedCpu } from '../../../src/engine/scripted/scripted-cpu.js';
import { M2P_ALT_VIRT_START, M2P_VIRT_START } from '../../../src/hv/mm/xen-space.js';
import { scriptedDomain, scriptedMachine, trapTable, type ScriptedGuest } from '../../support/scripted.js';

let g: ScriptedGuest;
afterEach(() => g?.hv.close());
const stop = () => ({ kind: 'interrupted' as const });
const PF_HANDLER = 0x3f1000n;

function guest(): ScriptedGuest {
  const { engine, hv } = scriptedMachine(2);
  engine.slot256Faults = true;
  return scriptedDomain(engine, hv);
}

/** The guest's access to `va` by the instruction `bytes` at rip: done natively, or the #PF the host raises. */
function access(c: ScriptedCpu, bytes: number[], va: bigint, write = false) {
  c.poke(c.regs.rip, Uint8Array.from(bytes));
  c.regs.rdi = va;
  try {
    c.translate(va, write);
  } catch (e) {
    if (e instanceof PageFault) return c.raise(14, e.errorCode, e.address);
    throw e;
  }
  throw new Error('the access did not fault: the scripted CPU does not model slot 256');
}

describe('the M2P at Xen\'s address where the host cannot map it', () => {
  it('completes 64-, 32- and 8-bit loads from the M2P and resumes after each', () => {
    g = guest();
    const mfn = g.d.memory.mfnOf(5);
    const entry = M2P_VIRT_START + BigInt(mfn) * 8n;
    const load = (bytes: number[], rax = 0xdeadbeef_cafef00dn) => {
      let out = 0n, rip = 0n;
      g.play((c) => { rip = c.regs.rip; c.regs.rax = rax; return access(c, bytes, entry); }, (c) => { expect(c.regs.rip).toBe(rip + BigInt(bytes.length)); out = c.regs.rax; return stop(); });
      return out;
    };
    expect(load([0x48, 0x8b, 0x07])).toBe(5n);              // mov (%rdi),%rax: the pfn of mfn
    expect(load([0x8b, 0x07])).toBe(5n);                    // mov (%rdi),%eax: zero-extended
    expect(load([0x8a, 0x07])).toBe(0xdeadbeef_cafef005n);  // mov (%rdi),%al: the rest kept
    expect(g.d.exitCounts.get('privileged instruction')).toBe(3);
    // The same entry through the second mapping is a plain read.
    let alt = 0n;
    g.play((c) => { alt = c.readU64(M2P_ALT_VIRT_START + BigInt(mfn) * 8n); return stop(); });
    expect(alt).toBe(5n);
  });

  it('gives a store the #PF of a read-only page and a load past the end the #PF of an absent one', () => {
    g = guest();
    g.play(trapTable(g, [[14, 0, PF_HANDLER]]), stop);
    const pf = (bytes: number[], va: bigint, write: boolean) => {
      let err = -1n;
      g.play((c) => access(c, bytes, va, write), (c) => { expect(c.regs.rip).toBe(PF_HANDLER); err = c.readU64(c.regs.rsp + 16n); c.regs.rsp += 8n * 8n; return stop(); });
      return err;
    };
    expect(pf([0x48, 0x89, 0x07], M2P_VIRT_START + 8n, true)).toBe(3n);             // present, write (kernel mode)
    expect(pf([0x48, 0x8b, 0x07], M2P_VIRT_START + (1n << 38n), false)).toBe(0n);   // not present
    expect(g.d.running).toBe(true);
  });
});
