// grant_table_op (hypercall 20), the grant-table management Xen gives a PV
// domU: setup_table (grow the table, list its frames), query_size,
// set_version, get_version, get_status_frames, with Xen's statuses and
// errnos for other domains, limits and bad pointers; and map_grant_ref,
// unmap_grant_ref and copy (mm/grant-map.ts), in batches that continue as
// Xen's do. Transferring grants is not implemented (-ENOSYS).
// Inputs: hostile (pointers, counts, domain ids, versions).

import {
  GnttabCopy, GnttabCopyGnttabCopyPtr, GnttabGetStatusFrames, GnttabGetVersion, GnttabMapGrantRef, GnttabOp, GnttabQuerySize,
  GnttabSetupTable, GnttabSetVersion, GnttabUnmapAndReplace, GnttabUnmapGrantRef, GrantStatus,
} from '../../abi/generated/grant-table.js';
import { DomidSpecial } from '../../abi/generated/xen.js';
import { MAX_GRANT_FRAMES } from '../mm/grant-table.js';
import { copyGrant, mapGrant, replaceGrant, unmapGrant } from '../mm/grant-map.js';
import { errno, type HypercallArgs, type HypercallContext } from './context.js';
import { inOut } from './in-out.js';
import { guestRangeOk } from '../mm/guest-access.js';

/** Whose table a request names: the caller's, another domain's (which needs privilege), or none. */
function whose(ctx: HypercallContext, dom: number): 'self' | 'other' | 'none' {
  if (dom === DomidSpecial.DOMID_SELF || dom === ctx.domid) return 'self';
  return ctx.events.domainExists(dom) ? 'other' : 'none';
}

/** The GNTST_* for a request naming another domain's table, or undefined for the caller's own. */
function domainStatus(ctx: HypercallContext, dom: number): number | undefined {
  const w = whose(ctx, dom);
  return w === 'self' ? undefined : w === 'other' ? GrantStatus.GNTST_permission_denied : GrantStatus.GNTST_bad_domain;
}

/** Writes `mfns` as xen_pfn_t (8 bytes each) to the guest's list; false if the guest cannot take them all. */
function writeFrames(ctx: HypercallContext, list: bigint, mfns: readonly number[]): void {
  const b = new Uint8Array(8 * mfns.length);
  const v = new DataView(b.buffer);
  mfns.forEach((m, i) => v.setBigUint64(8 * i, BigInt(m), true));
  if (b.length) ctx.guest.write(list, b);
}

function setupTable(ctx: HypercallContext, arg: bigint, count: number): bigint {
  if (count !== 1) return errno('XEN_EINVAL');
  inOut(ctx, arg, GnttabSetupTable.SIZE, GnttabSetupTable.over, (op) => {
    op.status = ((): number => {
      if (op.nr_frames > MAX_GRANT_FRAMES) return GrantStatus.GNTST_general_error;
      // The list must be writable up front (-EFAULT from the write below, before anything grows).
      if (op.nr_frames) ctx.guest.write(op.frame_list, new Uint8Array(8 * op.nr_frames));
      const other = domainStatus(ctx, op.dom);
      if (other !== undefined) return other;
      if (!ctx.grants.grow(op.nr_frames)) return GrantStatus.GNTST_general_error;
      writeFrames(ctx, op.frame_list, ctx.grants.frames.slice(0, op.nr_frames));
      return GrantStatus.GNTST_okay;
    })();
  });
  return 0n;
}

function querySize(ctx: HypercallContext, arg: bigint, count: number): bigint {
  if (count !== 1) return errno('XEN_EINVAL');
  inOut(ctx, arg, GnttabQuerySize.SIZE, GnttabQuerySize.over, (op) => {
    const other = domainStatus(ctx, op.dom);
    if (other === undefined) {
      op.nr_frames = ctx.grants.frames.length;
      op.max_nr_frames = MAX_GRANT_FRAMES;
    }
    op.status = other ?? GrantStatus.GNTST_okay;
  });
  return 0n;
}

function setVersion(ctx: HypercallContext, arg: bigint): bigint {
  const r = inOut(ctx, arg, GnttabSetVersion.SIZE, GnttabSetVersion.over, (op) => {
    const res = ctx.grants.setVersion(op.version);
    op.version = ctx.grants.version; // the version in effect goes back to the guest, even on error
    return res;
  });
  const errnos = { busy: 'XEN_EBUSY', invalid: 'XEN_EINVAL', range: 'XEN_ERANGE', nomem: 'XEN_ENOMEM' } as const;
  return r === 'ok' ? 0n : errno(errnos[r]);
}

/** get_version: written back only when answered (another domain's: -EPERM; none: -ESRCH). */
function getVersion(ctx: HypercallContext, arg: bigint): bigint {
  const w = whose(ctx, GnttabGetVersion.over(ctx.guest.read(arg, GnttabGetVersion.SIZE).buffer).dom);
  if (w === 'none') return errno('XEN_ESRCH');
  if (w === 'other') return errno('XEN_EPERM');
  inOut(ctx, arg, GnttabGetVersion.SIZE, GnttabGetVersion.over, (op) => { op.version = ctx.grants.version; });
  return 0n;
}

function getStatusFrames(ctx: HypercallContext, arg: bigint, count: number): bigint {
  if (count !== 1) return errno('XEN_EINVAL');
  inOut(ctx, arg, GnttabGetStatusFrames.SIZE, GnttabGetStatusFrames.over, (op) => {
    op.status = ((): number => {
      const other = domainStatus(ctx, op.dom);
      if (other !== undefined) return other;
      const g = ctx.grants;
      if (g.version < 2 || op.nr_frames > g.statusFrames.length) return GrantStatus.GNTST_general_error;
      writeFrames(ctx, op.frame_list, g.statusFrames.slice(0, op.nr_frames));
      return GrantStatus.GNTST_okay;
    })();
  });
  return 0n;
}

/** The caller as a grant operation sees it: its domain and its current root (read when a request needs it). */
const mapper = (ctx: HypercallContext) => ({ domid: ctx.domid, cr3: ctx.mm.cr3 });

/** Requests of a batch op handled per invocation before a continuation (the rest re-issued, as Xen's). */
const GRANT_CHUNK = 256;

/**
 * Runs `one` on each of `count` requests (structs of `type`, each read,
 * worked on and written back as inOut does) from `uop`, continuing past
 * GRANT_CHUNK. As Xen (guest_handle_okay), an array that is not all in the
 * guest's range is -EFAULT before any request is done.
 */
function batch<T extends { view: DataView }>(ctx: HypercallContext, cmd: bigint, uop: bigint, count: number,
  type: { SIZE: number; over(b: ArrayBufferLike): T }, one: (op: T) => void): bigint {
  const size = type.SIZE;
  if (count && !guestRangeOk(uop, count * size)) return errno('XEN_EFAULT');
  const n = Math.min(count, GRANT_CHUNK);
  for (let i = 0; i < n; i++) inOut(ctx, uop + BigInt(i * size), size, (b) => type.over(b), one);
  if (n < count) ctx.continueWith([cmd, uop + BigInt(n * size), BigInt(count - n), 0n, 0n]);
  return 0n;
}

/** grant_table_op(cmd, uop, count). */
export function grantTableOp(ctx: HypercallContext, [cmd, uop, countArg]: HypercallArgs): bigint {
  // As Xen: a negative count, and bits above the command (GNTTABOP_CMD_MASK) but for cache_flush, are -EINVAL.
  const count = Number(countArg & 0xffffffffn);
  if (count >= 0x80000000) return errno('XEN_EINVAL');
  const op = Number(cmd & 0xfffn);
  if (cmd & 0xffffffffn & ~0xfffn && op !== GnttabOp.GNTTABOP_cache_flush) return errno('XEN_EINVAL');
  switch (op) {
    case GnttabOp.GNTTABOP_setup_table:
      return setupTable(ctx, uop, count);
    case GnttabOp.GNTTABOP_query_size:
      return querySize(ctx, uop, count);
    case GnttabOp.GNTTABOP_set_version:
      return setVersion(ctx, uop);
    case GnttabOp.GNTTABOP_get_version:
      return getVersion(ctx, uop);
    case GnttabOp.GNTTABOP_get_status_frames:
      return getStatusFrames(ctx, uop, count);
    case GnttabOp.GNTTABOP_map_grant_ref:
      return batch(ctx, cmd, uop, count, GnttabMapGrantRef, (op) => {
        const r = mapGrant(ctx.grantWorld, mapper(ctx), { hostAddr: op.host_addr, flags: op.flags, ref: op.ref, dom: op.dom });
        op.status = r.status;
        if (r.handle !== undefined) op.handle = r.handle;
        if (r.devBusAddr !== undefined) op.dev_bus_addr = r.devBusAddr;
      });
    case GnttabOp.GNTTABOP_unmap_grant_ref:
      return batch(ctx, cmd, uop, count, GnttabUnmapGrantRef, (op) => {
        op.status = unmapGrant(ctx.grantWorld, mapper(ctx), { hostAddr: op.host_addr, devBusAddr: op.dev_bus_addr, handle: op.handle });
      });
    case GnttabOp.GNTTABOP_copy:
      return batch(ctx, cmd, uop, count, GnttabCopy, (op) => {
        const v = op.view, O = GnttabCopy.OFFSETS, P = GnttabCopyGnttabCopyPtr.OFFSETS;
        const side = (base: number) => ({ ref: v.getBigUint64(base + P.u, true), domid: v.getUint16(base + P.domid, true), offset: v.getUint16(base + P.offset, true) });
        v.setInt16(O.status, copyGrant(ctx.grantWorld, mapper(ctx), {
          source: side(O.source), dest: side(O.dest), len: v.getUint16(O.len, true), flags: v.getUint16(O.flags, true),
        }), true);
      });
    case GnttabOp.GNTTABOP_unmap_and_replace:
      return batch(ctx, cmd, uop, count, GnttabUnmapAndReplace, (op) => {
        op.status = replaceGrant(ctx.grantWorld, mapper(ctx), { hostAddr: op.host_addr, newAddr: op.new_addr, handle: op.handle });
      });
    default:
      // transfer, cache_flush, swap_grant_ref: not yet; dump_table is gone
      // from Xen, which answers -ENOSYS too.
      return errno('XEN_ENOSYS');
  }
}
