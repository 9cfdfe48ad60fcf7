// The hypercalls a domain needs to boot and talk: console_io, xen_version,
// sched_op (yield, shutdown), vm_assist, memory_op (reservation and layout
// queries) and paravane's pvbench_op. Semantics follow Xen as a domU sees it
// (Xen's public headers; docs/abi.md); every output buffer is fully written, so no
// hypervisor memory leaks into the guest (XSA-122).

import { ConsoleIo, VmAssist } from '../../abi/generated/xen.js';
import { VirtLayout } from '../../abi/generated/arch-x86.js';
import { VersionOp, XenCapabilitiesInfo, XenChangesetInfo, XenCompileInfo, XenExtraversion, XenFeatureInfo, XenPlatformParameters } from '../../abi/generated/version.js';
import { SchedOp, SchedShutdown } from '../../abi/generated/sched.js';
import { schedBlock, schedPoll } from './vcpu-op.js';
import { MemoryOp, XenMachphysMapping } from '../../abi/generated/memory.js';
import { PvbenchCmd, PvbenchEcho } from '../../abi/generated/paravane-pvbench.js';
import { DomidSpecial } from '../../abi/generated/xen.js';
import { errno, type HypercallArgs, type HypercallContext } from './context.js';
import { Feature } from '../../abi/generated/features.js';

/** The Xen version paravane reports: the interface its ABI follows (4.17). */
export const XEN_MAJOR = 4;
export const XEN_MINOR = 17;
/** Largest console_io write accepted in one call. */
const CONSOLE_MAX = 64 * 1024;

/** Serialises a generated struct view into bytes, for copying to the guest. */
function structBytes<T>(Cls: { SIZE: number; over(b: ArrayBufferLike, o?: number): T }, fill: (s: T) => void): Uint8Array {
  const buf = new ArrayBuffer(Cls.SIZE);
  fill(Cls.over(buf));
  return new Uint8Array(buf);
}

export function consoleIo(ctx: HypercallContext, [cmd, count, buf]: HypercallArgs): bigint {
  switch (Number(cmd)) {
    case ConsoleIo.CONSOLEIO_write: {
      if (count > BigInt(CONSOLE_MAX)) return errno('XEN_EINVAL');
      ctx.consoleWrite(ctx.guest.read(buf, Number(count)));
      return 0n;
    }
    case ConsoleIo.CONSOLEIO_read: {
      // Host input not taken by a console ring; returns the bytes read.
      if (count > BigInt(CONSOLE_MAX)) return errno('XEN_EINVAL');
      const bytes = ctx.consoleRead(Number(count));
      if (bytes.length) ctx.guest.write(buf, bytes);
      return BigInt(bytes.length);
    }
    default:
      return errno('XEN_EINVAL');
  }
}

export function xenVersion(ctx: HypercallContext, [cmd, arg]: HypercallArgs): bigint {
  const g = ctx.guest;
  switch (Number(cmd)) {
    case VersionOp.XENVER_version:
      return BigInt((XEN_MAJOR << 16) | XEN_MINOR);
    case VersionOp.XENVER_extraversion:
      g.write(arg, structBytes(XenExtraversion, (s) => { s.extraversion = '-paravane'; }));
      return 0n;
    case VersionOp.XENVER_compile_info:
      g.write(arg, structBytes(XenCompileInfo, (s) => {
        s.compiler = `paravane (Node.js ${process.versions.node})`;
        s.compile_by = 'paravane';
        s.compile_domain = 'paravane';
        s.compile_date = 'n/a';
      }));
      return 0n;
    case VersionOp.XENVER_capabilities:
      g.write(arg, structBytes(XenCapabilitiesInfo, (s) => { s.capabilities = 'xen-3.0-x86_64'; }));
      return 0n;
    case VersionOp.XENVER_changeset:
      g.write(arg, structBytes(XenChangesetInfo, (s) => { s.changeset = 'paravane'; }));
      return 0n;
    case VersionOp.XENVER_platform_parameters:
      g.write(arg, structBytes(XenPlatformParameters, (s) => { s.virt_start = VirtLayout.HYPERVISOR_VIRT_START; }));
      return 0n;
    case VersionOp.XENVER_get_features: {
      const idx = g.readU32(arg);
      if (idx !== 0) return errno('XEN_EINVAL');
      g.write(arg, structBytes(XenFeatureInfo, (s) => { s.submap_idx = 0; s.submap = PV_FEATURES; }));
      return 0n;
    }
    case VersionOp.XENVER_pagesize:
      return arg === 0n ? 4096n : errno('XEN_EINVAL');
    case VersionOp.XENVER_guest_handle:
      g.write(arg, ctx.handle);
      return 0n;
    default:
      return errno('XEN_ENOSYS');
  }
}

/**
 * The XENFEAT_* bits offered, those of Xen's for a 64-bit PV domU that
 * paravane implements: MMU_PT_UPDATE_PRESERVE_AD, MMUEXT_COPY_PAGE and
 * CLEAR_PAGE (highmem_assist), and a grant map's guest-available bits in
 * its entry. (Xen also offers vNUMA and the physical-address runstate and
 * time areas; those are not implemented.) Linux stops in
 * xen_setup_features without the first and the third.
 */
const PV_FEATURES = (1 << Feature.XENFEAT_mmu_pt_update_preserve_ad) | (1 << Feature.XENFEAT_highmem_assist) |
  (1 << Feature.XENFEAT_gnttab_map_avail_bits);

export function schedOp(ctx: HypercallContext, [cmd, arg]: HypercallArgs): bigint {
  switch (Number(cmd)) {
    case SchedOp.SCHEDOP_yield:
      ctx.sched.yieldCpu();
      return 0n;
    case SchedOp.SCHEDOP_block:
      return schedBlock(ctx);
    case SchedOp.SCHEDOP_poll:
      return schedPoll(ctx, arg);
    case SchedOp.SCHEDOP_shutdown: {
      const s = SchedShutdown.over(ctx.guest.read(arg, SchedShutdown.SIZE).buffer);
      ctx.shutdown(s.reason);
      return 0n;
    }
    default:
      return errno('XEN_ENOSYS');
  }
}

/** Assist types valid for a 64-bit PV guest. */
const VALID_ASSISTS = new Set<number>([
  VmAssist.VMASST_TYPE_4gb_segments, VmAssist.VMASST_TYPE_4gb_segments_notify, VmAssist.VMASST_TYPE_writable_pagetables,
  VmAssist.VMASST_TYPE_pae_extended_cr3, VmAssist.VMASST_TYPE_architectural_iopl, VmAssist.VMASST_TYPE_runstate_update_flag,
  VmAssist.VMASST_TYPE_m2p_strict,
]);

export function vmAssist(ctx: HypercallContext, [cmd, type]: HypercallArgs): bigint {
  if (cmd !== BigInt(VmAssist.VMASST_CMD_enable) && cmd !== BigInt(VmAssist.VMASST_CMD_disable)) return errno('XEN_ENOSYS');
  if (type > 63n || !VALID_ASSISTS.has(Number(type))) return errno('XEN_EINVAL');
  const bit = 1n << type;
  ctx.vmAssist = cmd === BigInt(VmAssist.VMASST_CMD_enable) ? ctx.vmAssist | bit : ctx.vmAssist & ~bit;
  return 0n;
}

export function memoryOp(ctx: HypercallContext, [cmd, arg]: HypercallArgs): bigint {
  const op = Number(cmd & 0x3fn); // bits 6 and up carry a continuation's start extent
  switch (op) {
    case MemoryOp.XENMEM_current_reservation:
    case MemoryOp.XENMEM_maximum_reservation: {
      const dom = ctx.guest.read(arg, 2);
      const domid = dom[0]! | (dom[1]! << 8);
      if (domid !== DomidSpecial.DOMID_SELF && domid !== ctx.domid) return errno('XEN_EPERM');
      return BigInt(op === MemoryOp.XENMEM_current_reservation ? ctx.nrPages : ctx.maxPages);
    }
    case MemoryOp.XENMEM_machphys_mapping:
      ctx.guest.write(arg, structBytes(XenMachphysMapping, (s) => {
        // Xen's address, or where this host lets the guest read it (xen-space.ts).
        s.v_start = ctx.m2pVirt;
        s.v_end = ctx.m2pVirt + (VirtLayout.MACH2PHYS_VIRT_END - VirtLayout.MACH2PHYS_VIRT_START);
        s.max_mfn = BigInt(VirtLayout.MACH2PHYS_NR_ENTRIES) - 1n;
      }));
      return 0n;
    case MemoryOp.XENMEM_memory_map:
      return errno('XEN_ENOSYS'); // as Xen answers a domU whose toolstack set no map
    default:
      return errno('XEN_ENOSYS');
  }
}

export function pvbenchOp(ctx: HypercallContext, [cmd, arg]: HypercallArgs): bigint {
  switch (Number(cmd)) {
    case PvbenchCmd.PVBENCHOP_nop:
      return 0n;
    case PvbenchCmd.PVBENCHOP_echo: {
      const value = ctx.guest.readU64(arg + BigInt(PvbenchEcho.OFFSETS.value));
      ctx.guest.writeU64(arg + BigInt(PvbenchEcho.OFFSETS.result), value + 1n);
      return 0n;
    }
    case PvbenchCmd.PVBENCHOP_ret:
      return BigInt.asIntN(64, arg);
    default:
      return errno('XEN_ENOSYS');
  }
}
