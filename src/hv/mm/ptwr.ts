// Writable page tables (Xen's ptwr): a guest kernel store that faulted on
// a read-only mapping of one of its own L1 tables is emulated as a
// validated update of that entry, through the same L1 path as mmu_update
// (./pt-update.ts). The instruction is decoded and applied by
// ./ptwr-decode.ts; this file finds the table, reads the instruction and
// commits the effect. Inputs: the faulting address, rip, registers and
// instruction bytes are the guest's (hostile).

import type { RegisterFile } from '../../engine/types.js';
import { PageType } from './frames.js';
import type { GuestMemory } from './guest-access.js';
import { entryFrame, PageTypeError, type PageTypes } from './page-types.js';
import { l1For, modEntry, recordStale } from './pt-update.js';
import { emulatePtStore, type ModrmReg } from './ptwr-decode.js';
import type { DomainTranslations } from './tlb.js';

/** The interrupted state the store resumes in (the ring-0 exception frame's words). */
export interface StoreFrame { rip: bigint; rflags: bigint; rsp: bigint }

/** Who stored: the domain, its tables and the vCPU's view of memory. */
export interface PtwrDomain {
  readonly pt: PageTypes;
  readonly tlb: DomainTranslations;
  readonly domid: number;
  /** The vCPU's kernel root (the fault is a kernel-mode write). */
  readonly cr3: number;
  readonly guest: GuestMemory;
}

/**
 * Emulates the store at `frame.rip` that faulted writing `cr2`. Returns
 * true when done (the frame's rip, rflags and the registers are as after
 * the instruction), a reason when the instruction or the update was
 * refused (nothing changed), undefined when the fault was not on one of
 * the domain's L1 tables.
 */
export function emulatePtWrite(d: PtwrDomain, cr2: bigint, frame: StoreFrame, regs: RegisterFile): true | string | undefined {
  const ft = d.pt.ft;
  // The frame cr2 lies in, through the domain's L1 that maps it read-only.
  let l1: number;
  try {
    l1 = l1For(d.pt, d.domid, d.cr3, cr2);
  } catch (e) {
    if (e instanceof PageTypeError) return undefined;
    throw e;
  }
  const l1Words = ft.words32(l1);
  const slot = Number((cr2 >> 12n) & 0x1ffn);
  const lo = l1Words[2 * slot]!;
  if (!(lo & 1) || lo & 2) return undefined;
  const target = entryFrame(lo, l1Words[2 * slot + 1]!);
  if (!ft.isValid(target) || ft.owner[target] !== d.domid || ft.type[target] !== PageType.l1 || !ft.typeCount[target]) return undefined;
  // Up to 15 bytes of the instruction; fewer if the next page is not mapped.
  const rip = frame.rip;
  let code: Uint8Array;
  try {
    code = d.guest.read(rip, 15);
  } catch {
    try { code = d.guest.read(rip, Math.min(15, 4096 - Number(rip & 0xfffn))); } catch { return undefined; }
  }
  // The instruction, checked against cr2 and applied to the entry cr2 lies in.
  const index = Number(cr2 & 0xfffn) >> 3;
  const get = (r: ModrmReg): bigint => (r === 'rsp' ? frame.rsp : regs[r]);
  const words = ft.words32(target);
  const old = (BigInt(words[2 * index + 1]!) << 32n) | BigInt(words[2 * index]!);
  const effect = emulatePtStore({ code, rip, cr2, reg: get, old, rflags: frame.rflags });
  if (typeof effect === 'string') return effect;
  if (effect.entry !== undefined) {
    let stale: number;
    try {
      stale = modEntry(d.pt, d.domid, target, 1, index, Number(effect.entry & 0xffffffffn) >>> 0, Number(effect.entry >> 32n) >>> 0, false);
    } catch (e) {
      if (e instanceof PageTypeError) return e.message;
      throw e;
    }
    // As Xen's ptwr emulation: no flush; the guest asks for one as after an mmu_update.
    recordStale(d.tlb, stale);
  }
  // Registers, flags and rip only once the entry is in: a refusal changes nothing.
  for (const [r, v] of effect.regs) {
    if (r === 'rsp') frame.rsp = v;
    else regs[r] = v;
  }
  frame.rflags = effect.rflags;
  frame.rip = rip + BigInt(effect.length);
  return true;
}
