// Scheduling and time hypercalls of a vCPU: set_timer_op, vcpu_op (timers,
// is_up, register_vcpu_info) and the blocking sched_op commands (block,
// poll), as Xen answers a 64-bit PV guest (Xen's public headers; docs/abi.md).
// Inputs: hostile (vCPU ids, pointers, ports, times).

import { VcpuOp, VcpuRegisterVcpuInfo, VcpuSetPeriodicTimer, VcpuSetSingleshotTimer } from '../../abi/generated/vcpu.js';
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

/** vcpu_op(cmd, vcpuid, arg). */
export function vcpuOp(ctx: HypercallContext, [cmdArg, vcpuArg, arg]: HypercallArgs): bigint {
  const s = ctx.sched;
  const cmd = Number(BigInt.asIntN(32, cmdArg));
  const vcpu = Number(BigInt.asUintN(32, vcpuArg));
  if (vcpu >= s.vcpus) return errno('XEN_ENOENT');
  // The timers of another vCPU cannot be set (Xen: -EINVAL); there is one vCPU for now.
  const own = vcpu === s.vcpu;
  switch (cmd) {
    case VcpuOp.VCPUOP_is_up:
      return 1n; // every existing vCPU is up (no VCPUOP_down yet)
    case VcpuOp.VCPUOP_set_periodic_timer: {
      const p = VcpuSetPeriodicTimer.over(ctx.guest.read(arg, VcpuSetPeriodicTimer.SIZE).buffer).period_ns;
      if (p < MIN_PERIOD || p > (1n << 62n)) return errno('XEN_EINVAL');
      if (!own) return errno('XEN_EINVAL');
      s.timers.setPeriodic(p, s.now());
      return 0n;
    }
    case VcpuOp.VCPUOP_stop_periodic_timer:
      if (!own) return errno('XEN_EINVAL');
      s.timers.setPeriodic(0n, s.now());
      return 0n;
    case VcpuOp.VCPUOP_set_singleshot_timer: {
      if (!own) return errno('XEN_EINVAL');
      const t = VcpuSetSingleshotTimer.over(ctx.guest.read(arg, VcpuSetSingleshotTimer.SIZE).buffer);
      // As current Xen: VCPU_SSHOTTMR_future is ignored; a past timeout fires at once.
      s.timers.setSingle(t.timeout_abs_ns === 0n ? 1n : t.timeout_abs_ns);
      return 0n;
    }
    case VcpuOp.VCPUOP_stop_singleshot_timer:
      if (!own) return errno('XEN_EINVAL');
      s.timers.setSingle(0n);
      return 0n;
    case VcpuOp.VCPUOP_register_vcpu_info: {
      const r = VcpuRegisterVcpuInfo.over(ctx.guest.read(arg, VcpuRegisterVcpuInfo.SIZE).buffer);
      if (!own) return errno('XEN_EINVAL');
      return s.registerVcpuInfo(r.mfn, r.offset);
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
