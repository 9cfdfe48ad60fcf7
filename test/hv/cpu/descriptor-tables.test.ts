// Descriptor tables on the scripted engine (no KVM): set_gdt installs
// frames of the domain that pass as segment-descriptor pages (PT-17) into
// the vCPU's GDT, and update_descriptor writes one checked descriptor, both
// with Xen's answers for what they refuse; the frames' references are
// counted by the audit and returned when the domain dies.

import { afterEach, describe, expect, it } from 'vitest';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { Hypercall } from '../../../src/abi/generated/xen.js';
import type { ScriptedCpu } from '../../../src/engine/scripted/scripted-cpu.js';
import { PageType } from '../../../src/hv/mm/frames.js';
import { auditPageTypes } from '../../../src/hv/mm/page-audit.js';
import { PerDomainSpace } from '../../../src/hv/mm/xen-space.js';
import { parseGuestKernel } from '../../../src/hv/domain/elf.js';
import { ELF_DIR, scriptedDomain, scriptedGuest, type ScriptedGuest } from '../../support/scripted.js';

let g: ScriptedGuest;
afterEach(() => g?.hv.close());
const stop = () => ({ kind: 'interrupted' as const });
const EINVAL = -22n, EFAULT = -14n, EBUSY = -16n;
const VIRT_BASE = parseGuestKernel(fs.readFileSync(path.join(ELF_DIR, 'minimal.elf'))).virtBase;

/** Calls a hypercall and returns its result. */
function call(g: ScriptedGuest, nr: number, args: bigint[], before?: (c: ScriptedCpu) => void): bigint {
  let rc = 0n;
  g.play((c) => { before?.(c); return c.hypercall(nr, args); }, (c) => { rc = BigInt.asIntN(64, c.regs.rax); return stop(); });
  return rc;
}

/** A data page of the domain (mapped read-write at boot): pfn, frame, virtual address. */
function dataPage(g: ScriptedGuest, pfn = g.d.layout.pfn.stack + 4) {
  return { pfn, mfn: g.d.memory.mfnOf(pfn), va: VIRT_BASE + (BigInt(pfn) << 12n) };
}

/** Maps `va` to `mfn` read-only (or read-write) through update_va_mapping. */
const remap = (g: ScriptedGuest, va: bigint, mfn: number, rw = false) => call(g, Hypercall.HYPERVISOR_update_va_mapping, [va, (BigInt(mfn) << 12n) | (rw ? 7n : 5n), 2n]);

const ARG = (g: ScriptedGuest) => g.d.layout.stackTop - 0x800n;
const setGdt = (g: ScriptedGuest, frames: number[], entries: number) =>
  call(g, Hypercall.HYPERVISOR_set_gdt, [ARG(g), BigInt(entries)], (c) => c.write(ARG(g), Uint8Array.from(Buffer.from(BigUint64Array.from(frames.map(BigInt)).buffer))));
const desc = (g: ScriptedGuest, mfn: number, i: number) => g.hv.frames.words(mfn)[i]!;

describe('set_segment_base(SEGBASE_GS_USER_SEL)', () => {
  it('loads any selector as Xen does, never failing: its descriptor\'s base, or null (base 0) where the load would fault', () => {
    g = scriptedGuest();
    const p = dataPage(g);
    // Entry 5 (0x2b, Linux's __USER_DS): a DPL 3 writable data segment with base 0x12345678; entry 6: DPL 0 data.
    g.hv.frames.words(p.mfn)[5] = 0x12cff200_5678ffffn | (0x34n << 32n);
    g.hv.frames.words(p.mfn)[6] = 0x00cf9200_0000ffffn;
    expect(remap(g, p.va, p.mfn)).toBe(0n);
    expect(setGdt(g, [p.mfn], 16)).toBe(0n);
    const userGsBase = () => g.ev.getMsrs([0xc0000102])[0];
    const SEGBASE_GS_USER_SEL = 3n;
    g.ev.setMsrs([[0xc0000102, 0xdeadn]]);
    expect(call(g, Hypercall.HYPERVISOR_set_segment_base, [SEGBASE_GS_USER_SEL, 0x2bn])).toBe(0n);
    expect(userGsBase()).toBe(0x12345678n);
    // Rule: a selector whose load would fault (DPL 0 after RPL 3, beyond the GDT, the LDT) becomes null: base 0, still 0 returned.
    for (const sel of [0x33n, 0x7f8n, 0x2cn | 4n]) {
      g.ev.setMsrs([[0xc0000102, 0xdeadn]]);
      expect(call(g, Hypercall.HYPERVISOR_set_segment_base, [SEGBASE_GS_USER_SEL, sel])).toBe(0n);
      expect(userGsBase()).toBe(0n);
    }
    // Xen's flat user data selector, and null.
    for (const sel of [0xe02bn, 0n]) {
      g.ev.setMsrs([[0xc0000102, 0xdeadn]]);
      expect(call(g, Hypercall.HYPERVISOR_set_segment_base, [SEGBASE_GS_USER_SEL, sel])).toBe(0n);
      expect(userGsBase()).toBe(0n);
    }
  });
});

describe('set_gdt', () => {
  it('installs a read-only page of the domain as the vCPU\'s GDT, fixing DPL 0 code to DPL 3', () => {
    g = scriptedGuest();
    const p = dataPage(g);
    g.hv.frames.words(p.mfn)[1] = 0x00af9a000000ffffn; // 64-bit code, DPL 0
    // Rule (PT-3/PT-4): while the guest maps it writable, it cannot become a descriptor page.
    expect(setGdt(g, [p.mfn], 16)).toBe(EINVAL);
    expect(g.hv.frames.typeCount[p.mfn]).toBe(1); // only its writable mapping
    expect(remap(g, p.va, p.mfn)).toBe(0n);
    expect(setGdt(g, [p.mfn], 16)).toBe(0n);
    expect(g.hv.frames.type[p.mfn]).toBe(PageType.segDesc);
    expect(desc(g, p.mfn, 1)).toBe(0x00affa000000ffffn); // DPL 3
    // The vCPU's GDT now starts with the frame (as the CPU reaches it, in the hypervisor's area).
    expect(g.cpu.translate(PerDomainSpace.vcpuLayout(0).gdt, false, false) >> 12n).toBe(BigInt(p.mfn));
    // Rule: a descriptor page cannot be mapped writable again (PT-3: -EBUSY).
    expect(remap(g, p.va, p.mfn, true)).toBe(EBUSY);
    expect(auditPageTypes(g.hv.frames, [g.d.auditView()])).toEqual([]);
    // set_gdt with no entries lets the frame go.
    expect(setGdt(g, [], 0)).toBe(0n);
    expect(g.hv.frames.typeCount[p.mfn]).toBe(0);
    expect(g.cpu.translate(PerDomainSpace.vcpuLayout(0).gdt, false, false) >> 12n).toBe(BigInt(g.hv.xen.zero));
  });

  it('refuses TSS and interrupt-gate descriptors, too many entries, frames not the domain\'s, and a bad list, changing nothing', () => {
    g = scriptedGuest();
    const p = dataPage(g);
    expect(remap(g, p.va, p.mfn)).toBe(0n);
    g.hv.frames.words(p.mfn)[2] = 0x00008900_00000067n; // an available 64-bit TSS
    expect(setGdt(g, [p.mfn], 8)).toBe(EINVAL);
    expect(g.hv.frames.typeCount[p.mfn]).toBe(0);
    g.hv.frames.words(p.mfn)[2] = 0x00008e00_00080000n; // an interrupt gate
    expect(setGdt(g, [p.mfn], 8)).toBe(EINVAL);
    g.hv.frames.words(p.mfn)[2] = 0n;
    expect(setGdt(g, [p.mfn], 7169)).toBe(EINVAL);
    expect(setGdt(g, [g.hv.xen.zero], 8)).toBe(EINVAL);
    expect(setGdt(g, [g.hv.frames.count + 5], 8)).toBe(EINVAL);
    expect(call(g, Hypercall.HYPERVISOR_set_gdt, [0x7f0000000000n, 8n])).toBe(EFAULT);
    expect(g.d.running).toBe(true);
    expect(auditPageTypes(g.hv.frames, [g.d.auditView()])).toEqual([]);
  });

  it('returns the GDT frames with every other frame when the domain dies', () => {
    g = scriptedGuest();
    const free = g.hv.frames.free;
    const p = dataPage(g);
    expect(remap(g, p.va, p.mfn)).toBe(0n);
    expect(setGdt(g, [p.mfn], 512)).toBe(0n);
    const n = g.hv.destroyDomain(g.d);
    expect(g.hv.frames.free).toBe(free + n);
    expect(g.hv.frames.type[p.mfn]).toBe(PageType.none);
  });
});

describe('the guest\'s selectors in iret frames', () => {
  const FAILSAFE = 0x3f1400n;
  /** A GDT as Linux's: 2 = 64-bit kernel code (0x10), 3 = data (0x18), 4 = 32-bit code (0x20), 5 = data (0x2b), 6 = 64-bit user code (0x33). */
  function linuxGdt(g: ScriptedGuest) {
    const p = dataPage(g);
    const w = g.hv.frames.words(p.mfn);
    w[2] = 0x00af9a000000ffffn; w[3] = 0x00cf92000000ffffn; w[4] = 0x00cffa000000ffffn; w[5] = 0x00cff2000000ffffn; w[6] = 0x00affa000000ffffn;
    expect(remap(g, p.va, p.mfn)).toBe(0n);
    expect(setGdt(g, [p.mfn], 8)).toBe(0n);
  }
  /** iret through the hypercall page to a kernel frame with these selectors; where the vCPU went. */
  function iretTo(g: ScriptedGuest, cs: number, ss: number): bigint {
    let rip = 0n;
    const to = 0x3f8000n;
    g.play(
      (c) => {
        for (const w of [BigInt(ss), g.d.layout.stackTop - 0x200n, 0x202n, BigInt(cs), to, 0n]) c.push(w);
        return c.jumpTo(c.hypercallPage + 32n * BigInt(Hypercall.HYPERVISOR_iret));
      },
      (c) => { rip = c.regs.rip; return stop(); },
    );
    return rip;
  }

  it('resumes a frame naming the guest\'s own 64-bit code and data selectors, and hands one it cannot load to the failsafe callback', () => {
    g = scriptedGuest();
    linuxGdt(g);
    g.play((c) => c.hypercall(Hypercall.HYPERVISOR_set_callbacks, [0x3f1200n, FAILSAFE, 0n]), stop);
    const first = iretTo(g, 0x10, 0x18);
    expect(g.d.end).toBeUndefined();
    expect(first).toBe(0x3f8000n); // Linux's __KERNEL_CS and __KERNEL_DS (RPL 0 in the frame)
    const second = iretTo(g, 0xe030, 0); // RPL 0: a kernel frame
    expect(g.d.end).toBeUndefined();
    expect(second).toBe(0x3f8000n); // Xen's flat code, a null stack selector
    expect(iretTo(g, 0x20, 0x18)).toBe(FAILSAFE);  // 32-bit code: compat mode is not offered
    expect(iretTo(g, 0x18, 0x18)).toBe(FAILSAFE);  // data as code
    expect(iretTo(g, 0x10, 0x10)).toBe(FAILSAFE);  // code as stack
    expect(iretTo(g, 0x40, 0x18)).toBe(FAILSAFE);  // past the GDT's 8 entries
    expect(iretTo(g, 0x14, 0x18)).toBe(FAILSAFE);  // the LDT
    expect(g.d.running).toBe(true);
  });

  it('crashes the domain for a selector it cannot load when there is no failsafe callback', () => {
    g = scriptedGuest();
    linuxGdt(g);
    iretTo(g, 0x20, 0x18);
    expect(g.d.end).toEqual({ kind: 'crashed', reason: expect.stringMatching(/code selector 0x20 .*no failsafe callback/) });
  });
});

describe('update_descriptor', () => {
  it('writes a checked descriptor into a GDT page or a data page, refusing what Xen refuses', () => {
    g = scriptedGuest();
    const gdt = dataPage(g), data = dataPage(g, g.d.layout.pfn.stack + 5);
    expect(remap(g, gdt.va, gdt.mfn)).toBe(0n);
    expect(setGdt(g, [gdt.mfn], 16)).toBe(0n);
    const ud = (maddr: bigint, d: bigint) => call(g, Hypercall.HYPERVISOR_update_descriptor, [maddr, d]);
    const ma = (mfn: number, i: number) => (BigInt(mfn) << 12n) + BigInt(8 * i);
    // Into the live GDT: DPL fixed to 3.
    expect(ud(ma(gdt.mfn, 3), 0x00cf92000000ffffn)).toBe(0n);
    expect(desc(g, gdt.mfn, 3)).toBe(0x00cff2000000ffffn);
    // Into a plain data page of the domain.
    expect(ud(ma(data.mfn, 0), 0x00cf92000000ffffn)).toBe(0n);
    expect(desc(g, data.mfn, 0)).toBe(0x00cff2000000ffffn);
    // Refused: unaligned, a TSS, a call gate to the hypervisor's code selector, a page table, a frame not the domain's.
    expect(ud(ma(gdt.mfn, 4) + 4n, 0n)).toBe(EINVAL);
    expect(ud(ma(gdt.mfn, 4), 0x00008900_00000067n)).toBe(EINVAL);
    expect(ud(ma(gdt.mfn, 4), 0x0000ec00_e0080000n)).toBe(EINVAL);
    expect(ud(ma(g.d.layout.l4Mfn, 0), 0n)).toBe(EINVAL);
    expect(ud(ma(g.hv.xen.zero, 0), 0n)).toBe(EINVAL);
    const other = scriptedDomain(g.engine, g.hv);
    expect(ud(ma(other.d.memory.mfnOf(other.d.layout.pfn.stack + 4), 0), 0n)).toBe(EINVAL);
    expect(desc(g, gdt.mfn, 4)).toBe(0n);
    // A call gate to a code selector of the guest's own GDT is kept, with DPL 0 and the DPL in the selector's RPL.
    expect(ud(ma(gdt.mfn, 4), 0x0000ec00_00080000n)).toBe(0n);
    expect(desc(g, gdt.mfn, 4)).toBe(0x00008c00_000b0000n);
    expect(auditPageTypes(g.hv.frames, [g.d.auditView(), other.d.auditView()])).toEqual([]);
  });
});
