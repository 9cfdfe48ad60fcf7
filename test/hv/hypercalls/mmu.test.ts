// The MMU hypercalls on plain memory (no KVM): mmu_update, update_va_mapping,
// mmuext_op and multicall against a small address space, with Xen's error
// codes for refused requests, continuations for long ones, and the
// page-type audit after every call.

import { beforeEach, describe, expect, it } from 'vitest';
import { createPlainMemory } from '../../../src/engine/plain-memory.js';
import { FrameTable, PageType } from '../../../src/hv/mm/frames.js';
import { GuestMemory } from '../../../src/hv/mm/guest-access.js';
import type { HypercallTable } from '../../../src/hv/hypercalls/table.js';
import type { HypercallArgs, HypercallContext, MmContext } from '../../../src/hv/hypercalls/context.js';
import { createHypercallTable } from '../../../src/hv/hypercalls/index.js';
import { MMU_CHUNK, MMU_UPDATE_PREEMPTED, WORK_BUDGET } from '../../../src/hv/hypercalls/mmu.js';
import { testContext } from '../../support/context.js';
import { PageTypes, PINNED } from '../../../src/hv/mm/page-types.js';
import { auditPageTypes } from '../../../src/hv/mm/page-audit.js';
import { Hypercall, MmuextCmd } from '../../../src/abi/generated/xen.js';
import { DomainTranslations, TranslationMarks } from '../../../src/hv/mm/tlb.js';

const MIB = 1 << 20;
const ME = 1;
const P = 1n, RW = 2n, US = 4n, PSE = 0x80n;
const EPERM = -1n, EFAULT = -14n, EINVAL = -22n, EBUSY = -16n, ENOSYS = -38n;
/** Guest virtual layout: pfn n at 0x400000 + n * 4096, mapped by one L1. */
const BASE = 0x400000n;
const DOMID_SELF = 0x7ff0n;

let ft: FrameTable;
let pt: PageTypes;
let table: HypercallTable;
let frames: number[];                 // the domain's frames (pfn -> mfn)
let l4: number, l3: number, l2: number, l1: number;
let ctx: HypercallContext & { continued?: HypercallArgs };
/** What the tracker asked the (fake) engine cache to forget. */
let cacheCalls: string[];
let mm: MmContext & { ldt?: [bigint, number] };

const va = (pfn: number) => BASE + BigInt(pfn) * 4096n;
const pte = (mfn: number, flags: bigint) => (BigInt(mfn) << 12n) | flags;
const maddrOfEntry = (table: number, i: number) => (BigInt(table) << 12n) + BigInt(8 * i);
const call = (nr: number, ...a: bigint[]) => table.dispatch(ctx, BigInt(nr), [a[0] ?? 0n, a[1] ?? 0n, a[2] ?? 0n, a[3] ?? 0n, a[4] ?? 0n]);
function audit(): void {
  const roots = [mm.cr3, ...(mm.userCr3 ? [mm.userCr3] : [])];
  expect(auditPageTypes(ft, [{ domid: ME, roots }])).toEqual([]);
}
/** Writes mmu_update requests into the guest's scratch page (pfn 20) and returns its address. */
function requests(list: Array<[bigint, bigint]>, pfn = 20): bigint {
  const bytes = new Uint8Array(list.length * 16);
  const v = new DataView(bytes.buffer);
  list.forEach(([p, val], i) => { v.setBigUint64(16 * i, p, true); v.setBigUint64(16 * i + 8, val, true); });
  ctx.guest.write(va(pfn), bytes);
  return va(pfn);
}

beforeEach(() => {
  ft = new FrameTable(createPlainMemory(8 * MIB));
  cacheCalls = [];
  const tlb = new DomainTranslations({
    forget: (m, n) => cacheCalls.push(`forget ${m}+${n}`),
    dropAll: () => cacheCalls.push('drop'),
  }, new TranslationMarks(ft.count));
  pt = new PageTypes(ft, () => {}, { typeTaken: (m, t) => tlb.typeTaken(m, t), tableValidated: (m) => tlb.tableValidated(m) });
  frames = ft.allocate(ME, 64);
  [l4, l3, l2, l1] = frames.slice(60) as [number, number, number, number];
  ft.words(l4)[0] = pte(l3, P | RW | US);
  ft.words(l3)[0] = pte(l2, P | RW | US);
  ft.words(l2)[2] = pte(l1, P | RW | US);                   // 0x400000
  for (let pfn = 0; pfn < 40; pfn++) ft.words(l1)[pfn] = pte(frames[pfn]!, P | RW | US);
  for (const t of [l4, l3, l2, l1]) ft.words(l1)[frames.indexOf(t)] = pte(t, P | US); // tables mapped read-only
  pt.pin(l4, 4, ME);
  pt.getPageAndType(l4, PageType.l4, ME);                   // the vCPU's CR3
  let cr3 = l4, userCr3 = 0;
  mm = {
    pt,
    get cr3() { return cr3; },
    get userCr3() { return userCr3; },
    setCr3(m) { cr3 = m; ctx = { ...ctx, guest: new GuestMemory(ft, BigInt(m) << 12n) } as typeof ctx; },
    setUserCr3(m) { userCr3 = m; },
    tlb,
    setLdt(base, n) { mm.ldt = [base, n]; },
  };
  ctx = testContext({
    domid: ME, guest: new GuestMemory(ft, BigInt(l4) << 12n), continued: undefined as HypercallArgs | undefined,
    continueWith(a: HypercallArgs) { ctx.continued = a; }, mm,
  });
  table = createHypercallTable();
  audit();
});

describe('mmu_update', () => {
  it('maps, remaps and unmaps pages in a live L1, and reports the requests done', () => {
    ctx.guest.write(va(5), new TextEncoder().encode('frame five'));
    const pdone = va(21);
    // Map pfn 5's frame a second time at pfn 45, then unmap pfn 6.
    const reqs = requests([[maddrOfEntry(l1, 45), pte(frames[5]!, P | RW | US)], [maddrOfEntry(l1, 6), 0n]]);
    expect(call(Hypercall.HYPERVISOR_mmu_update, reqs, 2n, pdone, DOMID_SELF)).toBe(0n);
    expect(ctx.guest.readU32(pdone)).toBe(2);
    expect(new TextDecoder().decode(ctx.guest.read(va(45), 10))).toBe('frame five');
    expect(() => ctx.guest.read(va(6), 1)).toThrow(/not present/);
    // Xen's TLB model: the update flushes nothing; the unmapped frame is
    // remembered as stale and forgotten when the guest asks for a flush.
    expect(cacheCalls).toEqual([]);
    expect(mm.tlb.pending).toBe(true);
    const op = new Uint8Array(32);
    new DataView(op.buffer).setUint32(0, MmuextCmd.MMUEXT_TLB_FLUSH_LOCAL, true);
    ctx.guest.write(va(22), op);
    expect(call(Hypercall.HYPERVISOR_mmuext_op, va(22), 1n, 0n, DOMID_SELF)).toBe(0n);
    expect(cacheCalls).toEqual([`forget ${frames[6]}+1`]);
    expect(mm.tlb.pending).toBe(false);
    audit();
  });

  it('refuses escapes with Xen\'s error codes, stopping at the first and counting what was done', () => {
    const pdone = va(21);
    const cases: Array<[string, bigint, bigint, bigint]> = [
      ['a writable mapping of its own L1', maddrOfEntry(l1, 50), pte(l1, P | RW | US), EBUSY],
      ['a writable mapping of its L4', maddrOfEntry(l1, 50), pte(l4, P | RW | US), EBUSY],
      ['another domain\'s frame', maddrOfEntry(l1, 50), pte(ft.allocate(2, 1)[0]!, P | US), EBUSY],
      ['a hypervisor frame (the M2P)', maddrOfEntry(l1, 50), pte(ft.m2pFirst, P | US), EBUSY],
      ['a frame outside machine memory', maddrOfEntry(l1, 50), pte(ft.count + 5, P | US), EPERM],
      ['a superpage', maddrOfEntry(l2, 3), pte(frames[10]!, P | RW | US | PSE), EINVAL],
      ['a hypervisor L4 slot', maddrOfEntry(l4, 260), pte(l3, P | US), EINVAL],
      ['a linear L4 entry', maddrOfEntry(l4, 5), pte(l4, P | US), EINVAL],
      ['a table of another domain', (BigInt(ft.allocate(2, 1)[0]!) << 12n), 0n, EINVAL],
      ['an L2 entry naming a data page mapped writable', maddrOfEntry(l2, 3), pte(frames[7]!, P | RW | US), EINVAL],
    ];
    for (const [what, ptr, val, rc] of cases) {
      const reqs = requests([[maddrOfEntry(l1, 46), pte(frames[3]!, P | US)], [ptr, val]]);
      expect(call(Hypercall.HYPERVISOR_mmu_update, reqs, 2n, pdone, DOMID_SELF), what).toBe(rc);
      expect(ctx.guest.readU32(pdone), what).toBe(1);
      audit();
    }
  });

  it('refuses bad pointers, unknown commands and other domains', () => {
    const reqs = requests([[maddrOfEntry(l1, 46), 0n]]);
    expect(call(Hypercall.HYPERVISOR_mmu_update, 0x800000000000n, 1n, 0n, DOMID_SELF)).toBe(EFAULT);
    expect(call(Hypercall.HYPERVISOR_mmu_update, reqs, 1n, 0xffff800000000000n, DOMID_SELF)).toBe(EFAULT);
    expect(call(Hypercall.HYPERVISOR_mmu_update, reqs, 1n, 0n, 5n)).toBe(EPERM);
    expect(call(Hypercall.HYPERVISOR_mmu_update, requests([[maddrOfEntry(l1, 46) | 5n, 0n]]), 1n, 0n, DOMID_SELF)).toBe(ENOSYS);
    // MMU_MACHPHYS_UPDATE: own frames only.
    expect(call(Hypercall.HYPERVISOR_mmu_update, requests([[(BigInt(frames[9]!) << 12n) | 1n, 77n]]), 1n, 0n, DOMID_SELF)).toBe(0n);
    expect(ft.m2p(frames[9]!)).toBe(77n);
    expect(call(Hypercall.HYPERVISOR_mmu_update, requests([[(BigInt(ft.m2pFirst) << 12n) | 1n, 77n]]), 1n, 0n, DOMID_SELF)).toBe(EINVAL);
    // foreigndom naming itself by number is -ESRCH, as on Xen.
    expect(call(Hypercall.HYPERVISOR_mmu_update, reqs, 1n, 0n, BigInt(ME))).toBe(-3n);
    audit();
  });

  it('does huge counts in chunks with Xen\'s continuation, so no call does unbounded work', () => {
    // 2500 requests: rewrite entry 46 over and over (frames 3 and 4 alternately).
    const n = 2500;
    const bytes = new Uint8Array(n * 16);
    const v = new DataView(bytes.buffer);
    for (let i = 0; i < n; i++) {
      v.setBigUint64(16 * i, maddrOfEntry(l1, 46), true);
      v.setBigUint64(16 * i + 8, pte(frames[3 + (i & 1)]!, P | US), true);
    }
    // The request array needs 10 pages: map them at pfn 48.. (frames 30-39).
    for (let k = 0; k < 10; k++) ft.words(l1)[48 + k] = 0n;
    const list = requests([...Array(10).keys()].map((k) => [maddrOfEntry(l1, 48 + k), pte(frames[30 + k]!, P | RW | US)]));
    expect(call(Hypercall.HYPERVISOR_mmu_update, list, 10n, 0n, DOMID_SELF)).toBe(0n);
    ctx.guest.write(va(48), bytes);
    const pdone = va(21);
    let args: HypercallArgs = [va(48), BigInt(n), pdone, DOMID_SELF, 0n];
    let calls = 0;
    for (;;) {
      ctx.continued = undefined;
      expect(table.dispatch(ctx, BigInt(Hypercall.HYPERVISOR_mmu_update), args)).toBe(0n);
      calls++;
      if (!ctx.continued) break;
      args = ctx.continued;
      expect((Number(args[1]) & MMU_UPDATE_PREEMPTED) >>> 0).toBe(MMU_UPDATE_PREEMPTED);
      expect(ctx.guest.readU32(pdone)).toBe(MMU_CHUNK * calls);
    }
    expect(calls).toBe(Math.ceil(n / MMU_CHUNK));
    expect(ctx.guest.readU32(pdone)).toBe(n);
    expect(ctx.guest.readU64(va(46))).toBe(ctx.guest.readU64(va(4))); // the last request won
    audit();
  });
});

describe('bounded work', () => {
  it('continues a batch early when its requests hook and unhook big trees', () => {
    // An L2 over 64 L1s of 512 present entries each: hooking or unhooking it visits ~33 000 entries.
    const big = ft.allocate(ME, 65);
    const [bigL2, ...l1s] = big as [number, ...number[]];
    for (const [k, t] of l1s.entries()) {
      for (let i = 0; i < 512; i++) ft.words(t)[i] = pte(frames[3]!, P | US);
      ft.words(bigL2)[k] = pte(t, P | RW | US);
    }
    const n = 200;
    const bytes = new Uint8Array(n * 16);
    const v = new DataView(bytes.buffer);
    for (let i = 0; i < n; i++) {
      v.setBigUint64(16 * i, maddrOfEntry(l3, 1), true);
      v.setBigUint64(16 * i + 8, i % 2 ? 0n : pte(bigL2, P | RW | US), true);
    }
    for (let k = 0; k < 1; k++) ft.words(l1)[48 + k] = 0n;
    expect(call(Hypercall.HYPERVISOR_mmu_update, requests([[maddrOfEntry(l1, 48), pte(frames[30]!, P | RW | US)]]), 1n, 0n, DOMID_SELF)).toBe(0n);
    ctx.guest.write(va(48), bytes);
    const pdone = va(21);
    let args: HypercallArgs = [va(48), BigInt(n), pdone, DOMID_SELF, 0n];
    let calls = 0;
    const perCall: number[] = [];
    for (;;) {
      ctx.continued = undefined;
      const before = pt.work;
      expect(table.dispatch(ctx, BigInt(Hypercall.HYPERVISOR_mmu_update), args)).toBe(0n);
      perCall.push(pt.work - before);
      calls++;
      if (!ctx.continued) break;
      args = ctx.continued;
    }
    expect(ctx.guest.readU32(pdone)).toBe(n);
    expect(calls).toBeGreaterThan(10);                        // far more than the 1024-request chunks alone would give
    expect(Math.max(...perCall)).toBeLessThan(WORK_BUDGET + 70_000); // the budget plus at most one request's work
    audit();
  });
});

describe('update_va_mapping', () => {
  it('changes one entry of the current tables, through the same validation', () => {
    expect(call(Hypercall.HYPERVISOR_update_va_mapping, va(47), pte(frames[8]!, P | US), 2n)).toBe(0n);
    expect(ctx.guest.readU64(va(47))).toBe(ctx.guest.readU64(va(8)));
    expect(() => ctx.guest.write(va(47), new Uint8Array(1))).toThrow(/read-only/);
    expect(call(Hypercall.HYPERVISOR_update_va_mapping, va(47), pte(l2, P | RW | US), 0n)).toBe(EBUSY);
    expect(call(Hypercall.HYPERVISOR_update_va_mapping, 0x800000000000n, 0n, 0n)).toBe(EINVAL);     // non-canonical
    expect(call(Hypercall.HYPERVISOR_update_va_mapping, 0x7f0000000000n, 0n, 0n)).toBe(EINVAL);     // no L1 there
    expect(call(Hypercall.HYPERVISOR_update_va_mapping, va(47), 0n, 3n)).toBe(EINVAL);               // bad flush type
    expect(call(Hypercall.HYPERVISOR_update_va_mapping, va(47), 0n, 0x800000000000n | 1n)).toBe(EFAULT); // bad vCPU mask
    audit();
  });
});

describe('mmuext_op', () => {
  const ops = (list: Array<[number, bigint, bigint?]>) => {
    const bytes = new Uint8Array(list.length * 24);
    const v = new DataView(bytes.buffer);
    list.forEach(([cmd, a1, a2], i) => { v.setUint32(24 * i, cmd, true); v.setBigUint64(24 * i + 8, a1, true); v.setBigUint64(24 * i + 16, a2 ?? 0n, true); });
    ctx.guest.write(va(22), bytes);
    return va(22);
  };
  const ext = (list: Array<[number, bigint, bigint?]>) => call(Hypercall.HYPERVISOR_mmuext_op, ops(list), BigInt(list.length), va(21), DOMID_SELF);

  it('builds, pins and switches to a new address space, then unpins the old one', () => {
    // A second L4 sharing the L3.
    const l4b = frames[41]!;
    // Mapped read-only (through the hypercall: l1 is live), and filled while not yet a table.
    expect(call(Hypercall.HYPERVISOR_update_va_mapping, va(41), pte(l4b, P | US), 0n)).toBe(0n);
    ft.words(l4b)[0] = pte(l3, P | RW | US);
    expect(ext([[MmuextCmd.MMUEXT_PIN_L4_TABLE, BigInt(l4b)]])).toBe(0n);
    expect(ft.flags[l4b]! & PINNED).toBe(PINNED);
    expect(ext([[MmuextCmd.MMUEXT_PIN_L4_TABLE, BigInt(l4b)]])).toBe(EINVAL);           // pinned twice
    expect(ext([[MmuextCmd.MMUEXT_NEW_BASEPTR, BigInt(l4b)]])).toBe(0n);
    expect(mm.cr3).toBe(l4b);
    expect(ext([[MmuextCmd.MMUEXT_UNPIN_TABLE, BigInt(l4)]])).toBe(0n);                 // the old root goes
    expect(ft.type[l4]).toBe(PageType.none);
    audit();
    // Unpinning the table in use as CR3 keeps it valid (its CR3 reference holds it).
    expect(ext([[MmuextCmd.MMUEXT_UNPIN_TABLE, BigInt(l4b)]])).toBe(0n);
    expect(ft.type[l4b]).toBe(PageType.l4);
    audit();
  });

  it('refuses what Xen refuses', () => {
    const data = BigInt(frames[7]!);                         // mapped writable
    expect(ext([[MmuextCmd.MMUEXT_PIN_L1_TABLE, data]])).toBe(EINVAL);
    expect(ext([[MmuextCmd.MMUEXT_NEW_BASEPTR, data]])).toBe(EINVAL);
    expect(ext([[MmuextCmd.MMUEXT_UNPIN_TABLE, BigInt(l1)]])).toBe(EINVAL);             // never pinned
    expect(ext([[MmuextCmd.MMUEXT_PIN_L1_TABLE, BigInt(ft.count + 1)]])).toBe(EINVAL);
    expect(ext([[MmuextCmd.MMUEXT_INVLPG_LOCAL, 0x0000800000000000n]])).toBe(0n);      // non-canonical: ignored, as Xen
    expect(ext([[MmuextCmd.MMUEXT_INVLPG_ALL, 0xffff800000001000n]])).toBe(0n);        // the hypervisor's: ignored
    expect(ext([[MmuextCmd.MMUEXT_SET_LDT, 0x1001n, 1n]])).toBe(EINVAL);               // unaligned
    expect(ext([[MmuextCmd.MMUEXT_SET_LDT, 0x1000n, 8193n]])).toBe(EINVAL);            // too many entries
    expect(ext([[MmuextCmd.MMUEXT_FLUSH_CACHE, 0n]])).toBe(-13n);                     // -EACCES
    expect(ext([[MmuextCmd.MMUEXT_MARK_SUPER, 0xffffffffffe00000n]])).toBe(-95n);     // -EOPNOTSUPP
    expect(ext([[MmuextCmd.MMUEXT_SET_LDT, 0x1234n, 0n]])).toBe(0n);                  // no entries: the base is ignored
    expect(ext([[MmuextCmd.MMUEXT_SET_LDT, 0x1000n, (1n << 40n) | 16n]])).toBe(0n);   // nr_ents is the low 32 bits
    expect(ext([[99, 0n]])).toBe(ENOSYS);
    expect(call(Hypercall.HYPERVISOR_mmuext_op, ops([[MmuextCmd.MMUEXT_TLB_FLUSH_LOCAL, 0n]]), 1n, 0n, 3n)).toBe(EPERM);
    expect(ext([[MmuextCmd.MMUEXT_SET_LDT, 0x1000n, 16n], [MmuextCmd.MMUEXT_TLB_FLUSH_ALL, 0n], [MmuextCmd.MMUEXT_INVLPG_LOCAL, va(3)]])).toBe(0n);
    expect(mm.ldt).toEqual([0x1000n, 16]);
    expect(ctx.guest.readU32(va(21))).toBe(3);
    audit();
  });
});

describe('multicall', () => {
  it('runs each entry and stores its result; no nesting', () => {
    const entry = (op: number, args: bigint[]) => {
      const b = new Uint8Array(64);
      const v = new DataView(b.buffer);
      v.setBigUint64(0, BigInt(op), true);
      args.forEach((a, i) => v.setBigUint64(16 + 8 * i, a, true));
      return b;
    };
    const list = new Uint8Array(64 * 3);
    list.set(entry(Hypercall.HYPERVISOR_update_va_mapping, [va(47), pte(frames[9]!, P | US), 0n]), 0);
    list.set(entry(Hypercall.HYPERVISOR_multicall, [va(23), 1n]), 64);
    list.set(entry(Hypercall.HYPERVISOR_update_va_mapping, [va(47), pte(l1, P | RW | US), 0n]), 128);
    ctx.guest.write(va(23), list);
    expect(call(Hypercall.HYPERVISOR_multicall, va(23), 3n)).toBe(0n);
    const result = (i: number) => BigInt.asIntN(64, ctx.guest.readU64(va(23) + BigInt(64 * i + 8)));
    expect([result(0), result(1), result(2)]).toEqual([0n, EINVAL, EBUSY]);
    expect(ctx.guest.readU64(va(47))).toBe(ctx.guest.readU64(va(9)));
    audit();
  });
});
