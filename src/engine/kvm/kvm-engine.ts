// The KVM engine: machine memory as memfd-backed ArrayBuffers, VMs, vCPUs
// whose kvm_run area (with KVM_CAP_SYNC_REGS) is read and written in place,
// deadlines and kicks. Arguments are checked here before they reach the
// addon; the addon checks again and reports failures with errno.

import { availableParallelism } from 'node:os';
import type { KvmAddon, VcpuThreadHandle } from '../../../native/index.js';
import {
  destroyed, EngineCallError, EngineUnavailableError, fromNative, usage,
} from '../errors.js';
import {
  GPR_NAMES, PAGE_SIZE,
  type CpuidResult, type DebugRegisters, type DescriptorTable, type Engine, type EngineInfo, type Exit, type MachineMemory, type MemoryChunk,
  type MemoryRegion, type RegisterFile, type Segment, type SpecialRegisters, type Vcpu, type VirtualMachine,
} from '../types.js';
import { loadAddon } from './native.js';

const KVM_API_VERSION = 12;
const DEFAULT_CHUNK = 1 << 30;
/** The guest-physical page dropCachedTranslations maps briefly (below 64 GiB); its slot is the host's last. */
const FLUSH_GPA = 0xfffff0000;
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

export interface KvmEngineOptions {
  /** Path of the KVM device. */
  path?: string;
  /**
   * Issue KVM_RUN from the core thread's CPU thread ('thread') or from the
   * caller's thread ('direct'). Default: 'thread' when the host has two or
   * more CPUs. See native/src/vcpu-thread.cc for why.
   */
  runMode?: 'thread' | 'direct';
}

/** Capabilities the engine cannot work without. */
const REQUIRED_CAPS = ['KVM_CAP_USER_MEMORY', 'KVM_CAP_SYNC_REGS', 'KVM_CAP_IMMEDIATE_EXIT', 'KVM_CAP_READONLY_MEM'] as const;
/** Capabilities reported by info() and `paravane doctor`. */
const REPORTED_CAPS = [...REQUIRED_CAPS, 'KVM_CAP_NR_MEMSLOTS', 'KVM_CAP_MAX_VCPUS', 'KVM_CAP_GET_TSC_KHZ',
  'KVM_CAP_VCPU_EVENTS', 'KVM_CAP_EXIT_HYPERCALL', 'KVM_CAP_DIRTY_LOG_RING', 'KVM_CAP_IOEVENTFD',
  'KVM_CAP_COALESCED_PIO', 'KVM_CAP_X86_USER_SPACE_MSR'] as const;

function call<T>(fn: () => T): T {
  try {
    return fn();
  } catch (e) {
    throw fromNative(e);
  }
}

function checkAligned(what: string, v: number): void {
  if (!Number.isSafeInteger(v) || v < 0 || v % PAGE_SIZE !== 0) throw usage(`${what} must be a non-negative multiple of ${PAGE_SIZE}, not ${v}`);
}

/** Opens /dev/kvm, turning the usual failures into instructions. */
function openKvm(a: KvmAddon, path: string): number {
  try {
    return a.open(path);
  } catch (e) {
    const errno = (e as { errno?: number }).errno;
    if (errno === 2) throw new EngineUnavailableError(`${path} does not exist: this host has no KVM (load the kvm module, or enable nested virtualization for this VM)`, e);
    if (errno === 13 || errno === 1) {
      throw new EngineUnavailableError(`${path} exists but cannot be opened (permission denied): add your user to its group (\`sudo usermod -aG kvm $USER\`, then log in again) or run as root`, e);
    }
    throw new EngineUnavailableError(`cannot open ${path}: ${(e as Error).message}`, e);
  }
}

export class KvmEngine implements Engine {
  readonly name = 'kvm';
  private readonly a: KvmAddon;
  private fd: number;
  private readonly runSize: number;
  /** The highest memory-slot id, reserved for dropCachedTranslations. */
  private readonly flushSlot: number;
  private readonly vms = new Set<KvmVm>();

  readonly runMode: 'thread' | 'direct';

  constructor(opts: KvmEngineOptions | string = {}) {
    const o = typeof opts === 'string' ? { path: opts } : opts;
    const path = o.path ?? '/dev/kvm';
    this.runMode = o.runMode ?? (availableParallelism() >= 2 ? 'thread' : 'direct');
    this.a = loadAddon();
    this.fd = openKvm(this.a, path);
    const c = this.a.constants;
    let version: number;
    try {
      version = this.a.getApiVersion(this.fd);
    } catch (e) {
      this.a.close(this.fd);
      throw new EngineUnavailableError(`${path} is not a KVM device (${(e as Error).message})`, e);
    }
    if (version !== KVM_API_VERSION) {
      this.a.close(this.fd);
      throw new EngineUnavailableError(`KVM API version ${version} is not the ${KVM_API_VERSION} this engine speaks`);
    }
    for (const cap of REQUIRED_CAPS) {
      const v = call(() => this.a.checkExtension(this.fd, c[cap]!));
      const ok = cap === 'KVM_CAP_SYNC_REGS' ? (v & c.KVM_SYNC_X86_REGS!) !== 0 : v > 0;
      if (!ok) {
        this.a.close(this.fd);
        throw new EngineUnavailableError(`the host's KVM lacks ${cap}, which the engine needs`);
      }
    }
    this.runSize = call(() => this.a.getVcpuMmapSize(this.fd));
    // KVM_CAP_NR_MEMSLOTS is the number of slot ids (0 if the host does not say: KVM's old 32).
    const slots = call(() => this.a.checkExtension(this.fd, c.KVM_CAP_NR_MEMSLOTS!));
    this.flushSlot = (slots > 0 ? slots : 32) - 1;
  }

  /** KVM_GET_SUPPORTED_CPUID, read once: what KVM can give a vCPU of this host. */
  private supportedCpuid: Array<{ fn: number; index: number; flags: number; regs: CpuidResult }> | undefined;

  cpuid(leaf: number, subleaf: number): CpuidResult {
    this.live();
    if (!this.supportedCpuid) {
      const L = this.a.layout;
      const entries = L['cpuid2.entries']!, size = L['kvm_cpuid_entry2']!, max = 256;
      const buf = new Uint8Array(entries + size * max);
      const v = new DataView(buf.buffer);
      v.setUint32(0, max, true);
      call(() => this.a.getSupportedCpuid(this.fd, buf));
      const n = v.getUint32(0, true);
      this.supportedCpuid = Array.from({ length: n }, (_, i) => {
        const at = entries + i * size;
        const u = (o: number) => v.getUint32(at + o, true);
        // struct kvm_cpuid_entry2: function, index, flags, eax, ebx, ecx, edx.
        return { fn: u(0), index: u(4), flags: u(8), regs: [u(12), u(16), u(20), u(24)] as const };
      });
    }
    const KVM_CPUID_FLAG_SIGNIFCANT_INDEX = 1;
    const e = this.supportedCpuid.find((x) => x.fn === leaf && (!(x.flags & KVM_CPUID_FLAG_SIGNIFCANT_INDEX) || x.index === subleaf));
    return e ? e.regs : [0, 0, 0, 0];
  }

  info(): EngineInfo {
    this.live();
    const capabilities: Record<string, number> = {};
    for (const cap of REPORTED_CAPS) capabilities[cap] = call(() => this.a.checkExtension(this.fd, this.a.constants[cap]!));
    return { name: this.name, apiVersion: call(() => this.a.getApiVersion(this.fd)), runMode: this.runMode, capabilities };
  }

  createMemory(size: number, opts: { chunkSize?: number; name?: string } = {}): MachineMemory {
    this.live();
    checkAligned('memory size', size);
    if (size === 0) throw usage('memory size must be positive');
    const chunkSize = opts.chunkSize ?? DEFAULT_CHUNK;
    checkAligned('chunk size', chunkSize);
    return new KvmMemory(this.a, size, chunkSize, opts.name ?? 'paravane-machine-memory');
  }

  createVm(): VirtualMachine {
    this.live();
    const vm = new KvmVm(this.a, call(() => this.a.createVm(this.fd, 0)), this.runSize, this.runMode, this.flushSlot, () => this.vms.delete(vm));
    this.vms.add(vm);
    return vm;
  }

  close(): void {
    if (this.fd < 0) return;
    for (const vm of [...this.vms]) vm.destroy();
    this.a.close(this.fd);
    this.fd = -1;
  }

  private live(): void {
    if (this.fd < 0) throw destroyed('the KVM engine');
  }
}

class KvmMemory implements MachineMemory {
  readonly chunks: MemoryChunk[] = [];
  private fd: number;

  constructor(private readonly a: KvmAddon, readonly size: number, readonly chunkSize: number, name: string) {
    this.fd = call(() => a.memfdCreate(name, size));
    try {
      for (let base = 0; base < size; base += chunkSize) {
        const len = Math.min(chunkSize, size - base);
        const buffer = call(() => a.mmap(this.fd, len, base));
        this.chunks.push({ base, size: len, buffer, bytes: new Uint8Array(buffer), view: new DataView(buffer) });
      }
    } catch (e) {
      this.close();
      throw e;
    }
  }

  chunkAt(addr: number): MemoryChunk {
    const c = this.chunks[Math.floor(addr / this.chunkSize)];
    if (!c || addr < 0 || addr >= this.size) throw usage(`machine address ${addr} is outside the ${this.size}-byte memory`);
    return c;
  }

  discard(offset: number, length: number): void {
    if (this.fd < 0) throw destroyed('this memory');
    checkAligned('offset', offset);
    checkAligned('length', length);
    if (offset + length > this.size) throw usage(`range ${offset}+${length} is outside the ${this.size}-byte memory`);
    if (length) call(() => this.a.punchHole(this.fd, offset, length));
  }

  forgetTranslations(offset: number, length: number): void {
    if (this.fd < 0) throw destroyed('this memory');
    checkAligned('offset', offset);
    checkAligned('length', length);
    if (offset + length > this.size) throw usage(`range ${offset}+${length} is outside the ${this.size}-byte memory`);
    for (let at = offset; at < offset + length;) {
      const c = this.chunkAt(at);
      const end = Math.min(offset + length, c.base + c.size);
      call(() => this.a.dontNeed(c.buffer, at - c.base, end - at));
      at = end;
    }
  }

  close(): void {
    if (this.fd < 0) return;
    for (const c of this.chunks) if (c.buffer.byteLength) this.a.munmap(c.buffer);
    this.a.close(this.fd);
    this.fd = -1;
  }
}

interface SlotInfo { pages: number; logDirty: boolean }

class KvmVm implements VirtualMachine {
  private readonly slots = new Map<number, SlotInfo>();
  private readonly vcpus = new Map<number, KvmVcpu>();
  /** Some mapped chunk: host memory for dropCachedTranslations' slot. */
  private anyChunk: MemoryChunk | undefined;
  private fd: number;

  /** `flushSlot`: the highest slot id, kept for dropCachedTranslations. */
  constructor(private readonly a: KvmAddon, fd: number, private readonly runSize: number,
    private readonly runMode: 'thread' | 'direct', private readonly flushSlot: number, private readonly onDestroy: () => void) {
    this.fd = fd;
  }

  mapMemory(r: MemoryRegion): void {
    this.live();
    checkAligned('guestPhys', r.guestPhys);
    checkAligned('offset', r.offset);
    checkAligned('size', r.size);
    if (r.size === 0) throw usage('a memory region cannot be empty');
    if (!Number.isInteger(r.slot) || r.slot < 0 || r.slot >= this.flushSlot) throw usage(`slot ${r.slot} is not a valid slot number (0 to ${this.flushSlot - 1})`);
    if (r.guestPhys + r.size > FLUSH_GPA) throw usage(`region ${r.guestPhys}+${r.size} reaches the engine's reserved guest-physical page`);
    if (this.slots.has(r.slot)) throw usage(`slot ${r.slot} is already mapped`);
    const chunk = r.memory.chunkAt(r.offset);
    if (r.offset + r.size > chunk.base + chunk.size) throw usage(`region ${r.offset}+${r.size} crosses a memory chunk boundary`);
    const c = this.a.constants;
    const flags = (r.readonly ? c.KVM_MEM_READONLY! : 0) | (r.logDirty ? c.KVM_MEM_LOG_DIRTY_PAGES! : 0);
    const host = call(() => this.a.address(chunk.buffer, r.offset - chunk.base));
    call(() => this.a.setUserMemoryRegion(this.fd, r.slot, flags, r.guestPhys, r.size, host));
    this.slots.set(r.slot, { pages: r.size / PAGE_SIZE, logDirty: !!r.logDirty });
    this.anyChunk ??= chunk;
  }

  unmapMemory(slot: number): void {
    this.live();
    if (!this.slots.has(slot)) throw usage(`slot ${slot} is not mapped`);
    call(() => this.a.setUserMemoryRegion(this.fd, slot, 0, 0, 0, 0n));
    this.slots.delete(slot);
  }

  /**
   * KVM with shadow paging derives its page tables from the guest's and
   * write-protects the guest's; writes made from the host through the
   * memory mapping bypass that, so KVM keeps translating with stale
   * entries (neither an unchanged CR3 through KVM_SET_SREGS nor a CR0
   * change discards them). Deleting any memory slot makes KVM discard every
   * shadow page of the VM, so this adds and deletes a one-page slot aliasing
   * the first page of machine memory far above it (~0.2 ms, and the guest
   * then refaults what it touches).
   */
  dropCachedTranslations(): void {
    this.live();
    const chunk = this.anyChunk;
    if (!chunk) return; // no memory mapped: nothing can be cached
    const host = call(() => this.a.address(chunk.buffer, 0));
    call(() => this.a.setUserMemoryRegion(this.fd, this.flushSlot, 0, FLUSH_GPA, PAGE_SIZE, host));
    call(() => this.a.setUserMemoryRegion(this.fd, this.flushSlot, 0, 0, 0, 0n));
  }

  dirtyPages(slot: number): number[] {
    this.live();
    const s = this.slots.get(slot);
    if (!s) throw usage(`slot ${slot} is not mapped`);
    if (!s.logDirty) throw usage(`slot ${slot} was mapped without logDirty`);
    const bitmap = new Uint8Array(Math.ceil(s.pages / 64) * 8);
    call(() => this.a.getDirtyLog(this.fd, slot, bitmap));
    const pages: number[] = [];
    for (let i = 0; i < bitmap.length; i++) {
      const b = bitmap[i]!;
      if (b) for (let bit = 0; bit < 8; bit++) if (b & (1 << bit)) pages.push(i * 8 + bit);
    }
    return pages;
  }

  createVcpu(id: number): Vcpu {
    this.live();
    if (!Number.isInteger(id) || id < 0) throw usage(`vCPU id ${id} is not a non-negative integer`);
    if (this.vcpus.has(id)) throw usage(`vCPU ${id} already exists`);
    const fd = call(() => this.a.createVcpu(this.fd, id));
    let vcpu: KvmVcpu;
    try {
      vcpu = new KvmVcpu(this.a, id, fd, this.runSize, this.runMode, () => this.vcpus.delete(id));
    } catch (e) {
      this.a.close(fd);
      throw e;
    }
    this.vcpus.set(id, vcpu);
    return vcpu;
  }

  /**
   * Teardown order: vCPUs first (their kick timers, kvm_run mappings and
   * fds), then the VM fd, which releases the memory slots. Machine memory
   * belongs to its creator and is not freed here.
   */
  destroy(): void {
    if (this.fd < 0) return;
    for (const v of [...this.vcpus.values()]) v.destroy();
    this.a.close(this.fd);
    this.fd = -1;
    this.onDestroy();
  }

  private live(): void {
    if (this.fd < 0) throw destroyed('this VM');
  }
}

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
class KvmVcpu implements Vcpu {
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

export type { KvmVcpu };
