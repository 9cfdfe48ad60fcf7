// set_debugreg and get_debugreg (hypercalls 8 and 9), as Xen answers a PV
// guest: the work and the checks are the vCPU's (cpu/debug-registers.ts).
// Inputs: hostile (register numbers, values).

import type { HypercallArgs, HypercallContext } from './context.js';

export function setDebugreg(ctx: HypercallContext, [reg, value]: HypercallArgs): bigint {
  return ctx.cpu.setDebugreg(Number(BigInt.asUintN(32, reg)), value);
}

export function getDebugreg(ctx: HypercallContext, [reg]: HypercallArgs): bigint {
  return ctx.cpu.getDebugreg(Number(BigInt.asUintN(32, reg)));
}
