// The KVM engine's vCPU: its kvm_run area (with KVM_CAP_SYNC_REGS) read
// and written in place, runs issued on a CPU thread (or the caller's),
// deadlines and kicks, special registers, MSRs, debug registers and the
// guest TSC. Arguments are checked here before they reach the addon.

import type { KvmAddon, VcpuThreadHandle } from '../../../native/index.js';
import { destroyed, EngineCallError, usage } from '../errors.js';
import {
  GPR_NAMES,
  type DebugRegisters, type DescriptorTable, type Exit, type RegisterFile, type Segment, type SpecialRegisters, type Vcpu,
} from '../types.js';
import { call } from './call.js';

const EINTR = 4;
/** IA32_TIME_STAMP_COUNTER. */
const MSR_TSC = 0x10;
const EAGAIN = 11;
/**
 * Iterations the core spins waiting for the CPU thread's exit before it
 * sleeps (about 100-200 us, like KVM's own halt polling).
 */
const CORE_SPINS = 100_000;
/** The CPU thread's control words (native/src/vcpu-thread.cc), and the state word's value once a run exited. */
const CTL = { REQUEST: 0, THREAD_SLEEPING: 1, STATE: 2, RESULT: 3 } as const;
const CTL_EXITED = 2;
/** hostTscPair: a window (TSC ticks) taken as tight (an undisturbed read takes 70-150 ticks here, a preempted one up to 36000 were seen), and reads tried for one. */
const TSC_PAIR_TIGHT = 1000;
const TSC_PAIR_TRIES = 5;

/**
 * What the vCPUs sharing a CPU thread (all a core thread's) must know of
 * each other: the one whose started run has not been taken by run().
 */
interface CpuThread {
  started: KvmVcpu | undefined;
}
/** Keyed by the CPU thread's control block, which its vCPUs share. */
const cpuThreads = new WeakMap<ArrayBuffer, CpuThread>();

/** A vCPU: its exits are decoded from kvm_run in place. */
export class KvmVcpu implements Vcpu {
  readonly regs: RegisterFile;
  /** Handle for kicking this vCPU from another thread (native `kick(handle)`). */
  readonly kickHandle: number;
  private readonly runArea: ArrayBuffer;
  private readonly view: DataView;
  private readonly L: Record<string, number>;
  private readonly K: Record<string, number>;
  private readonly sregsBuf: Uint8Array;
  /** sregsBuf holds the vCPU's current special registers (no run since they were read or written). */
  private sregsFresh = false;
  private readonly off: ExitOffsets;
  private readonly views = new Map<number, Uint8Array>();
  private lastView: Uint8Array = new Uint8Array(0);
  /** The addon's KVM_RUN, held directly: no lookup on the addon object per exit. */
  private readonly kvmRun: (fd: number) => number;
  /**
   * In 'thread' mode: this vCPU's place on the CPU thread, the CPU thread's
   * control block (shared by the core's vCPUs) and the value that asks it to
   * run this vCPU (see native/src/vcpu-thread.cc).
   */
  private readonly thread: { handle: VcpuThreadHandle; ctl: Int32Array; slot: number; cpu: CpuThread } | undefined;
  /** The result of a started run whose exit was taken early, because another vCPU of the CPU thread started (run() returns it). */
  private parked: number | undefined;
  private readonly ioExit: Mutable<Extract<Exit, { kind: 'io' }>> = { kind: 'io', direction: 'out', port: 0, size: 1, count: 0, data: new Uint8Array(0) };
  private readonly mmioExit: Mutable<Extract<Exit, { kind: 'mmio' }>> = { kind: 'mmio', address: 0, isWrite: false, data: new Uint8Array(0) };
  private fd: number;

  constructor(private readonly a: KvmAddon, readonly id: number, fd: number, runSize: number,
    readonly runMode: 'thread' | 'direct', private readonly onDestroy: () => void) {
    this.fd = fd;
    this.L = a.layout as Record<string, number>;
    this.K = a.constants as Record<string, number>;
    this.runArea = call(() => a.mmap(fd, runSize, 0));
    this.view = new DataView(this.runArea);
    this.sregsBuf = new Uint8Array(this.L.kvm_sregs!);
    this.off = exitOffsets(this.L);
    this.kvmRun = a.run;
    try {
      if (runMode === 'thread') {
        const t = call(() => a.vcpuThreadStart(fd, this.runArea));
        let cpu = cpuThreads.get(t.control);
        if (cpu === undefined) cpuThreads.set(t.control, cpu = { started: undefined });
        this.thread = { handle: t.handle, ctl: new Int32Array(t.control), slot: t.slot, cpu };
        this.kickHandle = t.kick;
      } else {
        this.thread = undefined;
        this.kickHandle = call(() => a.kickInit(this.runArea));
      }
    } catch (e) {
      a.munmap(this.runArea);
      throw e;
    }
    // KVM copies the general registers into kvm_run at every exit; seed the
    // area with the reset state so it is valid before the first run.
    this.view.setUint32(this.L['run.kvm_valid_regs']!, this.K.KVM_SYNC_X86_REGS!, true);
    call(() => a.getRegs(fd, new Uint8Array(this.runArea, this.L['run.s.regs']!, this.L.kvm_regs!)));
    this.regs = makeRegisterFile(this.view, this.L['run.s.regs']!, this.L['run.kvm_dirty_regs']!, this.K.KVM_SYNC_X86_REGS!);
  }

  /**
   * Runs the vCPU. The returned Exit (and its data bytes, which alias
   * kvm_run) is reused: it is valid until the next run(). Nothing is
   * allocated on this path once the exit kinds have been seen: every exit on
   * this host flushes the TLB, so each page the handler touches costs.
   */
  // Reading path 3: KVM_RUN (on the CPU thread, or here) and the exit decoded in place from kvm_run.
  run(): Exit {
    if (this.fd < 0) throw destroyed(`vCPU ${this.id}`);
    const t = this.thread;
    let r: number;
    if (t === undefined) {
      this.sregsFresh = false; // the guest may change them
      r = this.kvmRun(this.fd);
    } else if (this.parked !== undefined) {
      r = this.parked;
      this.parked = undefined;
    } else {
      if (t.cpu.started !== this) this.begin(t);
      r = this.finish(t);
    }
    const v = this.view;
    const o = this.off;
    if (r !== 0) {
      if (r !== -EINTR && r !== -EAGAIN) throw new EngineCallError('KVM_RUN', -r, `errno ${-r}`, `KVM_RUN failed with errno ${-r}`);
      v.setUint8(o.immediateExit, 0);
      return INTERRUPTED;
    }
    const K = this.K;
    const reason = v.getUint32(o.exitReason, true);
    if (reason === K.KVM_EXIT_IO) {
      const e = this.ioExit;
      e.size = v.getUint8(o.ioSize) as 1 | 2 | 4;
      e.count = v.getUint32(o.ioCount, true);
      e.direction = v.getUint8(o.ioDirection) === K.KVM_EXIT_IO_OUT ? 'out' : 'in';
      e.port = v.getUint16(o.ioPort, true);
      e.data = this.bytesAt(v.getUint32(o.ioDataOffset, true), e.size * e.count); // an offset within the kvm_run pages
      return e;
    }
    if (reason === K.KVM_EXIT_MMIO) {
      const e = this.mmioExit;
      e.address = v.getUint32(o.mmioAddr + 4, true) * 0x100000000 + v.getUint32(o.mmioAddr, true);
      e.isWrite = v.getUint8(o.mmioIsWrite) !== 0;
      e.data = this.bytesAt(o.mmioData, v.getUint32(o.mmioLen, true));
      return e;
    }
    return this.rareExit(reason);
  }

  get canStart(): boolean {
    return this.thread !== undefined;
  }

  start(): void {
    if (this.fd < 0) throw destroyed(`vCPU ${this.id}`);
    const t = this.thread;
    if (t === undefined) throw usage(`vCPU ${this.id} runs on the calling thread ('direct' mode): start() needs the CPU thread`);
    if (t.cpu.started === this || this.parked !== undefined) throw usage(`vCPU ${this.id} was started already: run() takes its exit`);
    this.begin(t);
  }

  /**
   * Hands one KVM_RUN to the CPU thread (its control words: CTL). A run
   * another vCPU started is taken first and kept for that vCPU.
   */
  private begin(t: NonNullable<KvmVcpu['thread']>): void {
    const other = t.cpu.started;
    if (other !== undefined) other.parked = other.finish(t);
    this.sregsFresh = false; // the guest may change them
    Atomics.store(t.ctl, CTL.REQUEST, t.slot);
    this.wakeCpuThread(t);
    t.cpu.started = this;
  }

  /** Waits for the started run's exit, spinning, then sleeping; returns KVM_RUN's result. */
  private finish(t: NonNullable<KvmVcpu['thread']>): number {
    const c = t.ctl;
    for (let spins = 0; Atomics.load(c, CTL.STATE) !== CTL_EXITED;) {
      if (++spins > CORE_SPINS) {
        this.a.vcpuThreadWait(t.handle);
        break;
      }
    }
    const r = Atomics.load(c, CTL.RESULT);
    Atomics.store(c, CTL.STATE, 0);
    t.cpu.started = undefined;
    return r;
  }

  private rareExit(reason: number): Exit {
    const K = this.K;
    const L = this.L;
    const v = this.view;
    switch (reason) {
      case K.KVM_EXIT_HLT: return { kind: 'halt' };
      case K.KVM_EXIT_SHUTDOWN: return { kind: 'shutdown' };
      case K.KVM_EXIT_INTR:
        v.setUint8(this.off.immediateExit, 0);
        return INTERRUPTED;
      case K.KVM_EXIT_INTERNAL_ERROR: {
        const n = Math.min(v.getUint32(L['run.internal.ndata']!, true), 16);
        const detail: bigint[] = [];
        for (let i = 0; i < n; i++) detail.push(v.getBigUint64(L['run.internal.data']! + 8 * i, true));
        return { kind: 'internal-error', suberror: v.getUint32(L['run.internal.suberror']!, true), detail };
      }
      case K.KVM_EXIT_FAIL_ENTRY:
        return { kind: 'entry-failed', reason: v.getBigUint64(L['run.fail_entry.reason']!, true) };
      default:
        return { kind: 'unknown', code: reason };
    }
  }

  /** A Uint8Array over kvm_run bytes, cached per (offset, length). */
  private bytesAt(offset: number, length: number): Uint8Array {
    const last = this.lastView;
    if (last.byteOffset === offset && last.length === length) return last;
    const key = offset * 65536 + length;
    let b = this.views.get(key);
    if (b === undefined) {
      if (offset + length > this.runArea.byteLength) throw new Error(`exit data ${offset}+${length} lies outside kvm_run`);
      b = new Uint8Array(this.runArea, offset, length);
      this.views.set(key, b);
    }
    this.lastView = b;
    return b;
  }

  getSpecialRegisters(): SpecialRegisters {
    if (this.fd < 0) throw destroyed(`vCPU ${this.id}`);
    call(() => this.a.getSregs(this.fd, this.sregsBuf));
    this.sregsFresh = true;
    return decodeSregs(new DataView(this.sregsBuf.buffer), this.L);
  }

  setSpecialRegisters(s: SpecialRegisters): void {
    if (this.fd < 0) throw destroyed(`vCPU ${this.id}`);
    // Keep fields this type does not carry (the interrupt bitmap) as they
    // are: sregsBuf holds them from the last getSpecialRegisters().
    if (!this.sregsFresh) call(() => this.a.getSregs(this.fd, this.sregsBuf));
    encodeSregs(new DataView(this.sregsBuf.buffer), this.L, s);
    call(() => this.a.setSregs(this.fd, this.sregsBuf));
  }

  getDebugRegisters(): DebugRegisters {
    if (this.fd < 0) throw destroyed(`vCPU ${this.id}`);
    const b = new Uint8Array(this.L.kvm_debugregs!);
    call(() => this.a.getDebugRegs(this.fd, b));
    const v = new DataView(b.buffer);
    const db = this.L['debugregs.db']!;
    return {
      db: [0, 1, 2, 3].map((i) => v.getBigUint64(db + 8 * i, true)) as DebugRegisters['db'],
      dr6: v.getBigUint64(this.L['debugregs.dr6']!, true), dr7: v.getBigUint64(this.L['debugregs.dr7']!, true),
    };
  }

  setDebugRegisters(d: DebugRegisters): void {
    if (this.fd < 0) throw destroyed(`vCPU ${this.id}`);
    const b = new Uint8Array(this.L.kvm_debugregs!); // flags and the reserved words zero
    const v = new DataView(b.buffer);
    const db = this.L['debugregs.db']!;
    d.db.forEach((x, i) => v.setBigUint64(db + 8 * i, BigInt.asUintN(64, x), true));
    v.setBigUint64(this.L['debugregs.dr6']!, BigInt.asUintN(64, d.dr6), true);
    v.setBigUint64(this.L['debugregs.dr7']!, BigInt.asUintN(64, d.dr7), true);
    call(() => this.a.setDebugRegs(this.fd, b));
  }

  getMsrs(indices: readonly number[]): bigint[] {
    if (this.fd < 0) throw destroyed(`vCPU ${this.id}`);
    const buf = this.msrBuffer(indices.map((i) => [i, 0n] as const));
    const n = call(() => this.a.getMsrs(this.fd, buf));
    if (n !== indices.length) throw usage(`MSR 0x${indices[n]!.toString(16)} cannot be read on this host`);
    const v = new DataView(buf.buffer);
    return indices.map((_, k) => v.getBigUint64(this.L['msrs.entries']! + k * this.L.kvm_msr_entry! + this.L['msr_entry.data']!, true));
  }

  setMsrs(entries: ReadonlyArray<readonly [number, bigint]>): void {
    if (this.fd < 0) throw destroyed(`vCPU ${this.id}`);
    const n = call(() => this.a.setMsrs(this.fd, this.msrBuffer(entries)));
    if (n !== entries.length) throw usage(`MSR 0x${entries[n]![0].toString(16)} = 0x${entries[n]![1].toString(16)} was refused by the host`);
  }

  /**
   * The guest TSC from the host's rdtsc plus the guest's TSC offset. Reading
   * the TSC MSR takes 10-50 us here (on the core thread, for a vCPU run by
   * another), so when it was read within that window is uncertain; the
   * host's rdtsc beside its clock is exact to well under a microsecond. The
   * offset is measured once, from MSR reads bracketed by host TSC reads: a
   * read inside its bracket means no offset (PVM runs CPL-3 rdtsc natively:
   * the guest's TSC is the host's), which ends it at the first read, as
   * domain creation pays for it; otherwise the tightest bracket of 7.
   */
  tscNow(): { tsc: bigint; hostNs: bigint } {
    if (this.fd < 0) throw destroyed(`vCPU ${this.id}`);
    const pair = this.tscPair;
    if (this.tscOffset === undefined) {
      let best: { offset: bigint; window: bigint } | undefined;
      for (let i = 0; i < 7; i++) {
        this.a.hostTscPair(pair);
        const before = pair[0]!;
        const [msr] = this.getMsrs([MSR_TSC]);
        this.a.hostTscPair(pair);
        const after = pair[0]!;
        if (msr! >= before && msr! <= after) {
          best = { offset: 0n, window: 0n };
          break;
        }
        const offset = msr! - (before + after) / 2n;
        if (!best || after - before < best.window) best = { offset, window: after - before };
      }
      this.tscOffset = best!.offset;
    }
    // A pair is as exact as its window (rdtsc on both sides of the clock
    // read) is short; a thread preempted inside it would be off by half the
    // preemption. The tightest of a few reads, stopping at a tight one.
    let tsc = 0n, hostNs = 0n, window = Infinity;
    for (let i = 0; i < TSC_PAIR_TRIES && window > TSC_PAIR_TIGHT; i++) {
      const w = this.a.hostTscPair(pair);
      if (w < window) {
        window = w;
        tsc = pair[0]!;
        hostNs = pair[1]!;
      }
    }
    return { tsc: BigInt.asUintN(64, tsc + this.tscOffset), hostNs };
  }
  private tscOffset: bigint | undefined;
  private readonly tscPair = new BigInt64Array(2);

  /** TSC frequency of this vCPU in kHz. */
  tscKhz(): number {
    if (this.fd < 0) throw destroyed(`vCPU ${this.id}`);
    return call(() => this.a.getTscKhz(this.fd));
  }

  setDeadline(ns: bigint | null): void {
    if (this.fd < 0) throw destroyed(`vCPU ${this.id}`);
    if (ns !== null && ns <= 0n) throw usage('a deadline must be a positive CLOCK_MONOTONIC time');
    // Every call arms the timer: which deadlines need arming again is the
    // scheduler's to know (Hypervisor.run keeps what it armed).
    call(() => this.a.setDeadline(this.kickHandle, ns ?? 0n));
  }

  prepareRun(): void {
    if (this.thread === undefined || this.fd < 0) return;
    // Woken, the CPU thread spins for its next run (for its spin budget).
    this.wakeCpuThread(this.thread);
  }

  /** Wakes the CPU thread if it sleeps (control word 1). */
  private wakeCpuThread(t: NonNullable<KvmVcpu['thread']>): void {
    if (Atomics.load(t.ctl, CTL.THREAD_SLEEPING) !== 0) this.a.vcpuThreadWake(t.handle);
  }

  kick(): void {
    if (this.fd < 0) throw destroyed(`vCPU ${this.id}`);
    call(() => this.a.kick(this.kickHandle));
  }

  /**
   * Teardown order: off the CPU thread (no KVM_RUN after), the kick
   * timer (no signal may touch kvm_run after), then kvm_run, then the fd.
   */
  destroy(): void {
    if (this.fd < 0) return;
    const t = this.thread;
    if (t !== undefined) {
      // A started run ends first: the CPU thread must not enter a vCPU being freed.
      if (t.cpu.started === this) {
        this.a.kick(this.kickHandle);
        this.finish(t);
      }
      this.parked = undefined;
      this.a.vcpuThreadStop(t.handle);
    }
    this.a.kickFree(this.kickHandle);
    this.a.munmap(this.runArea);
    this.a.close(this.fd);
    this.fd = -1;
    this.onDestroy();
  }

  private msrBuffer(entries: ReadonlyArray<readonly [number, bigint]>): Uint8Array {
    const L = this.L;
    const buf = new Uint8Array(L['msrs.entries']! + entries.length * L.kvm_msr_entry!);
    const v = new DataView(buf.buffer);
    v.setUint32(0, entries.length, true);
    entries.forEach(([index, value], k) => {
      const at = L['msrs.entries']! + k * L.kvm_msr_entry!;
      v.setUint32(at + L['msr_entry.index']!, index, true);
      v.setBigUint64(at + L['msr_entry.data']!, value, true);
    });
    return buf;
  }
}

type Mutable<T> = { -readonly [K in keyof T]: T[K] };

const INTERRUPTED: Exit = Object.freeze({ kind: 'interrupted' });

/** kvm_run offsets the exit path reads, as plain numbers (no lookups per exit). */
interface ExitOffsets {
  immediateExit: number; exitReason: number; ioDirection: number; ioSize: number; ioPort: number; ioCount: number;
  ioDataOffset: number; mmioAddr: number; mmioData: number; mmioLen: number; mmioIsWrite: number;
}

function exitOffsets(L: Record<string, number>): ExitOffsets {
  const at = (k: string): number => {
    const v = L[k];
    if (v === undefined) throw new Error(`the addon does not report the offset of ${k}`);
    return v;
  };
  return {
    immediateExit: at('run.immediate_exit'), exitReason: at('run.exit_reason'), ioDirection: at('run.io.direction'),
    ioSize: at('run.io.size'), ioPort: at('run.io.port'), ioCount: at('run.io.count'), ioDataOffset: at('run.io.data_offset'),
    mmioAddr: at('run.mmio.phys_addr'), mmioData: at('run.mmio.data'), mmioLen: at('run.mmio.len'), mmioIsWrite: at('run.mmio.is_write'),
  };
}

/**
 * The general registers in kvm_run's sync area: reads are in place, writes
 * mark them dirty for the next entry. One class whose accessors
 * live on the prototype, so every vCPU's register file has the same shape
 * and the same accessor functions: with per-object accessors (one closure
 * set per vCPU) the hypervisor's register reads went polymorphic as soon
 * as a second vCPU existed, and its hypercall path ran three times slower.
 */
class SyncRegisterFile {
  constructor(readonly view: DataView, readonly base: number, readonly dirtyOff: number, readonly dirtyBit: number) {}
}
GPR_NAMES.forEach((name, i) => {
  Object.defineProperty(SyncRegisterFile.prototype, name, {
    enumerable: true,
    get(this: SyncRegisterFile) { return this.view.getBigUint64(this.base + 8 * i, true); },
    set(this: SyncRegisterFile, v: bigint) {
      this.view.setBigUint64(this.base + 8 * i, BigInt.asUintN(64, v), true);
      this.view.setUint32(this.dirtyOff, this.view.getUint32(this.dirtyOff, true) | this.dirtyBit, true);
    },
  });
});

function makeRegisterFile(view: DataView, base: number, dirtyOff: number, dirtyBit: number): RegisterFile {
  return new SyncRegisterFile(view, base, dirtyOff, dirtyBit) as unknown as RegisterFile;
}

const SEGMENTS = ['cs', 'ds', 'es', 'fs', 'gs', 'ss', 'tr', 'ldt'] as const;
const CONTROL = [['cr0', 'cr0'], ['cr2', 'cr2'], ['cr3', 'cr3'], ['cr4', 'cr4'], ['cr8', 'cr8'], ['efer', 'efer'], ['apicBase', 'apic_base']] as const;

function decodeSregs(v: DataView, L: Record<string, number>): SpecialRegisters {
  const seg = (at: number): Segment => ({
    base: v.getBigUint64(at + L['segment.base']!, true),
    limit: v.getUint32(at + L['segment.limit']!, true),
    selector: v.getUint16(at + L['segment.selector']!, true),
    type: v.getUint8(at + L['segment.type']!),
    present: v.getUint8(at + L['segment.present']!) !== 0,
    dpl: v.getUint8(at + L['segment.dpl']!),
    db: v.getUint8(at + L['segment.db']!) !== 0,
    s: v.getUint8(at + L['segment.s']!) !== 0,
    l: v.getUint8(at + L['segment.l']!) !== 0,
    g: v.getUint8(at + L['segment.g']!) !== 0,
    avl: v.getUint8(at + L['segment.avl']!) !== 0,
    unusable: v.getUint8(at + L['segment.unusable']!) !== 0,
  });
  const dt = (at: number): DescriptorTable => ({ base: v.getBigUint64(at + L['dtable.base']!, true), limit: v.getUint16(at + L['dtable.limit']!, true) });
  const s = { gdt: dt(L['sregs.gdt']!), idt: dt(L['sregs.idt']!) } as SpecialRegisters;
  for (const name of SEGMENTS) s[name] = seg(L[`sregs.${name}`]!);
  for (const [key, c] of CONTROL) s[key] = v.getBigUint64(L[`sregs.${c}`]!, true);
  return s;
}

function encodeSregs(v: DataView, L: Record<string, number>, s: SpecialRegisters): void {
  for (const name of SEGMENTS) {
    const at = L[`sregs.${name}`]!;
    const g = s[name];
    v.setBigUint64(at + L['segment.base']!, g.base, true);
    v.setUint32(at + L['segment.limit']!, g.limit, true);
    v.setUint16(at + L['segment.selector']!, g.selector, true);
    v.setUint8(at + L['segment.type']!, g.type);
    v.setUint8(at + L['segment.present']!, +g.present);
    v.setUint8(at + L['segment.dpl']!, g.dpl);
    v.setUint8(at + L['segment.db']!, +g.db);
    v.setUint8(at + L['segment.s']!, +g.s);
    v.setUint8(at + L['segment.l']!, +g.l);
    v.setUint8(at + L['segment.g']!, +g.g);
    v.setUint8(at + L['segment.avl']!, +g.avl);
    v.setUint8(at + L['segment.unusable']!, +g.unusable);
  }
  for (const [name, d] of [['gdt', s.gdt], ['idt', s.idt]] as const) {
    v.setBigUint64(L[`sregs.${name}`]! + L['dtable.base']!, d.base, true);
    v.setUint16(L[`sregs.${name}`]! + L['dtable.limit']!, d.limit, true);
  }
  for (const [key, c] of CONTROL) v.setBigUint64(L[`sregs.${c}`]!, s[key], true);
}

