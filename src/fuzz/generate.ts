// The fuzzer's call generator: draws hypercalls from the PRNG over every
// number 0-127 and the sub-ops the ABI schemas name, with arguments biased
// to the interesting (the domain's own and page-table frames, the victim's
// frames, the hypervisor's, boundary values, huge counts, bad and
// non-canonical pointers) and pointer arguments aimed at fuzzed structures
// it lays out in a scratch area of guest memory (mmu_update requests,
// mmuext ops, multicall lists, nested ones included). It only describes the
// calls; the runner plays them. Inputs: the PRNG and the targets (trusted).

import { HYPERCALLS } from '../abi/generated/hypercalls.js';
import { CallbackOp, CallbackType } from '../abi/generated/callback.js';
import { EventChannelOp } from '../abi/generated/event-channel.js';
import { GnttabOp } from '../abi/generated/grant-table.js';
import { MemoryOp, MemoryToolsOp } from '../abi/generated/memory.js';
import { PvbenchCmd, PvbenchHypercall } from '../abi/generated/paravane-pvbench.js';
import { PhysdevOp } from '../abi/generated/physdev.js';
import { SchedOp } from '../abi/generated/sched.js';
import { VcpuOp } from '../abi/generated/vcpu.js';
import { VersionOp } from '../abi/generated/version.js';
import { SegmentBase } from '../abi/generated/arch-x86.js';
import { ConsoleIo, DomidSpecial, Hypercall, MmuextCmd, MmuUpdateType, Uvmf, VmAssist } from '../abi/generated/xen.js';
import type { Prng } from './prng.js';

export type Transport = 'page' | 'syscall' | 'vmcall';
export const TRANSPORTS: readonly Transport[] = ['page', 'syscall', 'vmcall'];

/** Bytes the runner stores in guest memory before the call (with the guest's rights). */
export interface GuestWrite { va: bigint; bytes: Uint8Array }

export interface FuzzCall {
  nr: number;
  args: bigint[];
  via: Transport;
  /** Fuzzed structures, in order. */
  writes: GuestWrite[];
  /** Bytes stored at the guest's rsp before the call (an iret frame). */
  stack?: Uint8Array;
}

/** What the generator aims at: all numbers the runner reads from the live domains. */
export interface FuzzTargets {
  /** The fuzz domain's frames (its P2M), its page-table frames and its L4. */
  ownMfns: readonly number[];
  tableMfns: readonly number[];
  l4Mfn: number;
  ownDomid: number;
  /** The victim's frames and id. */
  victimMfns: readonly number[];
  victimDomid: number;
  /** Frames of the hypervisor's own (shared_info pages, its tables). */
  xenMfns: readonly number[];
  /** Machine frames in all (frameCount and up are invalid). */
  frameCount: number;
  /** Guest-virtual range of the scratch area the generator lays structures in. */
  scratchVa: bigint;
  scratchBytes: number;
  /** The guest's mapped kernel range [start, end). */
  mappedStart: bigint;
  mappedEnd: bigint;
  /** Virtual address of the first page-table page (they are mapped read-only). */
  tableVa: bigint;
}

const M64 = (1n << 64n) - 1n;
const BOUNDARY: readonly bigint[] = [0n, 1n, 2n, M64, (1n << 31n) - 1n, 1n << 31n, (1n << 32n) - 1n, 1n << 32n, 1n << 63n, (1n << 63n) - 1n, 0xfffn, 0x1000n, 0x7ff0n];
const HUGE_COUNTS: readonly bigint[] = [1n << 31n, (1n << 32n) - 1n, (1n << 31n) - 1n, 4096n, 65536n, 1n << 20n, M64];
const NON_CANONICAL: readonly bigint[] = [1n << 47n, 0x0000_8000_0000_0000n, 0x7fff_ffff_ffff_f000n, 0x8000_0000_0000_0000n, 0xffff_7fff_ffff_f000n];
/** The hypervisor's own area (L4 slots 256-271) and the top of the address space. */
const XEN_AREA: readonly bigint[] = [0xffff_8000_0000_0000n, 0xffff_8080_0000_0000n, 0xffff_8300_0000_0000n, 0xffff_87ff_ffff_f000n, 0xffff_ffff_ffff_f000n];
const PTE_BITS: readonly bigint[] = [1n, 2n, 4n, 8n, 0x10n, 0x20n, 0x40n, 0x80n, 0x100n, 0xe00n, 1n << 52n, 1n << 62n, 1n << 63n];
const DOMIDS: readonly number[] = [DomidSpecial.DOMID_SELF, DomidSpecial.DOMID_IO, DomidSpecial.DOMID_XEN, DomidSpecial.DOMID_COW, DomidSpecial.DOMID_INVALID, DomidSpecial.DOMID_IDLE, 0, 0xffff];

const values = (o: Record<string, number>): number[] => [...new Set(Object.values(o))];

/** Sub-op numbers (the first argument, or the first word of the structure) per hypercall. */
const SUB_OPS: ReadonlyMap<number, readonly number[]> = new Map<number, number[]>([
  [Hypercall.HYPERVISOR_sched_op, values(SchedOp)],
  [Hypercall.HYPERVISOR_sched_op_compat, values(SchedOp)],
  [Hypercall.HYPERVISOR_memory_op, [...values(MemoryOp), ...values(MemoryToolsOp)]],
  [Hypercall.HYPERVISOR_xen_version, values(VersionOp)],
  [Hypercall.HYPERVISOR_console_io, values(ConsoleIo)],
  [Hypercall.HYPERVISOR_physdev_op, values(PhysdevOp)],
  [Hypercall.HYPERVISOR_physdev_op_compat, values(PhysdevOp)],
  [Hypercall.HYPERVISOR_grant_table_op, values(GnttabOp)],
  [Hypercall.HYPERVISOR_vm_assist, [0, 1, 2]],
  [Hypercall.HYPERVISOR_vcpu_op, values(VcpuOp)],
  [Hypercall.HYPERVISOR_callback_op, values(CallbackOp)],
  [Hypercall.HYPERVISOR_event_channel_op, values(EventChannelOp)],
  [Hypercall.HYPERVISOR_event_channel_op_compat, values(EventChannelOp)],
  [Hypercall.HYPERVISOR_set_segment_base, values(SegmentBase)],
  [PvbenchHypercall.HYPERVISOR_pvbench_op, values(PvbenchCmd)],
  [Hypercall.HYPERVISOR_nmi_op, [0, 1, 2]],
  [Hypercall.HYPERVISOR_fpu_taskswitch, [0, 1]],
]);
const SCHED_KEEPS_RUNNING = values(SchedOp).filter((op) => op !== SchedOp.SCHEDOP_shutdown && op !== SchedOp.SCHEDOP_block && op !== SchedOp.SCHEDOP_poll);
const MMUEXT_CMDS = values(MmuextCmd);
const VM_ASSISTS = values(VmAssist);
const CALLBACK_TYPES = values(CallbackType);
const LISTED = HYPERCALLS.map((h) => h.nr);
/** The calls with the most state behind them are drawn more often. */
const FAVOURED: readonly number[] = [
  Hypercall.HYPERVISOR_mmu_update, Hypercall.HYPERVISOR_mmu_update, Hypercall.HYPERVISOR_mmuext_op, Hypercall.HYPERVISOR_mmuext_op,
  Hypercall.HYPERVISOR_update_va_mapping, Hypercall.HYPERVISOR_multicall, Hypercall.HYPERVISOR_multicall, Hypercall.HYPERVISOR_event_channel_op,
  Hypercall.HYPERVISOR_event_channel_op, Hypercall.HYPERVISOR_grant_table_op, Hypercall.HYPERVISOR_memory_op, Hypercall.HYPERVISOR_vcpu_op,
  Hypercall.HYPERVISOR_set_gdt, Hypercall.HYPERVISOR_update_descriptor, Hypercall.HYPERVISOR_set_trap_table, Hypercall.HYPERVISOR_sched_op,
];

/** Writes little-endian words into a buffer. */
class Builder {
  readonly bytes: Uint8Array;
  private readonly view: DataView;
  constructor(n: number) {
    this.bytes = new Uint8Array(n);
    this.view = new DataView(this.bytes.buffer);
  }
  u64(off: number, v: bigint): void { if (off + 8 <= this.bytes.length) this.view.setBigUint64(off, v & M64, true); }
  u32(off: number, v: number | bigint): void { if (off + 4 <= this.bytes.length) this.view.setUint32(off, Number(BigInt(v) & 0xffffffffn), true); }
  u16(off: number, v: number): void { if (off + 2 <= this.bytes.length) this.view.setUint16(off, v & 0xffff, true); }
  u8(off: number, v: number): void { if (off < this.bytes.length) this.bytes[off] = v & 0xff; }
}

export class CallGenerator {
  /** Bump allocator over the scratch area, reset for each top-level call. */
  private used = 0;
  private writes: GuestWrite[] = [];

  constructor(private readonly r: Prng, private readonly t: FuzzTargets) {}

  /** The next call (with the structures it points at). */
  next(): FuzzCall {
    this.used = 0;
    this.writes = [];
    const call = this.call(2);
    return { ...call, via: this.r.pick(TRANSPORTS), writes: this.writes };
  }

  // --- Numbers.

  private mfn(): number {
    const r = this.r, t = this.t;
    switch (r.below(10)) {
      case 0: case 1: return r.pick(t.tableMfns);
      case 2: return t.l4Mfn;
      case 3: case 4: return r.pick(t.ownMfns);
      case 5: case 6: return r.pick(t.victimMfns);
      case 7: return r.pick(t.xenMfns);
      case 8: return r.pick([0, 1, t.frameCount - 1, t.frameCount, t.frameCount + 1, 0xfffff, 0xffffffff]);
      default: return r.below(t.frameCount);
    }
  }

  private pte(): bigint {
    const r = this.r;
    let flags = r.chance(0.8) ? 1n : 0n;
    for (const b of PTE_BITS) if (r.chance(0.25)) flags |= b;
    if (r.chance(0.1)) return r.u64();
    return (BigInt(this.mfn()) << 12n) | flags;
  }

  /** A guest-virtual address worth trying. */
  private va(): bigint {
    const r = this.r, t = this.t;
    switch (r.below(9)) {
      case 0: case 1: return t.scratchVa + BigInt(r.below(t.scratchBytes)) & ~0xfffn;
      case 2: return t.tableVa + BigInt(r.below(8) * 0x1000);
      case 3: return t.mappedStart + BigInt(r.below(Number((t.mappedEnd - t.mappedStart) >> 12n))) * 0x1000n;
      case 4: return t.mappedEnd + BigInt(r.below(16)) * 0x1000n;
      case 5: return r.pick(NON_CANONICAL);
      case 6: return r.pick(XEN_AREA) + BigInt(r.below(1 << 20)) * 0x1000n;
      case 7: return r.pick(BOUNDARY);
      default: return r.u64() & ~0xfffn;
    }
  }

  private domid(): number {
    const r = this.r;
    return r.pick([...DOMIDS, this.t.ownDomid, this.t.victimDomid, this.t.victimDomid, r.below(0x10000)]);
  }

  private small(): number {
    const r = this.r;
    return r.chance(0.7) ? r.below(8) : r.pick([16, 31, 32, 63, 64, 1023, 1024, 4095, 4096, 0x7fffffff, 0xffffffff]);
  }

  private count(): bigint {
    return this.r.chance(0.85) ? BigInt(this.r.below(9)) : this.r.pick(HUGE_COUNTS);
  }

  /** Any argument: boundary values, frames, addresses, ids. */
  private value(): bigint {
    const r = this.r;
    switch (r.below(10)) {
      case 0: case 1: return r.pick(BOUNDARY);
      case 2: return BigInt(this.mfn());
      case 3: return BigInt(this.mfn()) << 12n;
      case 4: return this.va();
      case 5: return BigInt(this.small());
      case 6: return BigInt(this.domid());
      case 7: return this.pte();
      case 8: return BigInt(r.u32());
      default: return r.u64();
    }
  }

  // --- Pointers and the structures behind them.

  /** Reserves `n` bytes of scratch; sometimes placed to straddle a page boundary. Undefined when full. */
  private reserve(n: number): bigint | undefined {
    const r = this.r, t = this.t;
    let off = (this.used + 7) & ~7;
    if (r.chance(0.15)) {
      const page = (off + 0xfff) & ~0xfff;
      const back = 1 + r.below(Math.min(n, 64));
      if (page - back >= off) off = page - back;
    }
    if (off + n > t.scratchBytes) return undefined;
    this.used = off + n;
    return t.scratchVa + BigInt(off);
  }

  /** A pointer that is not to fuzzed data: null, unmapped, kernel, non-canonical, the hypervisor's, page tables. */
  private badPointer(): bigint {
    const r = this.r, t = this.t;
    return r.pick([0n, 8n, M64, M64 - 7n, t.mappedEnd, t.mappedEnd - 4n, t.tableVa, t.mappedStart, r.pick(NON_CANONICAL), r.pick(XEN_AREA), r.u64()]);
  }

  /** A pointer to `bytes` laid in scratch (mostly), or a bad one. */
  private place(bytes: Uint8Array): bigint {
    if (this.r.chance(0.1)) return this.badPointer();
    const at = this.reserve(bytes.length);
    if (at === undefined) return this.badPointer();
    this.writes.push({ va: at, bytes });
    return at;
  }

  /** A structure of `n` bytes of interesting words, `first` (a sub-op) in its first u32 when given. */
  private struct(n: number, first?: number): Uint8Array {
    const b = new Builder(n);
    for (let off = 0; off < n; off += 8) {
      if (this.r.chance(0.5)) {
        b.u32(off, this.r.chance(0.4) ? this.domid() : this.small());
        b.u32(off + 4, this.r.chance(0.5) ? this.small() : this.r.u32());
      } else b.u64(off, this.value());
    }
    if (first !== undefined) b.u32(0, first);
    return b.bytes;
  }

  private pointer(n = 8 * (1 + this.r.below(24)), first?: number): bigint {
    return this.place(this.struct(n, first));
  }

  private subOp(nr: number): number {
    // Shutdown, block and poll end or stop the domain: drawn, but less often than the rest.
    if ((nr === Hypercall.HYPERVISOR_sched_op || nr === Hypercall.HYPERVISOR_sched_op_compat) && this.r.chance(0.75)) return this.r.pick(SCHED_KEEPS_RUNNING);
    const ops = SUB_OPS.get(nr);
    if (!ops || this.r.chance(0.1)) return this.r.pick([0, 1, 63, 64, 255, 0x7fffffff, 0xffffffff, this.r.u32()]);
    return this.r.pick(ops);
  }

  private number(): number {
    const r = this.r;
    for (;;) {
      const nr = this.draw();
      // Calls that mostly end the domain (a fuzzed iret frame) are drawn less often: each rebuild costs ~100 calls' time.
      if (nr !== Hypercall.HYPERVISOR_iret || r.chance(0.25)) return nr;
    }
  }

  private draw(): number {
    const r = this.r;
    if (r.chance(0.2)) return r.below(128);
    if (r.chance(0.35)) return r.pick(FAVOURED);
    return r.pick(LISTED);
  }

  /** One call (its number and arguments); `depth` bounds nested multicalls. */
  private call(depth: number): { nr: number; args: bigint[]; stack?: Uint8Array } {
    const r = this.r, t = this.t;
    const nr = this.number();
    const v = () => this.value();
    switch (nr) {
      case Hypercall.HYPERVISOR_mmu_update: {
        const k = r.below(9);
        const b = new Builder(16 * k);
        for (let i = 0; i < k; i++) {
          const type = r.chance(0.8) ? (r.chance(0.8) ? MmuUpdateType.MMU_NORMAL_PT_UPDATE : MmuUpdateType.MMU_MACHPHYS_UPDATE) : r.below(4);
          const slot = r.chance(0.5) ? r.below(512) : r.pick([0, 255, 256, 271, 272, 511]);
          const ptr = r.chance(0.95) ? (BigInt(this.mfn()) << 12n) | BigInt(slot * 8 + (r.chance(0.05) ? 4 : 0)) : r.u64();
          b.u64(16 * i, ptr | BigInt(type));
          b.u64(16 * i + 8, type === MmuUpdateType.MMU_MACHPHYS_UPDATE ? BigInt(r.below(2048)) : this.pte());
        }
        const count = r.chance(0.85) ? BigInt(k) : this.count();
        return { nr, args: [this.place(b.bytes), count, r.chance(0.5) ? 0n : this.pointer(8), BigInt(r.chance(0.8) ? DomidSpecial.DOMID_SELF : this.domid())] };
      }
      case Hypercall.HYPERVISOR_mmuext_op: {
        const k = r.below(6);
        const b = new Builder(24 * k);
        for (let i = 0; i < k; i++) {
          const cmd = r.chance(0.9) ? r.pick(MMUEXT_CMDS) : r.u32();
          b.u32(24 * i, cmd);
          b.u64(24 * i + 8, r.chance(0.6) ? BigInt(this.mfn()) : this.va());
          b.u64(24 * i + 16, r.chance(0.4) ? BigInt(this.mfn()) : r.chance(0.5) ? this.count() : this.pointer(8));
        }
        const count = r.chance(0.85) ? BigInt(k) : this.count();
        return { nr, args: [this.place(b.bytes), count, r.chance(0.5) ? 0n : this.pointer(8), BigInt(r.chance(0.8) ? DomidSpecial.DOMID_SELF : this.domid())] };
      }
      case Hypercall.HYPERVISOR_update_va_mapping:
      case Hypercall.HYPERVISOR_update_va_mapping_otherdomain: {
        const flags = r.chance(0.7) ? BigInt(r.pick([Uvmf.UVMF_NONE, Uvmf.UVMF_TLB_FLUSH, Uvmf.UVMF_INVLPG, Uvmf.UVMF_ALL | 1, Uvmf.UVMF_ALL | 2, 3, 7])) : this.pointer(8) | BigInt(r.below(4));
        return { nr, args: [this.va() + (r.chance(0.1) ? BigInt(r.below(4096)) : 0n), this.pte(), flags, BigInt(this.domid()), v()] };
      }
      case Hypercall.HYPERVISOR_multicall: {
        const k = r.below(7);
        const b = new Builder(64 * k);
        for (let i = 0; i < k; i++) {
          const sub = depth > 0 ? this.call(depth - 1) : { nr: r.below(128), args: [v(), v(), v(), v(), v()] };
          // Sometimes an entry names multicall itself (nesting), pointing at a list of its own.
          const op = r.chance(0.08) ? Hypercall.HYPERVISOR_multicall : sub.nr;
          b.u64(64 * i, r.chance(0.03) ? r.u64() : BigInt(op));
          b.u64(64 * i + 8, r.u64());
          for (let a = 0; a < 6; a++) b.u64(64 * i + 16 + 8 * a, sub.args[a] ?? v());
        }
        const count = r.chance(0.85) ? BigInt(k) : this.count();
        return { nr, args: [this.place(b.bytes), count, v(), v(), v()] };
      }
      case Hypercall.HYPERVISOR_set_trap_table: {
        const k = r.below(6);
        const b = new Builder(16 * (k + 1));
        for (let i = 0; i < k; i++) {
          b.u8(16 * i, r.chance(0.7) ? r.below(32) : r.below(256));
          b.u8(16 * i + 1, r.below(8));
          b.u16(16 * i + 2, r.pick([0xe033, 0xe02b, 0x10, 0, 3, r.below(0x10000)]));
          b.u64(16 * i + 8, r.chance(0.6) ? t.mappedStart + BigInt(r.below(0x4000)) : this.va());
        }
        return { nr, args: [r.chance(0.1) ? 0n : this.place(b.bytes), v(), v(), v(), v()] };
      }
      case Hypercall.HYPERVISOR_set_gdt: {
        const k = 1 + r.below(4);
        const b = new Builder(8 * k);
        for (let i = 0; i < k; i++) b.u64(8 * i, BigInt(this.mfn()));
        const entries = r.chance(0.7) ? BigInt(r.below(512 * k + 2)) : this.count();
        return { nr, args: [this.place(b.bytes), entries, v(), v(), v()] };
      }
      case Hypercall.HYPERVISOR_update_descriptor:
        return { nr, args: [(BigInt(this.mfn()) << 12n) | BigInt(r.below(512) * 8 + (r.chance(0.05) ? 4 : 0)), r.chance(0.5) ? r.u64() : v(), v(), v(), v()] };
      case Hypercall.HYPERVISOR_iret: {
        const b = new Builder(72);
        for (let i = 0; i < 9; i++) b.u64(8 * i, v());
        b.u64(32, r.chance(0.5) ? t.mappedStart + BigInt(r.below(0x4000)) : this.va()); // rip
        b.u64(40, BigInt(r.pick([0xe033, 0xe02b, 0xe030, 0x10, 3, r.below(0x10000)]))); // cs
        b.u64(56, r.chance(0.5) ? t.scratchVa + BigInt(t.scratchBytes) : this.va()); // rsp
        b.u64(64, BigInt(r.pick([0xe02b, 0xe033, 0, 3, r.below(0x10000)]))); // ss
        return { nr, args: [v(), v(), v(), v(), v()], stack: b.bytes };
      }
      case Hypercall.HYPERVISOR_vm_assist:
        return { nr, args: [BigInt(this.subOp(nr)), BigInt(r.chance(0.8) ? r.pick(VM_ASSISTS) : r.u32()), v(), v(), v()] };
      case Hypercall.HYPERVISOR_callback_op: {
        const b = this.struct(8 * (1 + r.below(4)));
        new DataView(b.buffer).setUint32(0, r.chance(0.8) ? r.pick(CALLBACK_TYPES) : r.u32(), true);
        return { nr, args: [BigInt(this.subOp(nr)), this.place(b), v(), v(), v()] };
      }
      case Hypercall.HYPERVISOR_console_io: {
        const count = r.chance(0.8) ? BigInt(r.below(64)) : this.count();
        return { nr, args: [BigInt(this.subOp(nr)), count, this.pointer(), v(), v()] };
      }
      case Hypercall.HYPERVISOR_event_channel_op_compat:
      case Hypercall.HYPERVISOR_physdev_op_compat:
        return { nr, args: [this.pointer(8 * (2 + r.below(6)), this.subOp(nr)), v(), v(), v(), v()] };
      case Hypercall.HYPERVISOR_grant_table_op:
        return { nr, args: [BigInt(this.subOp(nr)), this.pointer(), this.count(), v(), v()] };
      case Hypercall.HYPERVISOR_vcpu_op:
        return { nr, args: [BigInt(this.subOp(nr)), BigInt(r.chance(0.7) ? 0 : this.small()), this.pointer(), v(), v()] };
      case Hypercall.HYPERVISOR_sched_op_compat:
        // The compat form takes a plain argument (shutdown reason, poll none).
        return { nr, args: [BigInt(this.subOp(nr)), r.chance(0.5) ? BigInt(r.below(8)) : v(), v(), v(), v()] };
      default: {
        const sub = SUB_OPS.get(nr);
        if (sub) return { nr, args: [BigInt(this.subOp(nr)), r.chance(0.8) ? this.pointer() : v(), v(), v(), v()] };
        return { nr, args: [0, 1, 2, 3, 4].map(() => (r.chance(0.3) ? this.pointer() : v())) };
      }
    }
  }
}

/** The name the histogram uses for a hypercall number. */
export function hypercallName(nr: number): string {
  return HYPERCALLS.find((h) => h.nr === nr)?.name ?? `nr_${nr}`;
}
