// A vCPU's runstate, as Xen accounts it: what the vCPU is doing (running,
// runnable, blocked, offline), since when (system time), and the time it has
// spent in each state, from which a guest computes its steal time (Linux's
// xen_steal_clock: runnable + offline). The run loop changes it at every
// schedule; VCPUOP_get_runstate_info reads it, and the copy a guest
// registers (VCPUOP_register_runstate_memory_area) is rewritten at every
// change, with XEN_RUNSTATE_UPDATE set in state_entry_time while it is
// (VMASST_TYPE_runstate_update_flag). Also the secondary copy of the PV
// clock (VCPUOP_register_vcpu_time_memory_area). Inputs: guest virtual
// addresses (hostile: range-checked; a write that faults is dropped, as
// Xen drops it).

import { RunState, RunstateUpdate, VcpuRunstateInfo } from '../../abi/generated/vcpu.js';
import { VcpuInfo, VcpuTimeInfo } from '../../abi/generated/xen.js';
import { GuestFault, guestRangeOk, type GuestMemory } from '../mm/guest-access.js';

const UPDATE = BigInt(RunstateUpdate.XEN_RUNSTATE_UPDATE);

/** What the runstate needs of its vCPU. */
export interface RunstateHost {
  /** System time now (ns). */
  now(): bigint;
  /** The vCPU's memory through its kernel page tables (Xen writes the areas there; before it has any, every write faults). */
  readonly memory: GuestMemory;
  /** VMASST_TYPE_runstate_update_flag is on. */
  readonly updateFlag: boolean;
  /** The vCPU's vcpu_info (the time area copies its vcpu_time_info). */
  readonly vcpuInfo: DataView;
}

export class VcpuRunstate {
  state: number = RunState.RUNSTATE_offline;
  /** System time the current state began. */
  entry: bigint;
  /** Time spent in each state before the current one began (ns), by RUNSTATE_*. */
  readonly time: [bigint, bigint, bigint, bigint] = [0n, 0n, 0n, 0n];
  /** The guest's copy (a virtual address), if registered. */
  private area: bigint | undefined;
  /** The guest's second copy of vcpu_time_info, if registered. */
  private timeArea: bigint | undefined;
  private readonly bytes = new Uint8Array(VcpuRunstateInfo.SIZE);
  private readonly info = VcpuRunstateInfo.over(this.bytes.buffer);

  constructor(private readonly host: RunstateHost) {
    this.entry = host.now();
  }

  /** The vCPU is now in `state` (RUNSTATE_*): the time of the one it leaves is counted, and the guest's copy rewritten. */
  change(state: number): void {
    if (state === this.state) return;
    const now = this.host.now();
    this.time[this.state] = this.time[this.state]! + (now - this.entry);
    this.state = state;
    this.entry = now;
    this.publish();
  }

  /** vcpu_runstate_info as VCPUOP_get_runstate_info gives it: the current state's time counted up to now. */
  snapshot(): Uint8Array {
    this.fill(this.host.now() - this.entry);
    return this.bytes.slice();
  }

  /**
   * VCPUOP_register_runstate_memory_area: false for an address the guest
   * cannot have (-EFAULT; checked as Xen's guest_handle_okay). The copy is
   * written at once through the caller's tables (`caller`: another vCPU may
   * register this one's before it has any), later through this vCPU's own.
   */
  register(va: bigint, caller: GuestMemory): boolean {
    if (va !== 0n && !guestRangeOk(va, VcpuRunstateInfo.SIZE)) return false;
    this.area = va === 0n ? undefined : va;
    this.publish(caller);
    return true;
  }

  /** VCPUOP_register_vcpu_time_memory_area, as register. */
  registerTime(va: bigint, caller: GuestMemory): boolean {
    if (va !== 0n && !guestRangeOk(va, VcpuTimeInfo.SIZE)) return false;
    this.timeArea = va === 0n ? undefined : va;
    this.publishTime(caller);
    return true;
  }

  /** Writes the second copy of vcpu_time_info, after vcpu_info's was (whole, its version even). */
  publishTime(via = this.host.memory): void {
    if (this.timeArea === undefined) return;
    const info = this.host.vcpuInfo;
    const t = new Uint8Array(info.buffer, info.byteOffset + VcpuInfo.OFFSETS.time, VcpuTimeInfo.SIZE);
    this.write(via, this.timeArea, t.slice());
  }

  private fill(extra: bigint): void {
    const i = this.info;
    i.state = this.state;
    i.state_entry_time = this.entry;
    for (let s = 0; s < 4; s++) i.set_time_at(s, this.time[s]! + (s === this.state ? extra : 0n));
  }

  /** Rewrites the guest's copy: with the update flag, state_entry_time carries XEN_RUNSTATE_UPDATE while the rest changes. */
  private publish(via = this.host.memory): void {
    const at = this.area;
    if (at === undefined) return;
    this.fill(0n);
    if (!this.host.updateFlag) {
      this.write(via, at, this.bytes);
      return;
    }
    // As Xen: the flag set in the guest's state_entry_time, the copy written still flagged, then the flag cleared.
    const entryAt = at + BigInt(VcpuRunstateInfo.OFFSETS.state_entry_time);
    const word = new Uint8Array(8), w = new DataView(word.buffer);
    const old = this.readEntry(via, entryAt);
    if (old === undefined) return;
    w.setBigUint64(0, old | UPDATE, true);
    if (!this.write(via, entryAt, word)) return;
    this.info.state_entry_time = this.entry | UPDATE;
    this.write(via, at, this.bytes);
    w.setBigUint64(0, this.entry, true);
    this.write(via, entryAt, word);
  }

  private readEntry(via: GuestMemory, va: bigint): bigint | undefined {
    try {
      return new DataView(via.read(va, 8).buffer).getBigUint64(0, true);
    } catch (e) {
      if (e instanceof GuestFault) return undefined;
      throw e;
    }
  }

  private write(via: GuestMemory, va: bigint, bytes: Uint8Array): boolean {
    try {
      via.write(va, bytes);
      return true;
    } catch (e) {
      if (e instanceof GuestFault) return false;
      throw e;
    }
  }
}
