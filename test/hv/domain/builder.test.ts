// The domain builder lays a domain out as Xen's toolstack does
// (Xen's public headers; docs/abi.md), on plain memory (no KVM): start_info, the
// P2M, the bootstrap page tables (page-table frames mapped read-only), the
// slack, the hypercall page, shared_info (held writable by the hypervisor),
// the initrd both ways, INIT_P2M, and clean refusals that leave no frame
// allocated.

import { beforeAll, beforeEach, describe, expect, it } from 'vitest';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { createPlainMemory } from '../../../src/engine/plain-memory.js';
import { FrameTable, OWNER_XEN, PageType } from '../../../src/hv/mm/frames.js';
import { GuestMemory } from '../../../src/hv/mm/guest-access.js';
import { BuildError, buildDomain } from '../../../src/hv/domain/builder.js';
import { parseGuestKernel, type GuestKernel } from '../../../src/hv/domain/elf.js';
import { XenSpace, M2P_VIRT_START, LSTAR_STUB_CPL3, LSTAR_STUB_REFUSE, CSTAR_OFFSET, hypercallStub, readU64, BLOCK, WAIT_STUB } from '../../../src/hv/mm/xen-space.js';
import { PTE } from '../../../src/hv/mm/pte.js';
import { SharedInfo, StartInfo, StartInfoFlags } from '../../../src/abi/generated/xen.js';
import { PageTypeError, PageTypes } from '../../../src/hv/mm/page-types.js';
import { auditPageTypes } from '../../../src/hv/mm/page-audit.js';

const MIB = 1 << 20;
const TRANSPORTS = path.resolve(import.meta.dirname, '../../guests/build/elf/transports.elf');
let file: Uint8Array;
let kernel: GuestKernel;
beforeAll(() => {
  file = fs.readFileSync(TRANSPORTS);
  kernel = parseGuestKernel(file);
});

describe('domain builder', () => {
  let ft: FrameTable;
  let xen: XenSpace;
  let freeBefore: number;
  beforeEach(() => {
    ft = new FrameTable(createPlainMemory(64 * MIB));
    xen = new XenSpace(ft, true);
    freeBefore = ft.free;
  });

  const build = (opts: Parameters<typeof buildDomain>[4], k: GuestKernel = kernel) => {
    const pd = xen.buildPerDomain(1);
    try {
      const pt = new PageTypes(ft, (mfn) => xen.fillReservedL4(mfn, pd));
      return { ...buildDomain(pt, 1, k, file, opts), pd, pt };
    } catch (e) {
      pd.release();
      throw e;
    }
  };
  const startInfo = (g: GuestMemory, va: bigint) => StartInfo.over(g.read(va, StartInfo.SIZE).buffer);

  it('lays out start_info, the P2M, the page tables, the stack and the slack as Xen does', () => {
    const { memory, layout, pd } = build({ memoryBytes: 16 * MIB, cmdline: 'console=hvc0 quiet' });
    const g = new GuestMemory(ft, BigInt(layout.l4Mfn) << 12n);
    const si = startInfo(g, layout.startInfoVa);
    expect(si.magic).toBe('xen-3.0-x86_64');
    expect(si.nr_pages).toBe(4096n);
    expect(si.cmd_line).toBe('console=hvc0 quiet');
    expect(si.flags).toBe(0);
    expect(si.pt_base).toBe(BigInt(layout.pfn.ptBase) << 12n);
    expect(si.nr_pt_frames).toBe(BigInt(layout.nrPtFrames));
    expect(layout.nrPtFrames).toBe(5); // L4, L3, L2 and two L1s for the 4 MiB mapping
    // Order: kernel, P2M, start_info, xenstore, console, tables, stack.
    const p = layout.pfn;
    expect(p.p2m).toBeGreaterThan(p.kernel);
    expect([p.startInfo, p.store, p.console, p.ptBase]).toEqual([p.p2m + 8, p.p2m + 9, p.p2m + 10, p.p2m + 11]);
    expect(p.stack).toBe(p.ptBase + layout.nrPtFrames);
    expect(layout.stackTop).toBe(BigInt(p.stack + 1) << 12n);
    // The mapping ends on a 4 MiB boundary with at least 512 KiB after the stack.
    expect(layout.mappedEnd % (4n * BigInt(MIB))).toBe(0n);
    expect(layout.mappedEnd - layout.stackTop).toBeGreaterThanOrEqual(512n * 1024n);
    // The P2M lists every frame; the M2P agrees.
    expect(si.mfn_list).toBe(BigInt(p.p2m) << 12n);
    for (const pfn of [0, 1, 100, 4095]) {
      const mfn = g.readU64(si.mfn_list + BigInt(pfn * 8));
      expect(mfn).toBe(BigInt(memory.mfnOf(pfn)));
      expect(ft.m2p(Number(mfn))).toBe(BigInt(pfn));
    }
    // xenstore and console pages are the domain's, by MFN.
    expect(si.store_mfn).toBe(BigInt(memory.mfnOf(p.store)));
    expect(si.console.domU.mfn).toBe(BigInt(memory.mfnOf(p.console)));
    // Page-table frames are mapped read-only, everything else writable; the end of the mapping is unmapped.
    expect(() => g.write(si.pt_base, new Uint8Array(8))).toThrow(/read-only/);
    expect(() => g.write(layout.stackTop - 8n, new Uint8Array(8))).not.toThrow();
    expect(() => g.read(layout.mappedEnd, 1)).toThrow(/not present/);
    expect(() => g.read(layout.mappedEnd - 1n, 1)).not.toThrow();
    // The tables are validated and typed, the L4 pinned, and every count is what the tables hold.
    expect(ft.type[layout.l4Mfn]).toBe(PageType.l4);
    expect(ft.flags[layout.l4Mfn]! & 2).toBe(2);
    expect(ft.type[memory.mfnOf(p.ptBase + 1)]).toBe(PageType.l3);
    expect(ft.type[memory.mfnOf(p.stack)]).toBe(PageType.writable);
    expect(auditPageTypes(ft, [{ domid: 1, roots: [], held: [layout.sharedInfoMfn], reservedL4: pd.reservedL4 }])).toEqual([]);
    memory.destroy();
    pd.release();
    expect(ft.free).toBe(freeBefore);
  });

  it('fills the hypercall page, masks every vCPU in shared_info, and maps the M2P read-only', () => {
    const { layout, memory, pd } = build({ memoryBytes: 8 * MIB });
    const g = new GuestMemory(ft, BigInt(layout.l4Mfn) << 12n);
    const hp = g.read(kernel.notes.hypercallPage!, 4096);
    const n = hypercallStub(0).length;
    expect([...hp.subarray(29 * 32, 29 * 32 + n)]).toEqual(hypercallStub(29));
    expect(hp[29 * 32 + n]).toBe(0xcc);
    expect([...hp.subarray(64 * 32, 64 * 32 + n)]).toEqual(hypercallStub(64));
    const shared = ft.bytes(layout.sharedInfoMfn);
    const si = SharedInfo.over(shared.buffer, shared.byteOffset);
    for (let v = 0; v < 32; v++) expect(si.vcpu_info_at(v).evtchn_upcall_mask).toBe(1);
    expect(ft.owner[layout.sharedInfoMfn]).toBe(1);
    expect(memory.p2m.includes(layout.sharedInfoMfn)).toBe(false);
    // Hypercall arguments may not point into the hypervisor's area, even where the guest can read it.
    expect(() => g.read(M2P_VIRT_START, 8)).toThrow(/not entirely guest memory/);
    // The hypervisor's frames are its own.
    expect(ft.owner[xen.m2pL3]).toBe(OWNER_XEN);
    // The syscall stub page: the CPL-3 stub at LSTAR, a halt at CSTAR; a host whose syscall enters ring 0 gets halts only.
    const stubPage = (x: XenSpace) => ft.bytes(Number(ft.words32(x.sharedL1)[4]! >>> 12));
    expect([...stubPage(xen).subarray(0, LSTAR_STUB_CPL3.length)]).toEqual(LSTAR_STUB_CPL3);
    expect([...stubPage(xen).subarray(CSTAR_OFFSET, CSTAR_OFFSET + 3)]).toEqual(LSTAR_STUB_REFUSE);
    const refusing = new XenSpace(ft, false);
    expect([...stubPage(refusing).subarray(0, 3)]).toEqual(LSTAR_STUB_REFUSE);
    refusing.release();
    // vCPU 0's wait page (the timer advance's stub): readable and executable
    // at CPL 3, never writable by the guest, and the hypervisor's frame.
    const entry = (table: number, i: number) => readU64(ft.bytes(table), i * 8);
    const l2 = Number(entry(pd.l3, 0) >> 12n), l1 = Number(entry(l2, 0) >> 12n);
    const wait = entry(l1, BLOCK.WAIT >> 12);
    expect(wait & (PTE.P | PTE.US | PTE.RW | PTE.NX)).toBe(PTE.P | PTE.US);
    const waitMfn = Number((wait >> 12n) & 0xffffffffffn);
    expect(ft.owner[waitMfn]).toBe(OWNER_XEN);
    expect([...ft.bytes(waitMfn).subarray(0, WAIT_STUB.length)]).toEqual(WAIT_STUB);
    memory.destroy();
    pd.release();
  });

  it('holds shared_info writable for the hypervisor, so the guest can never pin it as a page table', () => {
    const { layout, memory, pd, pt } = build({ memoryBytes: 8 * MIB });
    const si = layout.sharedInfoMfn;
    const counts = () => [ft.refCount[si], ft.type[si], ft.typeCount[si]];
    // As Xen's share_xen_page_with_guest: a general and a writable type reference beside the allocation.
    expect(counts()).toEqual([2, PageType.writable, 1]);
    // Pinning it as a table of any level is -EINVAL (PT-4), and changes nothing.
    for (const level of [1, 2, 3, 4] as const) {
      let err: unknown;
      try { pt.pin(si, level, 1); } catch (e) { err = e; }
      expect(err).toBeInstanceOf(PageTypeError);
      expect(err).toMatchObject({ rule: 'PT-4', errno: 22 });
    }
    expect(counts()).toEqual([2, PageType.writable, 1]);
    // The audit accounts for the hypervisor's references when told of them...
    const domain = { domid: 1, roots: [], reservedL4: pd.reservedL4 };
    expect(auditPageTypes(ft, [{ ...domain, held: [si] }])).toEqual([]);
    // ...and flags them when they are not declared, or missing from the frame.
    const hex = `0x${si.toString(16)}`;
    const counted = [`frame ${hex}: 2 general references recorded, 1 held`, `frame ${hex}: 1 type references recorded, 0 held`];
    expect(auditPageTypes(ft, [domain])).toEqual(counted);
    pt.putPageAndType(si);
    expect(auditPageTypes(ft, [{ ...domain, held: [si] }])).toEqual([
      `domain 1: held frame ${hex} is typed none, not writable`,
      `frame ${hex}: 1 general references recorded, 2 held`,
      `frame ${hex}: 0 type references recorded, 1 held`,
    ]);
    memory.destroy();
    pd.release();
    expect(ft.free).toBe(freeBefore);
  });

  it('passes an initrd mapped after the kernel, or by PFN when the kernel asks for MOD_START_PFN', () => {
    const initrd = Uint8Array.from({ length: 10000 }, (_, i) => i & 0xff);
    const a = build({ memoryBytes: 8 * MIB, initrd });
    const g = new GuestMemory(ft, BigInt(a.layout.l4Mfn) << 12n);
    const si = startInfo(g, a.layout.startInfoVa);
    expect(si.flags & StartInfoFlags.SIF_MOD_START_PFN).toBe(0);
    expect(si.mod_len).toBe(3n * 4096n); // as Xen's toolstack: the pages it fills, the rest zero
    expect(g.read(si.mod_start, 10000)).toEqual(initrd);
    expect(g.read(si.mod_start + 10000n, 3 * 4096 - 10000)).toEqual(new Uint8Array(3 * 4096 - 10000));
    a.memory.destroy();
    a.pd.release();

    const pfnKernel: GuestKernel = { ...kernel, notes: { ...kernel.notes, modStartPfn: true } };
    const b = build({ memoryBytes: 8 * MIB, initrd }, pfnKernel);
    const g2 = new GuestMemory(ft, BigInt(b.layout.l4Mfn) << 12n);
    const si2 = startInfo(g2, b.layout.startInfoVa);
    expect(si2.flags & StartInfoFlags.SIF_MOD_START_PFN).toBe(StartInfoFlags.SIF_MOD_START_PFN);
    expect(si2.mod_len).toBe(3n * 4096n); // by PFN too
    const pfn = Number(si2.mod_start);
    expect(BigInt(pfn) << 12n).toBeGreaterThanOrEqual(b.layout.mappedEnd); // unmapped, after the initial mapping
    expect(b.memory.page(pfn).subarray(0, 4096)).toEqual(initrd.subarray(0, 4096));
    expect(b.memory.page(pfn + 2).subarray(0, 10000 - 8192)).toEqual(initrd.subarray(8192));
    b.memory.destroy();
    b.pd.release();
    expect(ft.free).toBe(freeBefore);
  });

  it('maps the P2M at the INIT_P2M address with its own tables, and ignores an unusable note', () => {
    // The test kernel moved up to Linux's VIRT_BASE, so that INIT_P2M can lie below it.
    const up = 0xffffffff80000000n;
    const high: GuestKernel = {
      ...kernel, virtBase: up, entry: kernel.entry + up, imageStart: kernel.imageStart + up, imageEnd: kernel.imageEnd + up,
      segments: kernel.segments.map((s) => ({ ...s, vaddr: s.vaddr + up })),
      notes: { ...kernel.notes, hypercallPage: kernel.notes.hypercallPage! + up, initP2m: 0x8000000000n },
    };
    const { memory, layout, pd } = build({ memoryBytes: 16 * MIB }, high);
    const g = new GuestMemory(ft, BigInt(layout.l4Mfn) << 12n);
    const si = startInfo(g, layout.startInfoVa);
    expect(si.mfn_list).toBe(0x8000000000n);
    for (const pfn of [0, 7, 4095]) expect(g.readU64(si.mfn_list + BigInt(8 * pfn))).toBe(BigInt(memory.mfnOf(pfn)));
    // The list and its three tables (L3, L2, L1) follow the initial mapping; none of it is mapped there.
    expect(si.first_p2m_pfn).toBe((layout.mappedEnd - up) >> 12n);
    expect(si.nr_p2m_frames).toBe(8n + 3n);
    expect(layout.pfn.p2m).toBe(Number(si.first_p2m_pfn));
    memory.destroy();
    pd.release();
    // A note in the kernel mapping's own L4 slot is ignored (Linux frees that slot's tables later).
    const shared = build({ memoryBytes: 16 * MIB }, { ...high, notes: { ...high.notes, initP2m: 0xffffff8000000000n } });
    const si3 = startInfo(new GuestMemory(ft, BigInt(shared.layout.l4Mfn) << 12n), shared.layout.startInfoVa);
    expect(si3.mfn_list).toBe(up + (BigInt(shared.layout.pfn.p2m) << 12n));
    shared.memory.destroy();
    shared.pd.release();
    // A note above VIRT_BASE is ignored: the list stays in the initial mapping.
    const ignored = build({ memoryBytes: 8 * MIB }, { ...kernel, notes: { ...kernel.notes, initP2m: 0x8000000000n } });
    const si2 = startInfo(new GuestMemory(ft, BigInt(ignored.layout.l4Mfn) << 12n), ignored.layout.startInfoVa);
    expect(si2.mfn_list).toBe(BigInt(ignored.layout.pfn.p2m) << 12n);
    expect(si2.nr_p2m_frames).toBe(0n);
    ignored.memory.destroy();
    ignored.pd.release();
    expect(ft.free).toBe(freeBefore);
  });

  it('refuses memory too small for the layout, a command line too long, and bad sizes, leaving nothing allocated', () => {
    expect(() => build({ memoryBytes: 1 * MIB })).toThrow(/1 MiB is too small for this kernel: its boot layout needs \d+ MiB/);
    expect(() => build({ memoryBytes: 8 * MIB, cmdline: 'x'.repeat(1024) })).toThrow(/command line is 1024 bytes; at most 1023/);
    expect(() => build({ memoryBytes: 8 * MIB + 1 })).toThrow(/multiple of 4 KiB/);
    expect(() => build({ memoryBytes: 1024 * MIB })).toThrow(/requested/);
    expect(ft.free).toBe(freeBefore);
  });
});
