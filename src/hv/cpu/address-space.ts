// A vCPU's page-table roots and guest mode, as Xen keeps them for a 64-bit
// PV vCPU: a kernel root and a user root (MMUEXT_NEW_USER_BASEPTR), and
// whether the guest is in kernel or user mode (Xen's TF_kernel_mode). The
// mode decides which root is loaded and which view of memory hypercalls
// read through; a switch also swaps the GS bases (as swapgs would) and
// opens or closes the hypercall port. Roots are loaded into the engine at
// the next entry (load), never while the guest runs. Inputs: frame numbers
// the MMU hypercalls have validated.

import type { Vcpu } from '../../engine/types.js';
import type { FrameTable } from '../mm/frames.js';
import { GuestMemory } from '../mm/guest-access.js';
import { MSR, type PerDomainSpace } from '../mm/xen-space.js';

export class VcpuAddressSpace {
  /** Guest user mode: the vCPU runs on the user page tables with the GS bases swapped. */
  userMode = false;
  /** Kernel and user page-table roots (machine frames; 0 = none: no user root, or a vCPU not yet initialised). */
  cr3Mfn: number;
  userCr3Mfn = 0;
  private kernel: GuestMemory;
  private user: GuestMemory | undefined;
  /** The root of the current mode changed: the engine's CR3 is reloaded at the next entry. */
  private pending = false;

  /** `wrote` hears of every hypervisor write into guest memory through these views (the stale-translation tracker). */
  constructor(
    private readonly ft: FrameTable, private readonly engine: Vcpu, private readonly perDomain: PerDomainSpace,
    private readonly index: number, cr3: bigint, private readonly wrote: (mfn: number) => void,
  ) {
    this.cr3Mfn = Number(cr3 >> 12n);
    // No root yet (a vCPU VCPUOP_initialise has not set up): nothing can be read or written through it.
    this.kernel = cr3 === 0n ? GuestMemory.none(ft) : new GuestMemory(ft, cr3, wrote);
  }

  /** The guest's view of memory through its current page tables (the kernel's or, in guest user mode, the user's). */
  get guest(): GuestMemory {
    return this.userMode ? this.user! : this.kernel;
  }

  /** Memory through the kernel's tables, whatever the mode (bounce frames go on the kernel stack). */
  get kernelMemory(): GuestMemory {
    return this.kernel;
  }

  /** A new kernel root (from a hypercall, so in kernel mode). */
  setCr3(mfn: number): void {
    this.cr3Mfn = mfn;
    this.kernel = new GuestMemory(this.ft, BigInt(mfn) << 12n, this.wrote);
    this.pending = true;
  }

  /** A new user root, or none (0). */
  setUserCr3(mfn: number): void {
    this.userCr3Mfn = mfn;
    this.user = mfn ? new GuestMemory(this.ft, BigInt(mfn) << 12n, this.wrote) : undefined;
  }

  /**
   * Xen's toggle_guest_mode: between guest kernel and user mode, the page
   * tables (loaded at the next entry) and the GS bases (the kernel's and
   * the user's swap) change places, and the hypercall port is closed in
   * user mode. Entering user mode needs user page tables: the caller checks.
   */
  toggle(): void {
    this.userMode = !this.userMode;
    this.pending = true;
    this.perDomain.setHypercallPortOpen(this.index, !this.userMode);
    const [gs, shadow] = this.engine.getMsrs([MSR.GS_BASE, MSR.KERNEL_GS_BASE]);
    this.engine.setMsrs([[MSR.GS_BASE, shadow!], [MSR.KERNEL_GS_BASE, gs!]]);
  }

  /** Loads the current mode's root into the engine if it changed (at entry). */
  load(): void {
    if (!this.pending) return;
    const s = this.engine.getSpecialRegisters();
    s.cr3 = BigInt(this.userMode ? this.userCr3Mfn : this.cr3Mfn) << 12n;
    this.engine.setSpecialRegisters(s);
    this.pending = false; // only once loaded: a failed load is tried again at the next entry
  }

  /** The roots in use (for the page-type audit); none before a vCPU is initialised. */
  roots(): number[] {
    return [this.cr3Mfn, this.userCr3Mfn].filter((mfn) => mfn !== 0);
  }
}
