// Hypercall dispatch: one table indexed by hypercall number, each slot
// holding the handler of the hypercall the ABI schemas
// (src/abi/generated/hypercalls.ts) give that number. Unknown or
// unimplemented numbers return -ENOSYS; a bad guest pointer anywhere in a
// handler returns -EFAULT. Which handlers fill it: ./index.ts. Inputs: the
// guest's registers (hostile).

import { HYPERCALLS } from '../../abi/generated/hypercalls.js';
import { GuestFault } from '../mm/guest-access.js';
import { errno, type HypercallArgs, type HypercallContext } from './context.js';

/** The hypercall page holds 128 stubs: numbers 0 to 127 can be issued. */
export const HYPERCALL_SLOTS = 128;
const SLOTS_N = BigInt(HYPERCALL_SLOTS);

/**
 * Returns what the guest sees in rax: >= 0, or a negated XEN_E* value.
 * `table` is the table that dispatched the call (multicall re-enters it).
 */
export type HypercallHandler = (ctx: HypercallContext, args: HypercallArgs, table: HypercallTable) => bigint;

export class HypercallTable {
  private readonly handlers: Array<HypercallHandler | undefined> = new Array(HYPERCALL_SLOTS).fill(undefined);

  /** Registers the handler of the hypercall the schemas name `name` ("console_io"). */
  register(name: string, handler: HypercallHandler): this {
    const info = HYPERCALLS.find((h) => h.name === name);
    if (!info) throw new Error(`no hypercall named ${name} in the ABI schemas`);
    if (this.handlers[info.nr]) throw new Error(`hypercall ${name} is registered twice`);
    this.handlers[info.nr] = handler;
    return this;
  }

  implemented(): number[] {
    return this.handlers.flatMap((h, nr) => (h ? [nr] : []));
  }

  // Reading path 5: the number picks the handler (index.ts); a bad guest pointer anywhere below is -EFAULT.
  dispatch(ctx: HypercallContext, nr: bigint, args: HypercallArgs): bigint {
    const n = nr >= 0n && nr < SLOTS_N ? Number(nr) : -1;
    const handler = n >= 0 ? this.handlers[n] : undefined;
    if (!handler) return errno('XEN_ENOSYS');
    try {
      return handler(ctx, args, this);
    } catch (e) {
      if (e instanceof GuestFault) return errno('XEN_EFAULT');
      throw e;
    }
  }
}
