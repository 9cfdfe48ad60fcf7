// The memory-management hypercalls: mmu_update, update_va_mapping,
// mmuext_op and multicall, as Xen answers an unprivileged PV domain
// (../shared/xen-abi.md 4.3-4.4). Every entry a guest asks to install goes
// through the page-type system (src/hv/mm/page-types.ts), which is what keeps
// the domain inside its own frames. Long requests are processed in bounded
// chunks with Xen's continuation convention (the count is rewritten, the
// call is re-issued) so the hypervisor never stalls. Inputs: hostile
// (pointers, counts, frame numbers, entry values).

import { DomidSpecial, MmuUpdate, MmuUpdateType, MmuextCmd, MmuextOp, MulticallEntry, Uvmf } from '../../abi/generated/xen.js';
import { Hypercall } from '../../abi/generated/xen.js';
import { PageType } from '../mm/frames.js';
import { GuestFault, guestRangeOk } from '../mm/guest-access.js';
import { errno, need, type HypercallArgs, type HypercallContext, type HypercallHandler, type HypercallTable } from './table.js';
import { entryFrame, isPageTableType, PageTypeError, PageTypes, takesAway } from '../mm/page-types.js';
import type { DomainTranslations } from '../mm/tlb.js';
import { PTE_LO } from '../mm/pte.js';

/** What the MMU hypercalls need of the calling vCPU and its domain. */
export interface MmContext {
  readonly pt: PageTypes;
  /** The vCPU's kernel root and user root (0: none), machine frames. */
  readonly cr3: number;
  readonly userCr3: number;
  /** Loads a new kernel or user root on this vCPU (its type reference is the caller's to take). */
  setCr3(mfn: number): void;
  setUserCr3(mfn: number): void;
  /** The domain's stale-translation tracker (src/hv/mm/tlb.ts): updates record there, flush requests flush it. */
  readonly tlb: DomainTranslations;
  /** The LDT this vCPU asked for (checked; loaded with descriptor-table support). */
  setLdt(base: bigint, entries: number): void;
}

/** Bit 31 of the count marks a continued mmu_update / mmuext_op. */
export const MMU_UPDATE_PREEMPTED = 0x80000000;
/** Requests processed per invocation before a continuation. */
export const MMU_CHUNK = 1024;
/** Multicall entries processed per invocation before a continuation. */
export const MULTICALL_CHUNK = 256;
/**
 * Page-table entries validated or devalidated per invocation before a
 * batch call continues (~5 ms here): requests are cheap one by one, but one
 * that hooks or unhooks a big tree visits every entry below it. A single
 * request still runs to the end (its work is bounded by the domain's size;
 * Xen can also stop inside one, with partially validated tables).
 */
export const WORK_BUDGET = 1 << 18;
const MAX_LDT_ENTRIES = 8192;
const { P, US, A, D } = PTE_LO;
/** Low-half bits an L1 update may change without revalidation (Xen's fast path): US, A, D, G, AVAIL. */
const L1_FAST_LO = US | A | D | PTE_LO.G | PTE_LO.AVAIL;
/** modEntry: no cached translation can be stale. */
export const NOT_STALE = -1;
/** modEntry: an upper-level entry lost access; a cached subtree may be stale. */
export const UPPER_STALE = -2;
const hex = (v: number | bigint): string => `0x${v.toString(16)}`;

function toErrno(e: unknown): bigint {
  if (e instanceof PageTypeError) return -BigInt(e.errno);
  if (e instanceof GuestFault) return errno('XEN_EFAULT');
  throw e;
}

/**
 * Xen's foreigndom checks for an unprivileged domain: the data owner (low
 * half) must be DOMID_SELF (naming itself by number is -ESRCH), and a
 * page-table owner (high half, plus one) only itself. Returns an errno or 0.
 */
function foreignCheck(ctx: HypercallContext, foreigndom: bigint): bigint {
  const low = Number(foreigndom & 0xffffn), high = Number((foreigndom >> 16n) & 0xffffn);
  if (high !== 0 && high - 1 !== ctx.domid) return errno('XEN_EPERM');
  if (low === DomidSpecial.DOMID_SELF) return 0n;
  return low === ctx.domid ? errno('XEN_ESRCH') : errno('XEN_EPERM');
}

/**
 * Writes entry `index` of table `mfn` (level 1-4, validated) to `lo:hi`,
 * taking the new entry's references before dropping the old one's. Xen's
 * mod_lN_entry: US is forced (the guest kernel runs at CPL 3), the
 * hypervisor's L4 slots cannot be changed (PT-7). Returns what cached
 * translations may now be stale: NOT_STALE, UPPER_STALE, or (a leaf entry)
 * the frame it mapped before. The caller records it (DomainTranslations);
 * nothing is flushed until the guest asks or a frame changes type.
 */
export function modEntry(pt: PageTypes, domid: number, mfn: number, level: number, index: number, newLo: number, newHi: number, preserveAd: boolean): number {
  if (!PageTypes.isGuestSlot(level, index)) throw new PageTypeError('PT-7', 22, `L4 slot ${index} belongs to the hypervisor`);
  const words = pt.ft.words32(mfn);
  const oldLo = words[2 * index]!, oldHi = words[2 * index + 1]!;
  if (newLo & P) {
    newLo = (newLo | US) >>> 0;
    if (level === 4) newLo = (newLo | A) >>> 0;
    if (preserveAd) newLo = (newLo | (oldLo & (A | D))) >>> 0;
    // Fast path: same frame and RW bit, only harmless bits differ (no reference changes).
    // No bit check: the old entry passed it, the high word is the same and
    // L1_FAST_LO shares no bit with the refused ones (PWT, PCD, PAT).
    if (level === 1 && oldLo & P && newHi === oldHi && ((newLo ^ oldLo) & ~L1_FAST_LO) === 0) {
      words[2 * index] = newLo;
      return oldLo & ~newLo & (A | D) ? entryFrame(oldLo, oldHi) : NOT_STALE;
    }
  }
  if (level === 1) {
    pt.setL1Entry(words, index, newLo, newHi, domid);
  } else {
    pt.getEntry(level, newLo, newHi, domid);
    words[2 * index] = newLo;
    words[2 * index + 1] = newHi;
    pt.putEntry(level, oldLo, oldHi);
  }
  if (!(oldLo & P) || !takesAway(oldLo, oldHi, newLo, newHi)) return NOT_STALE;
  return level === 1 ? entryFrame(oldLo, oldHi) : UPPER_STALE;
}

/** Records what modEntry returned. */
export function recordStale(tlb: DomainTranslations, stale: number): void {
  if (stale >= 0) tlb.leafChanged(stale);
  else if (stale === UPPER_STALE) tlb.upperChanged();
}

/**
 * One MMU_NORMAL_PT_UPDATE / PRESERVE_AD request: entry `index` of frame
 * `mfn` becomes lo:hi. Returns what modEntry does. (Numbers, not BigInts:
 * this runs once per request of every batch.)
 */
function ptUpdate(ctx: HypercallContext, mm: MmContext, mfn: number, index: number, lo: number, hi: number, preserveAd: boolean): number {
  const pt = mm.pt;
  const ft = pt.ft;
  if (!ft.isValid(mfn) || ft.owner[mfn] !== ctx.domid) {
    throw new PageTypeError('PT-5', 22, `request names frame ${hex(mfn)}, not one of the domain's`);
  }
  const type = ft.type[mfn]!;
  if (isPageTableType(type) && ft.typeCount[mfn]! > 0) return modEntry(pt, ctx.domid, mfn, type, index, lo, hi, preserveAd);
  if (type === PageType.none || type === PageType.writable) {
    // An ordinary data page: a plain store (Xen allows it), done under a
    // writable type reference so the page cannot be a table meanwhile.
    pt.getPageType(mfn, PageType.writable, ctx.domid);
    const words = ft.words32(mfn);
    words[2 * index] = lo;
    words[2 * index + 1] = hi;
    pt.putPageType(mfn);
    mm.tlb.hostWrote(mfn);
    return NOT_STALE;
  }
  throw new PageTypeError('PT-1', 22, `frame ${hex(mfn)} is typed ${type}, not a page table or data page`);
}

/**
 * The count of a batch call (mmu_update, mmuext_op) and the requests done
 * by earlier parts of it: a continued call carries MMU_UPDATE_PREEMPTED in
 * its count and its progress in *pdone.
 */
function batchStart(ctx: HypercallContext, countArg: bigint, pdone: bigint): { count: number; done: number } {
  const count = Number(countArg & 0xffffffffn);
  if (!(count & MMU_UPDATE_PREEMPTED)) return { count, done: 0 };
  return { count: (count & ~MMU_UPDATE_PREEMPTED) >>> 0, done: pdone !== 0n ? ctx.guest.readU32(pdone) : 0 };
}

/**
 * Ends a batch call after `i` of `count` requests: records the progress in
 * *pdone, and when all went well but some are left, re-issues the call
 * with the rest (Xen's continuation).
 */
function batchEnd(ctx: HypercallContext, rc: bigint, list: bigint, pdone: bigint, foreigndom: bigint, size: number, count: number, done: number, i: number): bigint {
  if (pdone !== 0n) ctx.guest.writeU32(pdone, done + i);
  if (rc === 0n && i < count) {
    ctx.continueWith([list + BigInt(i * size), BigInt(((count - i) | MMU_UPDATE_PREEMPTED) >>> 0), pdone, foreigndom, 0n]);
  }
  return rc;
}

/** Where mmu_update copies a chunk of requests (one core thread: one buffer, no allocation per call). */
const requestBytes = new Uint8Array(MMU_CHUNK * MmuUpdate.SIZE);
const requestWords = new Uint32Array(requestBytes.buffer);

/**
 * mmu_update(req, count, pdone, foreigndom). Stops at the first failing
 * request; *pdone counts the requests done (across continuations).
 */
const mmuUpdate: HypercallHandler = (ctx, [reqs, countArg, pdone, foreigndom]) => {
  const mm = need(ctx, 'mm');
  const bad = foreignCheck(ctx, foreigndom);
  if (bad) return bad;
  const { count, done } = batchStart(ctx, countArg, pdone);
  const n = Math.min(count, MMU_CHUNK);
  let i = 0;
  let rc = 0n;
  // Read the whole chunk first (one bounds-checked copy), then apply it as
  // 32-bit words: ptr low and high, val low and high.
  if (n) ctx.guest.readInto(reqs, n * MmuUpdate.SIZE, requestBytes);
  const w = requestWords;
  const workStart = mm.pt.work;
  for (; i < n; i++) {
    // The common case (an entry of one of the domain's live L1s) in one
    // tight loop; it stops at the first request that needs the general path.
    i = mm.pt.updateL1Batch(w, i, n, ctx.domid, mm.tlb);
    if (i === n) break;
    const ptrLo = w[4 * i]!, ptrHi = w[4 * i + 1]!;
    const cmd = ptrLo & 7;
    const mfn = (ptrLo >>> 12) + ptrHi * 0x100000;
    try {
      // NO_TRANSLATE is NORMAL for a PV guest (its tables hold machine frames already).
      if (cmd === MmuUpdateType.MMU_NORMAL_PT_UPDATE || cmd === MmuUpdateType.MMU_PT_UPDATE_PRESERVE_AD || cmd === MmuUpdateType.MMU_PT_UPDATE_NO_TRANSLATE) {
        const stale = ptUpdate(ctx, mm, mfn, (ptrLo & 0xfff) >>> 3, w[4 * i + 2]!, w[4 * i + 3]!, cmd === MmuUpdateType.MMU_PT_UPDATE_PRESERVE_AD);
        if (stale !== NOT_STALE) recordStale(mm.tlb, stale);
      } else if (cmd === MmuUpdateType.MMU_MACHPHYS_UPDATE) {
        if (!mm.pt.ft.isValid(mfn) || mm.pt.ft.owner[mfn] !== ctx.domid) throw new PageTypeError('PT-5', 22, `M2P update of frame ${hex(mfn)}, not one of the domain's`);
        mm.pt.ft.setM2p(mfn, (BigInt(w[4 * i + 3]!) << 32n) | BigInt(w[4 * i + 2]!));
      } else {
        rc = errno('XEN_ENOSYS');
        break;
      }
    } catch (e) {
      rc = toErrno(e);
      break;
    }
    if (mm.pt.work - workStart >= WORK_BUDGET) {
      i++; // this one is done; the rest continue in the next invocation
      break;
    }
  }
  return batchEnd(ctx, rc, reqs, pdone, foreigndom, MmuUpdate.SIZE, count, done, i);
};

/** The L1 frame mapping `va` in the tables rooted at `cr3`, as update_va_mapping finds it (and writable page tables). */
export function l1For(pt: PageTypes, domid: number, cr3: number, va: bigint): number {
  if (!guestRangeOk(va, 1)) throw new PageTypeError('PT-5', 22, `address ${hex(va)} is not a guest address`);
  let table = cr3;
  for (let level = 4; level > 1; level--) {
    const words = pt.ft.words32(table);
    const i = Number((va >> BigInt(12 + 9 * (level - 1))) & 0x1ffn);
    const lo = words[2 * i]!;
    if (!(lo & P) || (level < 4 && lo & 0x80)) throw new PageTypeError('PT-2', 22, `no level-1 table maps ${hex(va)}`);
    table = entryFrame(lo, words[2 * i + 1]!);
  }
  if (!pt.ft.isValid(table) || pt.ft.owner[table] !== domid || pt.ft.type[table] !== PageType.l1) {
    throw new PageTypeError('PT-2', 22, `the table mapping ${hex(va)} is not one of the domain's L1 tables`);
  }
  return table;
}

/** update_va_mapping(va, val, flags): one L1 entry of the current tables. */
const updateVaMapping: HypercallHandler = (ctx, [va, val, flags]) => {
  const mm = need(ctx, 'mm');
  const flush = flags & BigInt(Uvmf.UVMF_FLUSHTYPE_MASK);
  if (flush === 3n) return errno('XEN_EINVAL');
  const mask = flags & ~7n; // UVMF_MULTI: a pointer to the vCPU bitmap
  if (mask && flush) ctx.guest.read(mask, 8);
  try {
    const l1 = l1For(mm.pt, ctx.domid, mm.cr3, va);
    recordStale(mm.tlb, modEntry(mm.pt, ctx.domid, l1, 1, Number((va >> 12n) & 0x1ffn), Number(val & 0xffffffffn) >>> 0, Number((val >> 32n) & 0xffffffffn) >>> 0, false));
  } catch (e) {
    return toErrno(e);
  }
  // UVMF_INVLPG and UVMF_TLB_FLUSH (local or for the vCPUs in the mask):
  // everything stale is forgotten, which covers the one address asked for.
  if (flush) mm.tlb.flush();
  return 0n;
};

/** One mmuext_op request; throws PageTypeError, returns an errno for the rest. */
function mmuextOne(ctx: HypercallContext, mm: MmContext, cmd: number, arg1: bigint, arg2: bigint): bigint {
  const pt = mm.pt;
  const mfnArg = (): number => {
    if (arg1 >= BigInt(pt.ft.count)) throw new PageTypeError('PT-5', 22, `frame ${hex(arg1)} does not exist`);
    return Number(arg1);
  };
  switch (cmd) {
    case MmuextCmd.MMUEXT_PIN_L1_TABLE:
    case MmuextCmd.MMUEXT_PIN_L2_TABLE:
    case MmuextCmd.MMUEXT_PIN_L3_TABLE:
    case MmuextCmd.MMUEXT_PIN_L4_TABLE:
      pt.pin(mfnArg(), (cmd + 1) as 1 | 2 | 3 | 4, ctx.domid);
      return 0n;
    case MmuextCmd.MMUEXT_UNPIN_TABLE:
      // No flush: the table's contents do not change; if it loses its last
      // reference it is reported as devalidated.
      pt.unpin(mfnArg(), ctx.domid);
      return 0n;
    case MmuextCmd.MMUEXT_NEW_BASEPTR:
    case MmuextCmd.MMUEXT_NEW_USER_BASEPTR: {
      const user = cmd === MmuextCmd.MMUEXT_NEW_USER_BASEPTR;
      const mfn = mfnArg();
      const old = user ? mm.userCr3 : mm.cr3;
      if (user && mfn === 0) {
        if (old) pt.putPageAndType(old);
        mm.setUserCr3(0);
        return 0n;
      }
      // Loading a root flushes the TLB, as a CR3 write does (Xen's write_ptbase).
      mm.tlb.flush();
      if (mfn === old) return 0n;
      pt.getPageAndType(mfn, PageType.l4, ctx.domid);
      if (old) pt.putPageAndType(old);
      if (user) mm.setUserCr3(mfn);
      else mm.setCr3(mfn);
      return 0n;
    }
    // Flush requests: everything stale is forgotten (one vCPU per domain
    // for now, so LOCAL, MULTI and ALL reach the same vCPUs).
    case MmuextCmd.MMUEXT_TLB_FLUSH_LOCAL:
    case MmuextCmd.MMUEXT_TLB_FLUSH_MULTI:
    case MmuextCmd.MMUEXT_TLB_FLUSH_ALL:
      if (cmd === MmuextCmd.MMUEXT_TLB_FLUSH_MULTI) ctx.guest.read(arg2, 8); // the vCPU mask must be readable
      mm.tlb.flush();
      return 0n;
    case MmuextCmd.MMUEXT_INVLPG_LOCAL:
    case MmuextCmd.MMUEXT_INVLPG_MULTI:
    case MmuextCmd.MMUEXT_INVLPG_ALL:
      // As Xen for a PV guest: an address that is not the guest's is
      // ignored, not an error. Forgetting everything stale covers the page.
      if (cmd === MmuextCmd.MMUEXT_INVLPG_MULTI) ctx.guest.read(arg2, 8);
      if (guestRangeOk(arg1, 1)) mm.tlb.flush();
      return 0n;
    case MmuextCmd.MMUEXT_FLUSH_CACHE:
    case MmuextCmd.MMUEXT_FLUSH_CACHE_GLOBAL:
      return errno('XEN_EACCES'); // needs cache-flush permission (I/O capable domains)
    case MmuextCmd.MMUEXT_SET_LDT: {
      // As Xen: nr_ents is the low 32 bits; with no entries the base is ignored.
      const entries = Number(arg2 & 0xffffffffn);
      const base = entries ? arg1 : 0n;
      if (base & 0xfffn || entries > MAX_LDT_ENTRIES || !guestRangeOk(base, entries * 8)) return errno('XEN_EINVAL');
      mm.setLdt(base, entries);
      return 0n;
    }
    case MmuextCmd.MMUEXT_CLEAR_PAGE:
    case MmuextCmd.MMUEXT_COPY_PAGE: {
      const dst = mfnArg();
      pt.getPageAndType(dst, PageType.writable, ctx.domid);
      mm.tlb.hostWrote(dst);
      try {
        if (cmd === MmuextCmd.MMUEXT_CLEAR_PAGE) {
          pt.ft.bytes(dst).fill(0);
        } else {
          if (arg2 >= BigInt(pt.ft.count)) throw new PageTypeError('PT-5', 22, `frame ${hex(arg2)} does not exist`);
          const src = Number(arg2);
          pt.getPage(src, ctx.domid);
          pt.ft.bytes(dst).set(pt.ft.bytes(src));
          pt.putPage(src);
        }
      } finally {
        pt.putPageAndType(dst);
      }
      return 0n;
    }
    case MmuextCmd.MMUEXT_MARK_SUPER:
    case MmuextCmd.MMUEXT_UNMARK_SUPER:
      return errno('XEN_EOPNOTSUPP'); // superpages are off
    default:
      return errno('XEN_ENOSYS');
  }
}

/** mmuext_op(ops, count, pdone, foreigndom). */
const mmuextOp: HypercallHandler = (ctx, [ops, countArg, pdone, foreigndom]) => {
  const mm = need(ctx, 'mm');
  const bad = foreignCheck(ctx, foreigndom);
  if (bad) return bad;
  const { count, done } = batchStart(ctx, countArg, pdone);
  const n = Math.min(count, MMU_CHUNK);
  const bytes = n ? ctx.guest.read(ops, n * MmuextOp.SIZE) : new Uint8Array(0);
  const view = new DataView(bytes.buffer);
  let i = 0;
  let rc = 0n;
  const workStart = mm.pt.work;
  for (; i < n; i++) {
    const at = i * MmuextOp.SIZE;
    try {
      rc = mmuextOne(ctx, mm, view.getUint32(at, true), view.getBigUint64(at + 8, true), view.getBigUint64(at + 16, true));
    } catch (e) {
      rc = toErrno(e);
    }
    if (rc !== 0n) break;
    if (mm.pt.work - workStart >= WORK_BUDGET) {
      i++;
      break;
    }
  }
  return batchEnd(ctx, rc, ops, pdone, foreigndom, MmuextOp.SIZE, count, done, i);
};

const OP_MULTICALL = BigInt(Hypercall.HYPERVISOR_multicall);
const OP_IRET = BigInt(Hypercall.HYPERVISOR_iret);

/**
 * Where multicall copies each entry (no allocation per entry). Nested
 * multicalls are refused, and an entry's op and arguments are taken out
 * before its call runs, so one buffer serves.
 */
const entry = MulticallEntry.over(new ArrayBuffer(MulticallEntry.SIZE));
const entryBytes = new Uint8Array(entry.view.buffer);

/**
 * multicall(list, nr_calls): each entry's hypercall runs in turn and its
 * result is stored in the entry. A nested multicall gets -EINVAL; the list
 * stops after an iret (which does not return to the list). Entries whose
 * call continues (a long mmu_update) are re-run from the continuation.
 */
function makeMulticall(table: HypercallTable): HypercallHandler {
  // The sub-calls' context: the caller's, except that a continuation is
  // caught here. One per calling context (a vCPU's), made at its first multicall.
  const caught: { args?: HypercallArgs } = {};
  const subs = new WeakMap<HypercallContext, HypercallContext>();
  const subContext = (ctx: HypercallContext): HypercallContext => {
    let sub = subs.get(ctx);
    if (sub === undefined) {
      sub = Object.create(ctx, { continueWith: { value: (a: HypercallArgs) => { caught.args = a; } } }) as HypercallContext;
      subs.set(ctx, sub);
    }
    return sub;
  };
  return (ctx, [list, nrArg]) => {
    const nr = Number(nrArg & 0xffffffffn);
    const n = Math.min(nr, MULTICALL_CHUNK);
    const workStart = ctx.mm?.pt.work ?? 0;
    const sub = subContext(ctx);
    for (let i = 0; i < n; i++) {
      if (i > 0 && (ctx.mm?.pt.work ?? 0) - workStart >= WORK_BUDGET) {
        ctx.continueWith([list + BigInt(i * MulticallEntry.SIZE), BigInt(nr - i), 0n, 0n, 0n]);
        return 0n;
      }
      const at = list + BigInt(i * MulticallEntry.SIZE);
      ctx.guest.readInto(at, MulticallEntry.SIZE, entryBytes);
      const op = entry.op;
      const args: HypercallArgs = [entry.args_at(0), entry.args_at(1), entry.args_at(2), entry.args_at(3), entry.args_at(4)];
      let result: bigint;
      if (op === OP_MULTICALL) {
        result = errno('XEN_EINVAL'); // no nesting
      } else {
        caught.args = undefined;
        result = table.dispatch(sub, op, args);
        const continued = caught.args as HypercallArgs | undefined; // set by the call, if it was cut short
        if (continued) {
          // The sub-call was cut short: store its rewritten arguments in the
          // entry and restart the list there (Xen's multicall preemption).
          continued.forEach((v, k) => ctx.guest.writeU64(at + BigInt(MulticallEntry.OFFSETS.args + 8 * k), v));
          ctx.continueWith([at, BigInt(nr - i), 0n, 0n, 0n]);
          return 0n;
        }
      }
      ctx.guest.writeU64(at + BigInt(MulticallEntry.OFFSETS.result), BigInt.asUintN(64, result));
      if (op === OP_IRET) return 0n; // iret does not come back to the list
    }
    if (n < nr) ctx.continueWith([list + BigInt(n * MulticallEntry.SIZE), BigInt(nr - n), 0n, 0n, 0n]);
    return 0n;
  };
}

/** Registers mmu_update, update_va_mapping, mmuext_op and multicall. */
export function registerMmuHypercalls(t: HypercallTable): HypercallTable {
  return t.register('mmu_update', mmuUpdate).register('update_va_mapping', updateVaMapping)
    .register('mmuext_op', mmuextOp).register('multicall', makeMulticall(t));
}
