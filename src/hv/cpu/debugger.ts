// Where the core offers a debugger (paravane run --gdb) the exceptions it
// may own: its breakpoints' int3 and its single steps' #DB. The core knows
// only this interface; the GDB remote protocol is the toolstack's
// (src/toolstack/gdb-remote.ts). Absent unless a debugger is attached.

import type { GuestState } from './guest-state.js';

export interface DebugHook {
  /**
   * An exception reached the hypervisor from vCPU `vcpu`, the guest's state
   * in `frame` (rip at the faulting instruction). True: it was the
   * debugger's (a breakpoint it set, a step it asked for), the debugger has
   * stopped the domain, and the guest must not see it.
   */
  trap(vcpu: number, vector: number, errorCode: bigint | undefined, frame: GuestState): boolean;
  /**
   * The domain is about to be crashed for `reason`. True: the debugger holds
   * it stopped instead, for inspection; it crashes it itself when the
   * debugger lets it go on.
   */
  holdCrash?(reason: string): boolean;
}
