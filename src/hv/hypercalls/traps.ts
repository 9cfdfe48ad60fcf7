// The trap hypercalls: set_trap_table, the callbacks (set_callbacks and
// callback_op), stack_switch, fpu_taskswitch, set_segment_base and iret,
// as Xen answers a 64-bit PV guest (Xen's public headers; docs/abi.md).
// They only record per-vCPU state (src/hv/cpu/vcpu.ts uses it to bounce
// exceptions) or, for iret, ask the vCPU to resume a frame from the guest's
// stack. Inputs: hostile (pointers, vectors, addresses, selectors).

import { TrapInfo } from '../../abi/generated/arch-x86.js';
import { CallbackFlags, CallbackOp, CallbackRegister, CallbackType, CallbackUnregister } from '../../abi/generated/callback.js';
import { guestRangeOk } from '../mm/guest-access.js';
import { errno, type HypercallArgs, type HypercallContext, type CpuContext } from './context.js';

/** Entries of a trap table read per invocation before a continuation. */
const TRAP_CHUNK = 256;
/** Xen's fixup_guest_code_selector for a 64-bit guest: RPL 0 becomes 3 (the kernel runs in ring 3). */
const guestSelector = (sel: number): number => ((sel & 3) === 0 ? sel | 3 : sel);

/**
 * set_trap_table(traps): entries until one with address 0. A NULL list
 * clears the whole table. Long lists continue, as Xen's do.
 */
export function setTrapTable(ctx: HypercallContext, [list]: HypercallArgs): bigint {
  const cpu = ctx.cpu;
  if (list === 0n) {
    cpu.clearTraps();
    return 0n;
  }
  for (let i = 0; i < TRAP_CHUNK; i++) {
    const at = list + BigInt(i * TrapInfo.SIZE);
    const t = TrapInfo.over(ctx.guest.read(at, TrapInfo.SIZE).buffer);
    if (t.address === 0n) return 0n;
    if (!guestRangeOk(t.address, 1)) return errno('XEN_EINVAL');
    cpu.setTrap(t.vector, t.flags, guestSelector(t.cs), t.address);
  }
  ctx.continueWith([list + BigInt(TRAP_CHUNK * TrapInfo.SIZE), 0n, 0n, 0n, 0n]);
  return 0n;
}

/** Registers one callback: a non-canonical address is -EINVAL, an unknown type -ENOSYS. */
function register(cpu: CpuContext, type: number, address: bigint, flags: number): bigint {
  switch (type) {
    case CallbackType.CALLBACKTYPE_event:
    case CallbackType.CALLBACKTYPE_failsafe:
    case CallbackType.CALLBACKTYPE_syscall:
    case CallbackType.CALLBACKTYPE_syscall32:
    case CallbackType.CALLBACKTYPE_sysenter:
    case CallbackType.CALLBACKTYPE_nmi:
      if (!guestRangeOk(address, 1)) return errno('XEN_EINVAL');
      cpu.setCallback(type, { address, maskEvents: (flags & CallbackFlags.CALLBACKF_mask_events) !== 0 });
      return 0n;
    default:
      return errno('XEN_ENOSYS');
  }
}

/** set_callbacks(event, failsafe, syscall): the 64-bit form (three addresses). */
export function setCallbacks(ctx: HypercallContext, [event, failsafe, syscall]: HypercallArgs): bigint {
  const cpu = ctx.cpu;
  for (const a of [event, failsafe, syscall]) if (!guestRangeOk(a, 1)) return errno('XEN_EINVAL');
  // As Xen: the event callback always masks events; failsafe and syscall do not.
  cpu.setCallback(CallbackType.CALLBACKTYPE_event, { address: event, maskEvents: true });
  cpu.setCallback(CallbackType.CALLBACKTYPE_failsafe, { address: failsafe, maskEvents: false });
  cpu.setCallback(CallbackType.CALLBACKTYPE_syscall, { address: syscall, maskEvents: false });
  return 0n;
}

/** callback_op(cmd, arg). */
export function callbackOp(ctx: HypercallContext, [cmd, arg]: HypercallArgs): bigint {
  const cpu = ctx.cpu;
  if (cmd === BigInt(CallbackOp.CALLBACKOP_register)) {
    const r = CallbackRegister.over(ctx.guest.read(arg, CallbackRegister.SIZE).buffer);
    return register(cpu, r.type, r.address, r.flags);
  }
  if (cmd === BigInt(CallbackOp.CALLBACKOP_unregister)) {
    const u = CallbackUnregister.over(ctx.guest.read(arg, CallbackUnregister.SIZE).buffer);
    if (u.type === CallbackType.CALLBACKTYPE_nmi) {
      cpu.setCallback(u.type, { address: 0n, maskEvents: false });
      return 0n;
    }
    const known = (Object.values(CallbackType) as number[]).includes(u.type) && u.type !== CallbackType.CALLBACKTYPE_sysenter_deprecated;
    return known ? errno('XEN_EINVAL') : errno('XEN_ENOSYS');
  }
  return errno('XEN_ENOSYS');
}

/** stack_switch(ss, esp): the kernel stack for events that interrupt guest user mode. */
export function stackSwitch(ctx: HypercallContext, [, sp]: HypercallArgs): bigint {
  const cpu = ctx.cpu;
  cpu.setKernelStack(sp);
  return 0n;
}

/** fpu_taskswitch(set): sets or clears the virtual CR0.TS. */
export function fpuTaskswitch(ctx: HypercallContext, [set]: HypercallArgs): bigint {
  ctx.cpu.setTaskSwitched(BigInt.asIntN(32, set) !== 0n);
  return 0n;
}

/** set_segment_base(which, base). */
export function setSegmentBase(ctx: HypercallContext, [which, base]: HypercallArgs): bigint {
  return ctx.cpu.setSegmentBase(Number(BigInt.asUintN(32, which)), base);
}

/**
 * iret(): never returns to its caller. The vCPU resumes the restored frame;
 * a frame that cannot be read or used crashes the domain, as on Xen.
 */
export function iret(ctx: HypercallContext): bigint {
  const reason = ctx.cpu.iret();
  if (reason !== undefined) ctx.crash(`iret hypercall: ${reason}`);
  return 0n;
}
