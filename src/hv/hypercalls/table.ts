// Hypercall dispatch: one table indexed by hypercall number, built from the
// numbers the ABI schemas declare (src/abi/generated/hypercalls.ts), with a
// TypeScript handler per implemented hypercall. Unknown or unimplemented
// numbers return -ENOSYS; a bad guest pointer anywhere in a handler returns
// -EFAULT. Inputs: the guest's registers (hostile).

import { HYPERCALLS } from '../../abi/generated/hypercalls.js';
import { XenErrno } from '../../abi/generated/errno.js';
import { GuestFault, type GuestMemory } from '../mm/guest-access.js';
import type { MmContext } from './mmu.js';
import type { TrapContext } from './traps.js';
import type { EventChannels } from '../events/channels.js';
import type { SchedContext } from './vcpu-op.js';

/** The hypercall page holds 128 stubs: numbers 0 to 127 can be issued. */
export const HYPERCALL_SLOTS = 128;
const SLOTS_N = BigInt(HYPERCALL_SLOTS);

/** What a handler may see and do of the calling domain and vCPU. */
export interface HypercallContext {
  readonly domid: number;
  /** The calling vCPU's view of guest virtual memory (its current page tables). */
  readonly guest: GuestMemory;
  /** Pages the domain has now, and may have at most. */
  readonly nrPages: number;
  readonly maxPages: number;
  /** The domain's 16-byte handle (UUID). */
  readonly handle: Uint8Array;
  /** Enabled VMASST_TYPE_* bits. */
  vmAssist: bigint;
  /** Console output from console_io. */
  consoleWrite(bytes: Uint8Array): void;
  /** Console input for console_io(CONSOLEIO_read): up to `max` bytes (none when there is none). */
  consoleRead?(max: number): Uint8Array;
  /** Ends the domain with a SHUTDOWN_* reason (takes effect when the hypercall returns). */
  shutdown(reason: number): void;
  /** The vCPU gives up the rest of its time slice. */
  yieldCpu(): void;
  /**
   * Re-issue this hypercall with `args` when the guest resumes (Xen's
   * continuation: the call is cut short to bound the work per exit). The
   * handler then returns 0, which the guest does not see.
   */
  continueWith(args: HypercallArgs): void;
  /** Where the guest can read the M2P (XENMEM_machphys_mapping's v_start). */
  readonly m2pVirt: bigint;
  /** The calling vCPU's memory management (page tables, CR3), for the MMU hypercalls. */
  readonly mm?: MmContext;
  /** The calling vCPU's trap state, for the trap hypercalls. */
  readonly cpu?: TrapContext;
  /** The domain's event channels. */
  readonly events?: EventChannels;
  /** The calling vCPU's time and scheduling state. */
  readonly sched?: SchedContext;
  /** The domain cannot go on (a guest error Xen answers with domain_crash). */
  crash(reason: string): void;
}

/** rdi, rsi, rdx, r10, r8. */
export type HypercallArgs = readonly [bigint, bigint, bigint, bigint, bigint];

/** Returns what the guest sees in rax: >= 0, or a negated XEN_E* value. */
export type HypercallHandler = (ctx: HypercallContext, args: HypercallArgs) => bigint;

export const errno = (name: keyof typeof XenErrno): bigint => -BigInt(XenErrno[name]);

/** The part of the context a family of hypercalls needs (it is there for every vCPU; only unit tests build contexts without). */
export function need<K extends 'mm' | 'cpu' | 'events' | 'sched'>(ctx: HypercallContext, part: K): NonNullable<HypercallContext[K]> {
  const v = ctx[part];
  if (!v) throw new Error(`this hypercall needs the calling vCPU's ${part} context`);
  return v as NonNullable<HypercallContext[K]>;
}

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

  dispatch(ctx: HypercallContext, nr: bigint, args: HypercallArgs): bigint {
    const n = nr >= 0n && nr < SLOTS_N ? Number(nr) : -1;
    const handler = n >= 0 ? this.handlers[n] : undefined;
    if (!handler) return errno('XEN_ENOSYS');
    try {
      return handler(ctx, args);
    } catch (e) {
      if (e instanceof GuestFault) return errno('XEN_EFAULT');
      throw e;
    }
  }
}
