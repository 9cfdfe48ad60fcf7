// The memory-management hypercalls: mmu_update, update_va_mapping,
// mmuext_op and multicall, as Xen answers an unprivileged PV domain
// (Xen's public headers; docs/abi.md). Every entry a guest asks to install goes
// through the page-type system (src/hv/mm/page-types.ts), which is what keeps
// the domain inside its own frames. Long requests are processed in bounded
// chunks with Xen's continuation convention (the count is rewritten, the
// call is re-issued) so the hypervisor never stalls. Inputs: hostile
// (pointers, counts, frame numbers, entry values).

import { DomidSpecial, MmuUpdate, MmuUpdateType, MmuextCmd, MmuextOp, MulticallEntry, Uvmf } from '../../abi/generated/xen.js';
import { Hypercall } from '../../abi/generated/xen.js';
import { PageType } from '../mm/frames.js';
import { GuestFault, guestRangeOk } from '../mm/guest-access.js';
import { errno, type HypercallArgs, type HypercallContext, type MmContext } from './context.js';
import { NOT_STALE, PageTypeError } from '../mm/page-types.js';
import { l1For, modEntry, ptUpdate, recordStale } from '../mm/pt-update.js';
import { hex } from '../format.js';
import { MAX_LDT_ENTRIES } from '../mm/descriptors.js';
import type { HypercallTable } from './table.js';

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
 * Reading path 7: mmu_update(req, count, pdone, foreigndom). Stops at the first failing
 * request; *pdone counts the requests done (across continuations).
 */
export function mmuUpdate(ctx: HypercallContext, [reqs, countArg, pdone, foreigndom]: HypercallArgs): bigint {
  const mm = ctx.mm;
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
  const pt = mm.pt, ft = pt.ft, tlb = mm.tlb;
  const workStart = pt.work;
  try {
    for (; i < n; i++) {
      const ptrLo = w[4 * i]!, cmd = ptrLo & 7;
      const mfn = (ptrLo >>> 12) + w[4 * i + 1]! * 0x100000; // the request's machine address, as a frame
      // NO_TRANSLATE is NORMAL for a PV guest (its tables hold machine frames already).
      if (cmd === MmuUpdateType.MMU_NORMAL_PT_UPDATE || cmd === MmuUpdateType.MMU_PT_UPDATE_PRESERVE_AD || cmd === MmuUpdateType.MMU_PT_UPDATE_NO_TRANSLATE) {
        const stale = ptUpdate(pt, tlb, ctx.domid, mfn, (ptrLo & 0xfff) >>> 3, w[4 * i + 2]!, w[4 * i + 3]!, cmd === MmuUpdateType.MMU_PT_UPDATE_PRESERVE_AD);
        if (stale !== NOT_STALE) recordStale(tlb, stale);
      } else if (cmd === MmuUpdateType.MMU_MACHPHYS_UPDATE) {
        if (!ft.isValid(mfn) || ft.owner[mfn] !== ctx.domid) throw new PageTypeError('PT-5', 22, `M2P update of frame ${hex(mfn)}, not one of the domain's`);
        ft.setM2p(mfn, (BigInt(w[4 * i + 3]!) << 32n) | BigInt(w[4 * i + 2]!));
      } else {
        rc = errno('XEN_ENOSYS');
        break;
      }
      if (pt.work - workStart >= WORK_BUDGET) {
        i++; // this one is done; the rest continue in the next invocation
        break;
      }
    }
  } catch (e) {
    rc = toErrno(e); // request i was refused and changed nothing
  }
  return batchEnd(ctx, rc, reqs, pdone, foreigndom, MmuUpdate.SIZE, count, done, i);
}

/** update_va_mapping(va, val, flags): one L1 entry of the current tables. */
export function updateVaMapping(ctx: HypercallContext, [va, val, flags]: HypercallArgs): bigint {
  const mm = ctx.mm;
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
}

/**
 * MMUEXT_NEW_BASEPTR / NEW_USER_BASEPTR (and a `mov` to CR3, which the
 * emulator turns into this): the vCPU's kernel or user root becomes `mfn`,
 * a validated L4 of `domid` whose type reference the vCPU then holds
 * (PT-11); a user root of 0 removes it. Loading a root flushes the TLB, as
 * a CR3 write does (Xen's write_ptbase). Throws PageTypeError (nothing
 * changed) for a frame that cannot be an L4 of the domain.
 */
export function newBasePointer(mm: MmContext, domid: number, mfn: number, user: boolean): void {
  const pt = mm.pt;
  const old = user ? mm.userCr3 : mm.cr3;
  if (user && mfn === 0) {
    if (old) pt.putPageAndType(old);
    mm.setUserCr3(0);
    return;
  }
  mm.tlb.flush();
  if (mfn === old) return;
  pt.getPageAndType(mfn, PageType.l4, domid);
  if (old) pt.putPageAndType(old);
  if (user) mm.setUserCr3(mfn);
  else mm.setCr3(mfn);
}

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
    case MmuextCmd.MMUEXT_NEW_USER_BASEPTR:
      newBasePointer(mm, ctx.domid, mfnArg(), cmd === MmuextCmd.MMUEXT_NEW_USER_BASEPTR);
      return 0n;
    // Flush requests: everything stale is forgotten, for every vCPU of the
    // domain at once (the engine drops a VM's cached translations as a
    // whole), so LOCAL, MULTI and ALL all reach at least the vCPUs asked.
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
export function mmuextOp(ctx: HypercallContext, [ops, countArg, pdone, foreigndom]: HypercallArgs): bigint {
  const mm = ctx.mm;
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
}

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
 * The sub-calls' context: the caller's, except that a continuation is
 * caught here (in `caught`). One per calling context (a vCPU's), made at
 * its first multicall.
 */
const caught: { args?: HypercallArgs } = {};
const subContexts = new WeakMap<HypercallContext, HypercallContext>();
function subContext(ctx: HypercallContext): HypercallContext {
  let sub = subContexts.get(ctx);
  if (sub === undefined) {
    sub = Object.create(ctx, { continueWith: { value: (a: HypercallArgs) => { caught.args = a; } } }) as HypercallContext;
    subContexts.set(ctx, sub);
  }
  return sub;
}

/**
 * multicall(list, nr_calls): each entry's hypercall runs in turn (through
 * the table that dispatched the multicall) and its result is stored in the
 * entry. A nested multicall gets -EINVAL; the list stops after an iret
 * (which does not return to the list). Entries whose call continues (a
 * long mmu_update) are re-run from the continuation.
 */
export function multicall(ctx: HypercallContext, [list, nrArg]: HypercallArgs, table: HypercallTable): bigint {
  const nr = Number(nrArg & 0xffffffffn);
  const n = Math.min(nr, MULTICALL_CHUNK);
  const workStart = ctx.mm.pt.work;
  const sub = subContext(ctx);
  for (let i = 0; i < n; i++) {
    if (i > 0 && ctx.mm.pt.work - workStart >= WORK_BUDGET) {
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
}
