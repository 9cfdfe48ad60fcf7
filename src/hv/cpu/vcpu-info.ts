// A vCPU's vcpu_info: in shared_info's slot for the vCPU until
// VCPUOP_register_vcpu_info moves it into a page of the domain's. It holds
// the event upcall's pending and mask bytes, the pending selector word, the
// PV clock (vcpu_time_info) and, for a #PF, cr2. The views are made when it
// moves and read on every resume. Inputs: the mfn and offset of
// register_vcpu_info (hostile, checked here).

import type { Vcpu } from '../../engine/types.js';
import { VcpuInfo } from '../../abi/generated/xen.js';
import { errno } from '../hypercalls/context.js';
import { PAGE_SIZE, type FrameTable } from '../mm/frames.js';
import { writeVcpuTime, type SystemClock } from '../sched/time.js';

const O = VcpuInfo.OFFSETS;

export class VcpuInfoArea {
  /** vcpu_info as bytes. */
  view!: DataView;
  /** vcpu_info as 32-bit words of its page, and its byte offset there (atomic bit updates). */
  words!: { words: Int32Array; base: number };
  private moved = false;

  /** `holdWritable` keeps a page of the domain typed writable until it dies (0 or an errno). */
  constructor(
    private readonly ft: FrameTable, private readonly engine: Vcpu, private readonly clock: SystemClock,
    private readonly holdWritable: (mfn: number) => bigint, sharedInfoMfn: number, index: number,
  ) {
    this.place(sharedInfoMfn, index * VcpuInfo.SIZE);
  }

  private place(mfn: number, offset: number): void {
    const page = this.ft.bytes(mfn);
    this.view = new DataView(page.buffer, page.byteOffset + offset, VcpuInfo.SIZE);
    this.words = { words: new Int32Array(page.buffer, page.byteOffset, PAGE_SIZE / 4), base: offset };
  }

  /** evtchn_upcall_pending is set and evtchn_upcall_mask clear: an upcall can be delivered. */
  upcallDeliverable(): boolean {
    const v = this.view;
    return v.getUint8(O.evtchn_upcall_pending) !== 0 && !(v.getUint8(O.evtchn_upcall_mask) & 1);
  }

  get upcallPending(): boolean {
    return this.view.getUint8(O.evtchn_upcall_pending) !== 0;
  }

  /** The event mask (the guest's virtual IF, inverted). */
  get masked(): boolean {
    return (this.view.getUint8(O.evtchn_upcall_mask) & 1) !== 0;
  }

  set masked(on: boolean) {
    this.view.setUint8(O.evtchn_upcall_mask, on ? 1 : 0);
  }

  /** The faulting address of the last #PF bounced (vcpu_info.arch.cr2): the guest's CR2. */
  get cr2(): bigint {
    return this.view.getBigUint64(O.arch, true);
  }

  set cr2(v: bigint) {
    this.view.setBigUint64(O.arch, v, true);
  }

  /** Told of each update of vcpu_info.time (the guest's second copy follows it: runstate.ts). */
  timeUpdated: (() => void) | undefined;

  /** Writes vcpu_info.time from the guest TSC now (at start, and when vcpu_info moves). */
  updateTime(): void {
    const { tsc, hostNs } = this.engine.tscNow();
    writeVcpuTime(this.view, tsc, this.clock.fromHost(hostNs), this.engine.tscKhz());
    this.timeUpdated?.();
  }

  /**
   * VCPUOP_register_vcpu_info: moves vcpu_info into one of the domain's
   * pages, as Xen: 8-byte aligned and within the page (-ENXIO), once
   * (-EBUSY), a page the domain owns (-EINVAL) that can be typed writable
   * (-EACCES), held so until the domain dies. The old contents are copied
   * and every event selector is marked, so nothing pending is lost.
   */
  register(mfnArg: bigint, offset: number): bigint {
    if (offset % 8 || offset > PAGE_SIZE - VcpuInfo.SIZE) return errno('XEN_ENXIO');
    if (this.moved) return errno('XEN_EBUSY');
    if (mfnArg >= BigInt(this.ft.count)) return errno('XEN_EINVAL');
    const mfn = Number(mfnArg);
    const rc = this.holdWritable(mfn);
    if (rc) return rc;
    const old = new Uint8Array(this.view.buffer, this.view.byteOffset, VcpuInfo.SIZE).slice();
    this.place(mfn, offset);
    this.moved = true;
    const info = this.view;
    new Uint8Array(info.buffer, info.byteOffset, VcpuInfo.SIZE).set(old);
    info.setBigUint64(O.evtchn_pending_sel, 0xffffffffffffffffn, true);
    info.setUint8(O.evtchn_upcall_pending, 1);
    this.updateTime();
    return 0n;
  }
}
