// physdev_op (hypercall 33) as Xen answers an unprivileged PV domain: the
// virtual IOPL (PHYSDEVOP_set_iopl), which decides whether the guest's
// `cli`, `sti`, `in` and `out` are emulated or fault; the sub-ops that
// manage physical devices and interrupts need a privileged domain, and are
// -ENOSYS here as before. Inputs: hostile (pointers, values).

import { PhysdevOp, PhysdevSetIopl } from '../../abi/generated/physdev.js';
import { errno, type HypercallArgs, type HypercallContext } from './context.js';

export function physdevOp(ctx: HypercallContext, [cmd, arg]: HypercallArgs): bigint {
  switch (Number(BigInt.asIntN(32, cmd))) {
    case PhysdevOp.PHYSDEVOP_set_iopl: {
      const iopl = ctx.guest.readU32(arg + BigInt(PhysdevSetIopl.OFFSETS.iopl));
      if (iopl > 3) return errno('XEN_EINVAL');
      ctx.cpu.setIopl(iopl);
      return 0n;
    }
    default:
      return errno('XEN_ENOSYS');
  }
}
