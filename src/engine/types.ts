// The execution-engine interface: what the hypervisor core needs from
// whatever runs guest code (KVM now, a software CPU later). Neutral types
// only; nothing here knows about /dev/kvm.

/** A segment register as the CPU caches it. */
export interface Segment {
  base: bigint;
  limit: number;
  selector: number;
  /** Descriptor type field (4 bits). */
  type: number;
  present: boolean;
  dpl: number;
  /** Default operation size (32-bit) for code, big for data. */
  db: boolean;
  /** Code or data segment (not a system segment). */
  s: boolean;
  /** 64-bit code segment. */
  l: boolean;
  /** Granularity: limit in 4 KiB units. */
  g: boolean;
  avl: boolean;
  unusable: boolean;
}

export interface DescriptorTable {
  base: bigint;
  limit: number;
}

/** Control and segment state. */
export interface SpecialRegisters {
  cs: Segment; ds: Segment; es: Segment; fs: Segment; gs: Segment; ss: Segment; tr: Segment; ldt: Segment;
  gdt: DescriptorTable;
  idt: DescriptorTable;
  cr0: bigint; cr2: bigint; cr3: bigint; cr4: bigint; cr8: bigint; efer: bigint; apicBase: bigint;
}

export const GPR_NAMES = [
  'rax', 'rbx', 'rcx', 'rdx', 'rsi', 'rdi', 'rsp', 'rbp',
  'r8', 'r9', 'r10', 'r11', 'r12', 'r13', 'r14', 'r15', 'rip', 'rflags',
] as const;
export type GprName = (typeof GPR_NAMES)[number];

/**
 * The general registers of a vCPU, read and written in place (no copy, no
 * system call): valid after every exit, written back at the next entry.
 */
export type RegisterFile = Record<GprName, bigint>;

/** Why run() returned. */
export type Exit =
  /** Port I/O. For `out`, `data` holds what the guest wrote; for `in`, fill `data` before the next run. */
  | { kind: 'io'; direction: 'in' | 'out'; port: number; size: 1 | 2 | 4; count: number; data: Uint8Array }
  /** An access to guest-physical memory with no backing, or a write to read-only memory. For a read, fill `data`. */
  | { kind: 'mmio'; address: number; isWrite: boolean; data: Uint8Array }
  /** hlt at CPL 0. */
  | { kind: 'halt' }
  /** Triple fault or similar: the vCPU cannot continue. */
  | { kind: 'shutdown' }
  /** Stopped by a deadline or a kick before or during guest execution. */
  | { kind: 'interrupted' }
  /** The engine could not emulate or enter the guest. */
  | { kind: 'internal-error'; suberror: number; detail: bigint[]; /** The engine's own account, where it has one. */ message?: string }
  | { kind: 'entry-failed'; reason: bigint }
  | { kind: 'unknown'; code: number };

export type ExitKind = Exit['kind'];

export interface MemoryChunk {
  /** Offset of the chunk within the machine memory. */
  readonly base: number;
  readonly size: number;
  /** The bytes, shared with the guest: no copy either way. */
  readonly buffer: ArrayBuffer;
  readonly bytes: Uint8Array;
  readonly view: DataView;
}

/**
 * Machine memory: one address space for all domains, in chunks (one
 * ArrayBuffer cannot cover an arbitrarily large memory).
 */
export interface MachineMemory {
  readonly size: number;
  readonly chunkSize: number;
  readonly chunks: readonly MemoryChunk[];
  /** The chunk holding machine byte `addr`. */
  chunkAt(addr: number): MemoryChunk;
  /**
   * Makes [offset, offset+length) read as zeros (page aligned). An engine
   * may give the memory back to the host until it is touched again, which
   * is cheaper than writing zeros.
   */
  discard(offset: number, length: number): void;
  /**
   * Makes every VM that maps [offset, offset+length) (page aligned) forget
   * the translations it cached to those bytes; contents are kept. This is
   * the targeted TLB shootdown: after the host rewrites a page-table entry,
   * forgetting its old target is enough for the guest to see the new one.
   * KVM: madvise(MADV_DONTNEED) on the shared mapping, whose MMU notifier
   * zaps KVM's entries for those pages (a few µs a call).
   */
  forgetTranslations(offset: number, length: number): void;
  close(): void;
}

export interface MemoryRegion {
  /** Memory slot number, unique within the VM. */
  slot: number;
  /** Guest-physical address, page aligned. */
  guestPhys: number;
  memory: MachineMemory;
  /** Offset into the machine memory, page aligned; the region stays within one chunk. */
  offset: number;
  /** Bytes, a multiple of the page size. */
  size: number;
  /** Guest writes exit as MMIO writes and leave memory unchanged. */
  readonly?: boolean;
  /** Track pages the guest writes (see VirtualMachine.dirtyPages). */
  logDirty?: boolean;
}

/** The debug registers: breakpoint addresses DR0-DR3, status DR6, control DR7. */
export interface DebugRegisters {
  db: [bigint, bigint, bigint, bigint];
  dr6: bigint;
  dr7: bigint;
}

export interface Vcpu {
  readonly id: number;
  /** Instructions this vCPU has retired, where the engine counts them (the software engine does; KVM does not). */
  readonly retired?: number;
  getDebugRegisters(): DebugRegisters;
  setDebugRegisters(d: DebugRegisters): void;
  /** General registers, in place. */
  readonly regs: RegisterFile;
  getSpecialRegisters(): SpecialRegisters;
  setSpecialRegisters(s: SpecialRegisters): void;
  getMsrs(indices: readonly number[]): bigint[];
  /** The guest TSC's frequency in kHz (its rate against CLOCK_MONOTONIC). */
  tscKhz(): number;
  setMsrs(entries: ReadonlyArray<readonly [number, bigint]>): void;
  /**
   * The guest TSC and the CLOCK_MONOTONIC time (ns, as process.hrtime) it
   * was read at, as close together as the engine can (what a PV clock is
   * built from).
   */
  tscNow(): { tsc: bigint; hostNs: bigint };
  /**
   * Run until an exit, the deadline or a kick. After start(), waits for
   * that run's exit instead.
   */
  run(): Exit;
  /**
   * Whether start() is available: the engine runs this vCPU on a thread of
   * its own, so the caller can go on with other work while it runs.
   */
  readonly canStart: boolean;
  /**
   * Begins a run and returns at once; the next run() takes its exit.
   * Between the two, only kick() and setDeadline() may be called on this
   * vCPU (its registers belong to the running guest), and destroy(), which
   * kicks it and waits. Starting another vCPU of the same engine thread
   * first waits for this run's exit (kept for this vCPU's run()).
   */
  start(): void;
  /** Stop run() at this CLOCK_MONOTONIC time (ns, as process.hrtime.bigint()); null cancels. */
  setDeadline(ns: bigint | null): void;
  /** Stop run() now, or at its next entry if not running. Safe from other threads via kickHandle. */
  kick(): void;
  /**
   * A hint: run() is likely to be called within about a millisecond, so
   * make it start fast (the KVM engine wakes its CPU thread, which then
   * waits for the run spinning instead of asleep). Optional for engines.
   */
  prepareRun?(): void;
  destroy(): void;
}

export interface VirtualMachine {
  mapMemory(region: MemoryRegion): void;
  unmapMemory(slot: number): void;
  /** Page indices (within the slot) written by the guest since the last call. */
  dirtyPages(slot: number): number[];
  /**
   * Makes this VM's vCPUs re-read guest page tables from memory at their
   * next entry. Needed after the host (not the guest) changed page tables
   * the guest has used: an engine may cache translations it derived from
   * them (KVM's shadow paging does, and does not see host writes).
   */
  dropCachedTranslations(): void;
  createVcpu(id: number): Vcpu;
  destroy(): void;
}

export interface EngineInfo {
  name: string;
  apiVersion: number;
  /** Where vCPUs run: on a CPU thread of the engine's ('thread'), or on the caller's ('direct'). */
  runMode?: 'thread' | 'direct';
  /** Capabilities the engine relies on, with the value the host reports. */
  capabilities: Record<string, number>;
}

/** CPUID output registers. */
export type CpuidResult = readonly [eax: number, ebx: number, ecx: number, edx: number];

export interface Engine {
  readonly name: string;
  info(): EngineInfo;
  /**
   * What CPUID leaf `leaf` (sub-leaf `subleaf`) gives on the CPU this
   * engine runs guests on, before any policy: the raw material of the
   * CPUID a hypervisor shows its guests. Zeros for a leaf it does not have.
   */
  cpuid(leaf: number, subleaf: number): CpuidResult;
  createMemory(size: number, opts?: { chunkSize?: number; name?: string }): MachineMemory;
  createVm(): VirtualMachine;
  close(): void;
}

export const PAGE_SIZE = 4096;
