// event_channel_op (hypercall 32), Xen's 2-level event channels for an
// unprivileged domain: alloc_unbound, bind_interdomain, bind_virq,
// bind_ipi, close, send, status, unmask, bind_vcpu. bind_pirq needs I/O
// privilege (-EPERM); the FIFO ABI is not offered (init_control checks its
// arguments as Xen does, then -ENOSYS; expand_array -EOPNOTSUPP;
// set_priority and reset -ENOSYS), so guests stay on the 2-level ABI. The work is
// in src/hv/events/channels.ts. Inputs: hostile (pointers, ports, domain ids).

import {
  EventChannelOp, EvtchnAllocUnbound, EvtchnBindInterdomain, EvtchnBindIpi, EvtchnBindPirq, EvtchnBindVcpu, EvtchnBindVirq,
  EvtchnClose, EvtchnExpandArray, EvtchnInitControl, EvtchnSend, EvtchnStatus, EvtchnUnmask,
} from '../../abi/generated/event-channel.js';
import { EventError, resolveDomid } from '../events/channels.js';
import { errno, type HypercallArgs, type HypercallContext } from './context.js';
import { inOut } from './in-out.js';
import { PageType } from '../mm/frames.js';

/** Bytes of a FIFO control block (ready, a reserved word, 16 queue heads): it must fit in its page. */
const FIFO_CONTROL_BLOCK = 72;

/**
 * EVTCHNOP_init_control: the FIFO ABI is not offered, so a guest stays on
 * the 2-level ABI (Linux falls back when this fails). Its arguments are
 * checked first, in Xen's order and with Xen's answers (a vCPU that does
 * not exist: -ENOENT; a control block crossing its page or misaligned, a
 * frame the domain cannot give as a writable page: -EINVAL; XSA-188 relies
 * on the last), and only a request Xen would carry out gets -ENOSYS.
 */
function initControl(ctx: HypercallContext, arg: bigint): bigint {
  const c = EvtchnInitControl.over(ctx.guest.read(arg, EvtchnInitControl.SIZE).buffer);
  if (c.vcpu >= ctx.sched.vcpus) return errno('XEN_ENOENT');
  if (c.offset > 4096 - FIFO_CONTROL_BLOCK || c.offset & 7) return errno('XEN_EINVAL');
  const ft = ctx.mm.pt.ft;
  const gfn = c.control_gfn;
  if (gfn >= BigInt(ft.count) || ft.owner[Number(gfn)] !== ctx.domid) return errno('XEN_EINVAL');
  const type = ft.type[Number(gfn)]!;
  if (ft.typeCount[Number(gfn)]! > 0 && type !== PageType.writable) return errno('XEN_EINVAL'); // a table or descriptor page
  return errno('XEN_ENOSYS');
}

export function eventChannelOp(ctx: HypercallContext, [cmdArg, arg]: HypercallArgs): bigint {
  const ev = ctx.events;
  const self = ctx.domid;
  try {
    switch (Number(BigInt.asIntN(32, cmdArg))) {
      case EventChannelOp.EVTCHNOP_alloc_unbound: {
        let rc = 0n;
        inOut(ctx, arg, EvtchnAllocUnbound.SIZE, EvtchnAllocUnbound.over, (a) => {
          if (resolveDomid(a.dom, self) !== self) {
            rc = errno('XEN_EPERM'); // only privileged domains allocate for others
            return;
          }
          a.port = ev.allocUnbound(resolveDomid(a.remote_dom, self));
        });
        return rc;
      }
      case EventChannelOp.EVTCHNOP_bind_interdomain:
        inOut(ctx, arg, EvtchnBindInterdomain.SIZE, EvtchnBindInterdomain.over, (b) => {
          b.local_port = ev.bindInterdomain(resolveDomid(b.remote_dom, self), b.remote_port);
        });
        return 0n;
      case EventChannelOp.EVTCHNOP_bind_virq:
        inOut(ctx, arg, EvtchnBindVirq.SIZE, EvtchnBindVirq.over, (b) => { b.port = ev.bindVirq(b.virq, b.vcpu); });
        return 0n;
      case EventChannelOp.EVTCHNOP_bind_ipi:
        inOut(ctx, arg, EvtchnBindIpi.SIZE, EvtchnBindIpi.over, (b) => { b.port = ev.bindIpi(b.vcpu); });
        return 0n;
      case EventChannelOp.EVTCHNOP_bind_pirq:
        ctx.guest.read(arg, EvtchnBindPirq.SIZE);
        return errno('XEN_EPERM'); // no physical IRQs for an unprivileged domain
      // close, send and unmask take a struct of one port: read as a word,
      // with no allocation (send is on every event's path).
      case EventChannelOp.EVTCHNOP_close:
        ev.close(ctx.guest.readU32(arg + BigInt(EvtchnClose.OFFSETS.port)));
        return 0n;
      case EventChannelOp.EVTCHNOP_send:
        ev.send(ctx.guest.readU32(arg + BigInt(EvtchnSend.OFFSETS.port)));
        return 0n;
      case EventChannelOp.EVTCHNOP_status: {
        let rc = 0n;
        inOut(ctx, arg, EvtchnStatus.SIZE, EvtchnStatus.over, (s) => {
          const dom = resolveDomid(s.dom, self);
          if (dom !== self) {
            rc = errno(ev.domainExists(dom) ? 'XEN_EPERM' : 'XEN_ESRCH'); // another domain needs privilege
            return;
          }
          const st = ev.status(s.port);
          s.status = st.status;
          s.vcpu = st.vcpu;
          // The union: unbound {dom}, interdomain {dom, port}, virq: the number.
          s.view.setUint32(s.base + EvtchnStatus.OFFSETS.u, st.a, true);
          s.view.setUint32(s.base + EvtchnStatus.OFFSETS.u + 4, st.b, true);
        });
        return rc;
      }
      case EventChannelOp.EVTCHNOP_bind_vcpu: {
        const b = EvtchnBindVcpu.over(ctx.guest.read(arg, EvtchnBindVcpu.SIZE).buffer);
        ev.bindVcpu(b.port, b.vcpu);
        return 0n;
      }
      case EventChannelOp.EVTCHNOP_unmask:
        ev.unmask(ctx.guest.readU32(arg + BigInt(EvtchnUnmask.OFFSETS.port)));
        return 0n;
      case EventChannelOp.EVTCHNOP_init_control:
        return initControl(ctx, arg);
      case EventChannelOp.EVTCHNOP_expand_array:
        ctx.guest.read(arg, EvtchnExpandArray.SIZE);
        return errno('XEN_EOPNOTSUPP'); // as Xen for a domain not on the FIFO ABI
      default:
        return errno('XEN_ENOSYS'); // reset, set_priority (none on the 2-level ABI), unknown commands
    }
  } catch (e) {
    if (e instanceof EventError) return -BigInt(e.errno);
    throw e;
  }
}
