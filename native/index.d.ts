// Types of the paravane KVM addon (native/src). One function per ioctl or
// system call; no policy. Failures throw an Error with code 'ERR_KVM_CALL',
// `syscall` (the ioctl or call name), `errno` and `errnoName`; bad argument
// types throw a TypeError with code 'ERR_INVALID_ARG'.

export interface KvmLayout {
  readonly [name: string]: number;
}

export interface KvmConstants {
  readonly [name: string]: number;
}

/** Opaque handle of a vCPU's place on its CPU thread. */
export type VcpuThreadHandle = { readonly __vcpuThread: unique symbol };

export interface KvmAddon {
  /** open(path, O_RDWR | O_CLOEXEC): a file descriptor. */
  open(path: string): number;
  close(fd: number): void;
  getApiVersion(kvmFd: number): number;
  /** KVM_CHECK_EXTENSION: 0 if absent, else the capability's value. */
  checkExtension(fd: number, cap: number): number;
  getVcpuMmapSize(kvmFd: number): number;
  createVm(kvmFd: number, type: number): number;
  createVcpu(vmFd: number, id: number): number;
  setUserMemoryRegion(vmFd: number, slot: number, flags: number, guestPhys: number | bigint, size: number | bigint, hostAddr: bigint): void;
  /** Fills `bitmap` (one bit per page, a multiple of 8 bytes) and clears the log. */
  getDirtyLog(vmFd: number, slot: number, bitmap: Uint8Array): void;
  /** KVM_RUN: 0 on an exit (reason in kvm_run), -4 (EINTR) when kicked; other failures throw. */
  run(vcpuFd: number): number;
  getRegs(vcpuFd: number, out: Uint8Array): void;
  setRegs(vcpuFd: number, regs: Uint8Array): void;
  getSregs(vcpuFd: number, out: Uint8Array): void;
  setSregs(vcpuFd: number, sregs: Uint8Array): void;
  getFpu(vcpuFd: number, out: Uint8Array): void;
  setFpu(vcpuFd: number, fpu: Uint8Array): void;
  getVcpuEvents(vcpuFd: number, out: Uint8Array): void;
  setVcpuEvents(vcpuFd: number, events: Uint8Array): void;
  /** KVM_GET_DEBUGREGS / KVM_SET_DEBUGREGS: struct kvm_debugregs (db[4], dr6, dr7, flags). */
  getDebugRegs(vcpuFd: number, out: Uint8Array): void;
  setDebugRegs(vcpuFd: number, regs: Uint8Array): void;
  /** struct kvm_msrs + entries; returns how many entries were processed. */
  getMsrs(vcpuFd: number, msrs: Uint8Array): number;
  setMsrs(vcpuFd: number, msrs: Uint8Array): number;
  getTscKhz(vcpuFd: number): number;
  setTscKhz(vcpuFd: number, khz: number): number;
  /** Writes [host TSC, CLOCK_MONOTONIC ns] read at one instant; returns the read's window in TSC ticks. */
  hostTscPair(out: BigInt64Array): number;
  enableCap(fd: number, cap: Uint8Array): void;
  setCpuid2(vcpuFd: number, cpuid: Uint8Array): void;
  getSupportedCpuid(kvmFd: number, cpuid: Uint8Array): void;
  /** Frees [offset, offset+length) of a memfd (FALLOC_FL_PUNCH_HOLE): it reads as zeros afterwards. */
  punchHole(fd: number, offset: number | bigint, length: number | bigint): void;
  /** madvise(MADV_DONTNEED) on a page-aligned range of a buffer from mmap(): contents kept, KVM's translations to it dropped. */
  dontNeed(buffer: ArrayBuffer, offset: number | bigint, length: number | bigint): void;
  /** memfd_create + ftruncate: returns the fd. */
  memfdCreate(name: string, size: number | bigint): number;
  /** A MAP_SHARED read/write mapping of fd as an ArrayBuffer. */
  mmap(fd: number, size: number | bigint, offset: number | bigint): ArrayBuffer;
  /** Unmaps a buffer from mmap() now and detaches it. */
  munmap(buffer: ArrayBuffer): void;
  /** Host virtual address of buffer[offset]. */
  address(buffer: ArrayBuffer, offset?: number | bigint): bigint;
  /** Registers a kvm_run area for kicks to the calling thread; returns a handle. */
  kickInit(run: ArrayBuffer): number;
  kickFree(handle: number): void;
  /** Kick at CLOCK_MONOTONIC time `ns`; 0n cancels. */
  setDeadline(handle: number, ns: bigint): void;
  /** Kick now, from any thread. */
  kick(handle: number): void;
  readonly kickSignal: number;
  /**
   * Puts the vCPU on the calling thread's CPU thread, which issues KVM_RUN
   * for all of that thread's vCPUs (see native/src/vcpu-thread.cc).
   * `control` is the CPU thread's control block (the same buffer for all its
   * vCPUs); a run is asked for by writing `slot` to its word 0.
   */
  vcpuThreadStart(vcpuFd: number, run: ArrayBuffer): { handle: VcpuThreadHandle; control: ArrayBuffer; kick: number; slot: number };
  /** Wakes the vCPU's CPU thread if it sleeps. */
  vcpuThreadWake(handle: VcpuThreadHandle): void;
  /** Sleeps until the requested run has exited. */
  vcpuThreadWait(handle: VcpuThreadHandle): void;
  /** Takes the (idle) vCPU off its CPU thread. */
  vcpuThreadStop(handle: VcpuThreadHandle): void;
  /** CPU threads started: one per JavaScript thread that ran vCPUs. */
  vcpuThreadWorkers(): number;
  readonly layout: KvmLayout;
  readonly constants: KvmConstants;
}
