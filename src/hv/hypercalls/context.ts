// What a hypercall handler sees of its caller: the calling domain and vCPU,
// in parts each family of hypercalls works on (memory management, traps,
// events, scheduling and time). Every part is always there: a vCPU makes
// the whole context once, and tests build it from test/support. Handlers
// depend on these interfaces, never on the vCPU or domain classes, so the
// hypercall layer has no import cycle with them.

import { XenErrno } from '../../abi/generated/errno.js';
import type { GuestMemory } from '../mm/guest-access.js';
import type { PageTypes } from '../mm/page-types.js';
import type { DomainTranslations } from '../mm/tlb.js';
import type { EventChannels } from '../events/channels.js';
import type { GrantTable } from '../mm/grant-table.js';
import type { GrantWorld } from '../mm/grant-map.js';
import type { VcpuTimers } from '../sched/time.js';
import type { VcpuGuestContext } from '../../abi/generated/arch-x86.js';

/** rdi, rsi, rdx, r10, r8. */
export type HypercallArgs = readonly [bigint, bigint, bigint, bigint, bigint];

/** Xen's negated errno, as a hypercall result. */
export const errno = (name: keyof typeof XenErrno): bigint => -BigInt(XenErrno[name]);

/** What the MMU hypercalls need of the calling vCPU and its domain. */
export interface MmContext {
  readonly pt: PageTypes;
  /** The vCPU's kernel root and user root (0: none), machine frames. */
  readonly cr3: number;
  readonly userCr3: number;
  /** Loads a new kernel or user root on this vCPU (its type reference is the caller's to take). */
  setCr3(mfn: number): void;
  setUserCr3(mfn: number): void;
  /** The domain's stale-translation tracker (src/hv/mm/tlb.ts): updates record there, flush requests flush it. */
  readonly tlb: DomainTranslations;
  /** The LDT this vCPU asked for (checked; loaded with descriptor-table support). */
  setLdt(base: bigint, entries: number): void;
}

/** A callback entry point: address 0 is none. */
export interface CallbackEntry {
  address: bigint;
  /** Enter with events masked. */
  maskEvents: boolean;
}

/** What the CPU-state hypercalls (traps, callbacks, segment bases, iret, IOPL, GDT, debug registers) need of the calling vCPU. */
export interface CpuContext {
  /** trap_ctxt[vector] := (flags, cs, address); address 0 removes the handler. */
  setTrap(vector: number, flags: number, cs: number, address: bigint): void;
  clearTraps(): void;
  /** stack_switch: the guest kernel stack used when an event interrupts guest user mode. */
  setKernelStack(sp: bigint): void;
  /** The virtual CR0.TS (fpu_taskswitch). */
  setTaskSwitched(on: boolean): void;
  /** set_segment_base; returns 0 or an errno. */
  setSegmentBase(which: number, base: bigint): bigint;
  /** A callback entry point, by CALLBACKTYPE_*. */
  setCallback(type: number, entry: CallbackEntry): void;
  /** PHYSDEVOP_set_iopl: the virtual IOPL, 0-3. */
  setIopl(iopl: number): void;
  /** set_gdt: the vCPU's GDT from these frames (machine frame numbers as the guest gave them); 0 or an errno. */
  setGdt(frames: readonly bigint[], entries: number): bigint;
  /** set_debugreg: 0 or an errno; get_debugreg: the value or an errno. */
  setDebugreg(reg: number, value: bigint): bigint;
  getDebugreg(reg: number): bigint;
  /**
   * The iret hypercall: resume the frame (struct iret_context) at the
   * guest's stack pointer, as it was when the call was made. Returns
   * undefined when arranged (the guest never sees a result), or a reason
   * to crash.
   */
  iret(): string | undefined;
}

/** What the scheduling and time hypercalls need of the calling vCPU and its domain. */
export interface SchedContext {
  /** The calling vCPU's index, and how many the domain has. */
  readonly vcpu: number;
  readonly vcpus: number;
  /** System time now (ns). */
  now(): bigint;
  /** The calling vCPU's timers (their setters tell the run loop). */
  readonly timers: VcpuTimers;
  /** SCHEDOP_block: unmask events and sleep until one is pending (at once if one is). */
  block(): void;
  /** SCHEDOP_poll: sleep until one of `ports` is pending or system time `timeout` (0: none) passes. */
  poll(ports: number[], timeout: bigint): void;
  /** SCHEDOP_yield: the vCPU gives up the rest of its time slice. */
  yieldCpu(): void;
  /** VCPUOP_register_vcpu_info; returns 0 or an errno. */
  registerVcpuInfo(mfn: bigint, offset: number): bigint;
}

/** What vcpu_op needs of the domain's vCPUs, any of them by index (range-checked by the caller). */
export interface VcpuControl {
  /** How many vCPUs the domain has. */
  readonly count: number;
  /** vCPU `i`'s timers and vcpu_info (VCPUOP_set_periodic_timer and register_vcpu_info may name any vCPU). */
  sched(i: number): SchedContext;
  /** VCPUOP_initialise: vCPU `i`'s state from a vcpu_guest_context; 0 or an errno (-EEXIST once initialised). */
  initialise(i: number, c: VcpuGuestContext): bigint;
  /** VCPUOP_up: 0, or -EINVAL for a vCPU not initialised. */
  up(i: number): bigint;
  /** VCPUOP_down: 0 (the last vCPU up going down powers the domain off). */
  down(i: number): bigint;
  /** VCPUOP_is_up. */
  isUp(i: number): boolean;
  /** vCPU `i`'s runstate (VCPUOP_get_runstate_info, register_runstate_memory_area) and time area. */
  runstate(i: number): {
    snapshot(): Uint8Array;
    /** false: an address the guest cannot have (-EFAULT). The first copy is written through `caller`, the calling vCPU's view. */
    register(va: bigint, caller: GuestMemory): boolean;
    /** VCPUOP_register_vcpu_time_memory_area; as register. */
    registerTime(va: bigint, caller: GuestMemory): boolean;
  };
}

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
  consoleRead(max: number): Uint8Array;
  /** Ends the domain with a SHUTDOWN_* reason (takes effect when the hypercall returns). */
  shutdown(reason: number): void;
  /**
   * Re-issue this hypercall with `args` when the guest resumes (Xen's
   * continuation: the call is cut short to bound the work per exit). The
   * handler then returns 0, which the guest does not see.
   */
  continueWith(args: HypercallArgs): void;
  /** Where the guest can read the M2P (XENMEM_machphys_mapping's v_start). */
  readonly m2pVirt: bigint;
  /** The domain cannot go on (a guest error Xen answers with domain_crash). */
  crash(reason: string): void;
  /** The calling vCPU's memory management (page tables, CR3), for the MMU hypercalls. */
  readonly mm: MmContext;
  /** The calling vCPU's CPU state: traps, callbacks, IOPL, GDT, debug registers. */
  readonly cpu: CpuContext;
  /** The domain's event channels. */
  readonly events: EventChannels;
  /** The domain's grant table. */
  readonly grants: GrantTable;
  /** The machine's grants: every domain's table and mappings, for map, unmap and copy. */
  readonly grantWorld: GrantWorld;
  /** The calling vCPU's time and scheduling state. */
  readonly sched: SchedContext;
  /** The domain's vCPUs, for vcpu_op. */
  readonly vcpus: VcpuControl;
}
