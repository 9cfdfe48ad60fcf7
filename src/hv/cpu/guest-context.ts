// VCPUOP_initialise: a down vCPU's whole state from a vcpu_guest_context,
// as Xen's arch_set_info_guest sets up a 64-bit PV vCPU that was never
// initialised: registers, virtual IDT, callbacks, kernel stack, LDT, GDT,
// control and debug registers, segment bases and page-table roots. Every
// check comes first, in Xen's order and with its errno; then the frames
// the vCPU will hold (GDT pages, kernel and user L4) are taken, and a
// failure there lets go of what was taken; only then is anything written,
// so a refused call leaves the vCPU exactly as it was (Xen may leave part
// of it written, which a guest cannot see: the vCPU has not run). Inputs:
// the guest's context (hostile).

import { CallbackType } from '../../abi/generated/callback.js';
import { VcpuGuestContextFlags as Vgcf, type VcpuGuestContext } from '../../abi/generated/arch-x86.js';
import { errno } from '../hypercalls/context.js';
import { guestRangeOk, isCanonical } from '../mm/guest-access.js';
import { PageType } from '../mm/frames.js';
import { PageTypeError, type PageTypes } from '../mm/page-types.js';
import { MSR } from '../mm/xen-space.js';
import { FIRST_RESERVED_GDT_ENTRY, MAX_LDT_ENTRIES } from '../mm/descriptors.js';
import { RFLAGS } from './rflags.js';
import { guestRflags } from './virtual-traps.js';
import { fixupGuestCr4 } from './cr4.js';
import type { PvVcpu } from './vcpu.js';

const CR0_TS = 8n;
const IOPL_SHIFT = 12n;

/** Xen's __addr_ok: an address below the hypervisor's hole or above its area. */
const addrOk = (a: bigint): boolean => guestRangeOk(a, 1);

/**
 * Sets vCPU `v` of domain `domid` up from `c`; 0 or Xen's errno. The vCPU
 * must not be initialised (the caller answers -EEXIST). It stays down: the
 * caller brings it up for VGCF_online, or VCPUOP_up does.
 */
export function initialiseVcpu(v: PvVcpu, c: VcpuGuestContext, pt: PageTypes, domid: number): bigint {
  const EINVAL = errno('XEN_EINVAL');
  const flags = c.flags;
  const r = c.user_regs;
  // Debug registers: DR6 and DR7 fit in 32 bits, DR0-DR3 are the guest's addresses.
  if (c.debugreg_at(6) >> 32n || c.debugreg_at(7) >> 32n) return EINVAL;
  for (let i = 0; i < 4; i++) if (!addrOk(c.debugreg_at(i))) return EINVAL;
  const ldtEnts = c.ldt_ents;
  const canonical = [r.rip, r.rsp, c.kernel_sp, c.fs_base, c.gs_base_kernel, c.gs_base_user,
    c.event_callback_eip, c.syscall_callback_eip, c.failsafe_callback_eip, ...(ldtEnts ? [c.ldt_base] : [])];
  if (!canonical.every(isCanonical)) return EINVAL;
  for (let i = 0; i < 256; i++) if (!isCanonical(c.trap_ctxt_at(i).address)) return EINVAL;
  if (!addrOk(c.ldt_base) || c.ldt_base & 0xfffn || ldtEnts > BigInt(MAX_LDT_ENTRIES)) return EINVAL;
  if (c.gdt_ents > BigInt(FIRST_RESERVED_GDT_ENTRY)) return EINVAL; // also bounds the frames read below to 14
  const inKernel = (flags & BigInt(Vgcf.VGCF_in_kernel)) !== 0n;
  if (!inKernel && c.ctrlreg_at(1) === 0n) return EINVAL; // user mode needs user page tables
  // A saved FPU image: the engines cannot load one (refused rather than dropped).
  if (flags & BigInt(Vgcf.VGCF_i387_valid)) return errno('XEN_EOPNOTSUPP');

  // The frames the vCPU holds: its GDT's pages, then its kernel and user L4 (type references, PT-11).
  const gdtEnts = Number(c.gdt_ents);
  const gdtFrames = Array.from({ length: Math.ceil(gdtEnts / 512) }, (_, i) => c.gdt_frames_at(i));
  const gdt = v.descriptors.setGdt(gdtFrames, gdtEnts);
  if (gdt) return gdt;
  const roots: number[] = [];
  for (const cr of [c.ctrlreg_at(3), c.ctrlreg_at(1)]) {
    const mfn = cr >> 12n;
    if (cr === 0n && roots.length) break; // no user root
    const rc = takeRoot(pt, domid, mfn);
    if (rc) {
      for (const m of roots) pt.putPageAndType(m);
      v.descriptors.release();
      return rc;
    }
    roots.push(Number(mfn));
  }

  // Nothing can fail from here.
  const e = v.engine;
  const regs = e.regs;
  for (const k of ['rax', 'rbx', 'rcx', 'rdx', 'rsi', 'rdi', 'rbp', 'r8', 'r9', 'r10', 'r11', 'r12', 'r13', 'r14', 'r15', 'rip', 'rsp'] as const) regs[k] = r[k];
  // The IOPL field is the virtual IOPL; IF is always on (events are masked in vcpu_info instead).
  v.traps.setIopl(Number((r.rflags & RFLAGS.IOPL) >> IOPL_SHIFT));
  regs.rflags = guestRflags(r.rflags);
  v.traps.clearTraps();
  for (let i = 0; i < 256; i++) {
    const t = c.trap_ctxt_at(i);
    if (t.address) v.traps.setTrap(i, t.flags, t.cs | 3, t.address);
  }
  v.ldt = { base: ldtEnts ? c.ldt_base : 0n, entries: Number(ldtEnts) };
  v.traps.setKernelStack(c.kernel_sp);
  v.traps.setTaskSwitched((c.ctrlreg_at(0) & CR0_TS) !== 0n);
  v.traps.cr4 = fixupGuestCr4(c.ctrlreg_at(4), v.cpuid.fsgsbase);
  // As Xen: each debug register as set_debugreg would set it, a value it refuses left at reset.
  for (const i of [0, 1, 2, 3, 6, 7]) v.debug.set(i, c.debugreg_at(i));
  const masks = (bit: number): boolean => (flags & BigInt(bit)) !== 0n;
  v.traps.setCallback(CallbackType.CALLBACKTYPE_event, { address: c.event_callback_eip, maskEvents: true });
  v.traps.setCallback(CallbackType.CALLBACKTYPE_failsafe, { address: c.failsafe_callback_eip, maskEvents: masks(Vgcf.VGCF_failsafe_disables_events) });
  v.traps.setCallback(CallbackType.CALLBACKTYPE_syscall, { address: c.syscall_callback_eip, maskEvents: masks(Vgcf.VGCF_syscall_disables_events) });
  e.setMsrs([[MSR.FS_BASE, c.fs_base], [MSR.GS_BASE, c.gs_base_kernel], [MSR.KERNEL_GS_BASE, c.gs_base_user]]);
  v.space.setCr3(roots[0]!);
  if (roots[1] !== undefined) v.space.setUserCr3(roots[1]);
  if (!inKernel) v.space.toggle(); // starts in guest user mode: the user tables, the GS bases swapped
  v.initialised = true; // still down: VCPUOP_up, or VGCF_online, brings it up (the domain's vcpu_op)
  return 0n;
}

/** Takes the type reference a vCPU's root holds on `mfn` (an L4 of the domain); 0 or Xen's errno. */
function takeRoot(pt: PageTypes, domid: number, mfn: bigint): bigint {
  if (mfn >= BigInt(pt.ft.count) || pt.ft.owner[Number(mfn)] !== domid) return errno('XEN_EINVAL');
  try {
    pt.getPageAndType(Number(mfn), PageType.l4, domid);
  } catch (e) {
    if (e instanceof PageTypeError) return -BigInt(e.errno);
    throw e;
  }
  return 0n;
}
