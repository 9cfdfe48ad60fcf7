// The page-type audit finds what it exists to find, on a domain built on
// plain memory (no KVM): entries with refused bits in a validated table
// (PT-6) and changes to the hypervisor's L4 slots (PT-7), each written
// straight into memory, as a hypervisor bug or an escape would write them.

import { beforeAll, beforeEach, describe, expect, it } from 'vitest';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { createPlainMemory } from '../../../src/engine/plain-memory.js';
import { FrameTable, PageType } from '../../../src/hv/mm/frames.js';
import { buildDomain, type BootLayout } from '../../../src/hv/domain/builder.js';
import { parseGuestKernel, type GuestKernel } from '../../../src/hv/domain/elf.js';
import { XenSpace } from '../../../src/hv/mm/xen-space.js';
import { PageTypes } from '../../../src/hv/mm/page-types.js';
import { auditPageTypes, type AuditDomain } from '../../../src/hv/mm/page-audit.js';
import type { DomainMemory } from '../../../src/hv/mm/domain-memory.js';

const MIB = 1 << 20;
const P = 1n, RW = 2n, US = 4n, PCD = 0x10n, PSE = 0x80n;
const TRANSPORTS = path.resolve(import.meta.dirname, '../../guests/build/elf/transports.elf');
const hex = (v: number | bigint) => `0x${v.toString(16)}`;
let file: Uint8Array;
let kernel: GuestKernel;
beforeAll(() => {
  file = fs.readFileSync(TRANSPORTS);
  kernel = parseGuestKernel(file);
});

describe('page-type audit', () => {
  let ft: FrameTable;
  let layout: BootLayout;
  let memory: DomainMemory;
  let domain: AuditDomain;
  beforeEach(() => {
    ft = new FrameTable(createPlainMemory(32 * MIB));
    const xen = new XenSpace(ft, true);
    const pd = xen.buildPerDomain(1);
    ({ layout, memory } = buildDomain(new PageTypes(ft, (mfn) => xen.fillReservedL4(mfn, pd)), 1, kernel, file, { memoryBytes: 8 * MIB }));
    domain = { domid: 1, roots: [], held: [layout.sharedInfoMfn], reservedL4: pd.reservedL4 };
  });

  /** The first present entry of table `mfn`. */
  const firstPresent = (mfn: number) => ft.words(mfn).findIndex((e) => (e & P) !== 0n);

  it('passes a freshly built domain', () => {
    expect(auditPageTypes(ft, [domain])).toEqual([]);
  });

  it('reports a refused bit in an entry of a validated table (PT-6): PSE in an L2, PCD in an L1', () => {
    const l2 = memory.mfnOf(layout.pfn.ptBase + 2); // L4, L3, then the L2
    expect(ft.type[l2]).toBe(PageType.l2);
    const i = firstPresent(l2);
    ft.words(l2)[i]! |= PSE;
    expect(auditPageTypes(ft, [domain])).toEqual([`L2 ${hex(l2)}[${i}]: PT-6: level-2 entry maps a superpage (PSE), which paravane does not offer`]);
    ft.words(l2)[i]! &= ~PSE;
    expect(auditPageTypes(ft, [domain])).toEqual([]);
    const l1 = memory.mfnOf(layout.pfn.ptBase + 3);
    expect(ft.type[l1]).toBe(PageType.l1);
    const j = firstPresent(l1);
    ft.words(l1)[j]! |= PCD;
    expect(auditPageTypes(ft, [domain])).toEqual([`L1 ${hex(l1)}[${j}]: PT-6: level-1 entry sets a cache-control bit (PWT, PCD or PAT)`]);
  });

  it('reports any change to the hypervisor\'s L4 slots (PT-7): a new entry in slot 260, a changed slot 257', () => {
    const l4 = ft.words(layout.l4Mfn);
    const entry = (BigInt(memory.mfnOf(0)) << 12n) | P | RW | US;
    l4[260] = entry;
    expect(auditPageTypes(ft, [domain])).toEqual([`PT-7: L4 ${hex(layout.l4Mfn)}[260] holds ${hex(entry)}, not the hypervisor's 0x0`]);
    l4[260] = 0n;
    const perDomain = l4[257]!;
    l4[257] = perDomain ^ RW;
    expect(auditPageTypes(ft, [domain])).toEqual([`PT-7: L4 ${hex(layout.l4Mfn)}[257] holds ${hex(perDomain ^ RW)}, not the hypervisor's ${hex(perDomain)}`]);
    l4[257] = perDomain;
    expect(auditPageTypes(ft, [domain])).toEqual([]);
  });
});
