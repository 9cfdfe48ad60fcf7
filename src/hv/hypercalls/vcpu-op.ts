// Scheduling and time hypercalls of a vCPU: set_timer_op, vcpu_op (bringing
// vCPUs up and down, timers, register_vcpu_info) and the blocking sched_op commands (block,
// poll), as Xen answers a 64-bit PV guest (Xen's public headers; docs/abi.md).
// Inputs: hostile (vCPU ids, pointers, ports, times).

import { VcpuOp, VcpuRegisterRunstateMemoryArea, VcpuRegisterTimeMemoryArea, VcpuRegisterVcpuInfo, VcpuSetPeriodicTimer, VcpuSetSingleshotTimer } from '../../abi/generated/vcpu.js';
import { VcpuGuestContext } from '../../abi/generated/arch-x86.js';
import { SchedPoll } from '../../abi/generated/sched.js';
import { errno, type HypercallArgs, type HypercallContext } from './context.js';

/** The longest port list SCHEDOP_poll takes. */
const MAX_POLL_PORTS = 128;
/** VCPUOP_set_periodic_timer's shortest period: 1 ms. */
const MIN_PERIOD = 1_000_000n;

/** set_timer_op(timeout): a single-shot timer at system time `timeout` (0 cancels); a past time fires at once. */
export function setTimerOp(ctx: HypercallContext, [timeout]: HypercallArgs): bigint {
  const s = ctx.sched;
  s.timers.setSingle(BigInt.asIntN(64, timeout) <= 0n ? 0n : timeout);
  return 0n;
}

/**
 * vcpu_op(cmd, vcpuid, arg), as Xen's do_vcpu_op for a 64-bit PV guest: a
 * vCPU the domain does not have is -ENOENT whatever the command; the
 * commands then act on that vCPU, any of the domain's, except the
 * single-shot timer's, which only the calling vCPU may set (-EINVAL).
 */
export function vcpuOp(ctx: HypercallContext, [cmdArg, vcpuArg, arg]: HypercallArgs): bigint {
  const vcpus = ctx.vcpus;
  const cmd = Number(BigInt.asIntN(32, cmdArg));
  const vcpu = Number(BigInt.asUintN(32, vcpuArg));
  if (vcpu >= vcpus.count) return errno('XEN_ENOENT');
  const own = vcpu === ctx.sched.vcpu;
  switch (cmd) {
    case VcpuOp.VCPUOP_initialise:
      return vcpus.initialise(vcpu, VcpuGuestContext.over(ctx.guest.read(arg, VcpuGuestContext.SIZE).buffer));
    case VcpuOp.VCPUOP_up:
      return vcpus.up(vcpu);
    case VcpuOp.VCPUOP_down:
      return vcpus.down(vcpu);
    case VcpuOp.VCPUOP_is_up:
      return vcpus.isUp(vcpu) ? 1n : 0n;
    case VcpuOp.VCPUOP_set_periodic_timer: {
      const p = VcpuSetPeriodicTimer.over(ctx.guest.read(arg, VcpuSetPeriodicTimer.SIZE).buffer).period_ns;
      if (p < MIN_PERIOD || p > (1n << 62n) - 1n) return errno('XEN_EINVAL');
      const s = vcpus.sched(vcpu);
      s.timers.setPeriodic(p, s.now());
      return 0n;
    }
    case VcpuOp.VCPUOP_stop_periodic_timer: {
      const s = vcpus.sched(vcpu);
      s.timers.setPeriodic(0n, s.now());
      return 0n;
    }
    case VcpuOp.VCPUOP_set_singleshot_timer: {
      if (!own) return errno('XEN_EINVAL');
      const t = VcpuSetSingleshotTimer.over(ctx.guest.read(arg, VcpuSetSingleshotTimer.SIZE).buffer);
      // As current Xen: VCPU_SSHOTTMR_future is ignored; a past timeout fires at once.
      ctx.sched.timers.setSingle(t.timeout_abs_ns === 0n ? 1n : t.timeout_abs_ns);
      return 0n;
    }
    case VcpuOp.VCPUOP_stop_singleshot_timer:
      if (!own) return errno('XEN_EINVAL');
      ctx.sched.timers.setSingle(0n);
      return 0n;
    case VcpuOp.VCPUOP_get_runstate_info:
      ctx.guest.write(arg, vcpus.runstate(vcpu).snapshot());
      return 0n;
    case VcpuOp.VCPUOP_register_runstate_memory_area: {
      // A guest virtual address, as for every 64-bit PV guest; 0 lets the area go.
      const va = VcpuRegisterRunstateMemoryArea.over(ctx.guest.read(arg, VcpuRegisterRunstateMemoryArea.SIZE).buffer).addr.v;
      return vcpus.runstate(vcpu).register(va, ctx.guest) ? 0n : errno('XEN_EFAULT');
    }
    case VcpuOp.VCPUOP_register_vcpu_time_memory_area: {
      const va = VcpuRegisterTimeMemoryArea.over(ctx.guest.read(arg, VcpuRegisterTimeMemoryArea.SIZE).buffer).addr.v;
      return vcpus.runstate(vcpu).registerTime(va, ctx.guest) ? 0n : errno('XEN_EFAULT');
    }
    case VcpuOp.VCPUOP_register_vcpu_info: {
      // Any of the domain's vCPUs: a guest places every vCPU's before bringing the others up (Linux does, from vCPU 0).
      const r = VcpuRegisterVcpuInfo.over(ctx.guest.read(arg, VcpuRegisterVcpuInfo.SIZE).buffer);
      return vcpus.sched(vcpu).registerVcpuInfo(r.mfn, r.offset);
    }
    default:
      return errno('XEN_ENOSYS');
  }
}

/** SCHEDOP_block and SCHEDOP_poll (the rest of sched_op is in basic.ts). */
export function schedBlock(ctx: HypercallContext): bigint {
  ctx.sched.block();
  return 0n;
}

/** Where schedPoll copies its argument and port list (one core thread: no allocation per call). */
const pollArg = SchedPoll.over(new ArrayBuffer(SchedPoll.SIZE));
const pollArgBytes = new Uint8Array(pollArg.view.buffer);
const pollPorts = new Uint32Array(MAX_POLL_PORTS);
const pollPortBytes = new Uint8Array(pollPorts.buffer);

export function schedPoll(ctx: HypercallContext, arg: bigint): bigint {
  const s = ctx.sched;
  ctx.guest.readInto(arg, SchedPoll.SIZE, pollArgBytes);
  const n = pollArg.nr_ports;
  if (n > MAX_POLL_PORTS) return errno('XEN_EINVAL');
  if (n) ctx.guest.readInto(pollArg.ports, n * 4, pollPortBytes);
  const ports = Array.from(pollPorts.subarray(0, n));
  // Xen refuses ports past the valid range; a closed port below it is accepted.
  if (ports.some((port) => !ctx.events.inValidRange(port))) return errno('XEN_EINVAL');
  s.poll(ports, pollArg.timeout);
  return 0n;
}
