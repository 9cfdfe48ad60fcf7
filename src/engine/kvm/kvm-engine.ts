// The KVM engine: machine memory as memfd-backed ArrayBuffers, VMs, vCPUs
// whose kvm_run area (with KVM_CAP_SYNC_REGS) is read and written in place,
// deadlines and kicks. Arguments are checked here before they reach the
// addon; the addon checks again and reports failures with errno.

import { availableParallelism } from 'node:os';
import type { KvmAddon } from '../../../native/index.js';
import { destroyed, EngineUnavailableError, usage } from '../errors.js';
import {
  PAGE_SIZE,
  type CpuidResult, type Engine, type EngineInfo, type MachineMemory, type MemoryChunk, type MemoryRegion, type Vcpu, type VirtualMachine,
} from '../types.js';
import { loadAddon } from './native.js';
import { call } from './call.js';
import { KvmVcpu } from './kvm-vcpu.js';

const KVM_API_VERSION = 12;
const DEFAULT_CHUNK = 1 << 30;
/** The guest-physical page dropCachedTranslations maps briefly (below 64 GiB); its slot is the host's last. */
const FLUSH_GPA = 0xfffff0000;

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
