// The software engine: paravane's portable engine, for hosts without
// /dev/kvm. Each vCPU is a SoftCpu (an x86-64 interpreter) run on the
// caller's thread; machine memory is plain ArrayBuffers. It implements
// the same interface as the KVM engine, exits included, so the hypervisor
// core runs on it unchanged. It is slow (an interpreter) but needs nothing
// from the host, and it counts the instructions it retires.
//
// Its guest TSC runs at 1 GHz against CLOCK_MONOTONIC (a tick is a
// nanosecond). Its CPUID describes what the interpreter implements (see
// SOFT_CPUID), not the host's processor. Inputs: guest code (untrusted;
// see cpu.ts) and the core's calls (trusted).

import { createPlainMemory } from '../plain-memory.js';
import { destroyed, usage } from '../errors.js';
import {
  GPR_NAMES, type CpuidResult, type DebugRegisters, type Engine, type EngineInfo, type Exit, type MachineMemory, type MemoryRegion,
  type RegisterFile, type Segment, type SpecialRegisters, type Vcpu, type VirtualMachine,
} from '../types.js';
import { SoftCpu } from './cpu.js';
import { MAXPHYADDR, type PhysPage } from './paging.js';

/** Guest TSC rate: 1 GHz, so the TSC counts nanoseconds of host time. */
export const SOFT_TSC_KHZ = 1_000_000;

/** Instructions between two looks at the clock (for deadlines). */
const CLOCK_EVERY = 512;

const str = (s: string): number[] => [0, 4, 8].map((i) => s.charCodeAt(i) | (s.charCodeAt(i + 1) << 8) | (s.charCodeAt(i + 2) << 16) | (s.charCodeAt(i + 3) << 24));
const [VENDOR_B, VENDOR_D, VENDOR_C] = str('ParavaneSoft') as [number, number, number];

/**
 * What the software CPU reports: vendor "ParavaneSoft", family 6, and only
 * features it implements: leaf 1 EDX DE (2), TSC (4), MSR (5), CX8 (8), CMOV (15);
 * leaf 7 EBX FSGSBASE (0);
 * ECX CX16 (13), POPCNT (23), HYPERVISOR (31); extended EDX SYSCALL (11),
 * NX (20), RDTSCP (27), LM (29); ECX LAHF (0), ABM/LZCNT (5); 48-bit
 * virtual and MAXPHYADDR-bit physical addresses. No x87, no SSE.
 */
export const SOFT_CPUID: ReadonlyMap<string, CpuidResult> = new Map<string, CpuidResult>([
  ['0:0', [0x7, VENDOR_B, VENDOR_C, VENDOR_D]],
  ['1:0', [0x000606a0, 0x00010800, (1 << 13) | (1 << 23) | (1 << 31), (1 << 2) | (1 << 4) | (1 << 5) | (1 << 8) | (1 << 15)]],
  ['7:0', [0, 1 << 0, 0, 0]],
  ['80000000:0', [0x80000008, VENDOR_B, VENDOR_C, VENDOR_D]],
  ['80000001:0', [0, 0, (1 << 0) | (1 << 5), (1 << 11) | (1 << 20) | (1 << 27) | (1 << 29)]],
  ['80000008:0', [(48 << 8) | MAXPHYADDR, 0, 0, 0]],
]);

const SEG0: Segment = { base: 0n, limit: 0, selector: 0, type: 0, present: false, dpl: 0, db: false, s: false, l: false, g: false, avl: false, unusable: true };

export class SoftEngine implements Engine {
  readonly name = 'soft';
  /** Instructions retired by every vCPU this engine ran. */
  retired = 0;
  private readonly memories = new Set<MachineMemory>();
  private readonly vms = new Set<SoftVm>();
  private closed = false;

  info(): EngineInfo {
    // cr4-fsgsbase: CR4.FSGSBASE decides whether rd/wr fs/gs base work at CPL 3 (the hypervisor may offer the feature);
    // compat-mode: it runs 32-bit code under a 64-bit kernel.
    return { name: this.name, apiVersion: 1, runMode: 'direct', capabilities: { 'cr4-fsgsbase': 1, 'compat-mode': 1 } };
  }

  cpuid(leaf: number, subleaf: number): CpuidResult {
    const indexed = leaf === 7 || leaf === 0xd;
    return SOFT_CPUID.get(`${(leaf >>> 0).toString(16)}:${(indexed ? subleaf >>> 0 : 0).toString(16)}`) ?? [0, 0, 0, 0];
  }

  createMemory(size: number, opts: { chunkSize?: number } = {}): MachineMemory {
    if (this.closed) throw destroyed('the engine');
    const m = createPlainMemory(size, opts.chunkSize);
    // Host rewrites of page tables: every vCPU forgets what it derived from them.
    const vms = this.vms;
    const mem: MachineMemory = {
      ...m,
      chunkAt: (a) => m.chunkAt(a),
      discard: (o, l) => m.discard(o, l),
      close: () => m.close(),
      forgetTranslations(): void {
        for (const vm of vms) vm.dropCachedTranslations();
      },
    };
    this.memories.add(mem);
    return mem;
  }

  createVm(): SoftVm {
    if (this.closed) throw destroyed('the engine');
    const vm = new SoftVm(this, () => this.vms.delete(vm));
    this.vms.add(vm);
    return vm;
  }

  close(): void {
    this.closed = true;
    for (const vm of [...this.vms]) vm.destroy();
    this.memories.clear();
  }
}

interface Slot {
  region: MemoryRegion;
  dirty: Set<number>;
}

export class SoftVm implements VirtualMachine {
  private readonly slots = new Map<number, Slot>();
  readonly vcpus = new Set<SoftVcpu>();
  private dead = false;
  /** gfn -> page, filled on first use. */
  private readonly pages = new Map<number, PhysPage | null>();

  constructor(readonly engine: SoftEngine, private readonly onDestroy: () => void) {}

  mapMemory(region: MemoryRegion): void {
    if (this.dead) throw destroyed('the VM');
    if (region.guestPhys % 4096 || region.offset % 4096 || region.size % 4096 || region.size <= 0) throw usage('memory regions must be page aligned and not empty');
    for (const s of this.slots.values()) {
      const r = s.region;
      if (r.slot !== region.slot && region.guestPhys < r.guestPhys + r.size && r.guestPhys < region.guestPhys + region.size) throw usage(`memory slot ${region.slot} overlaps slot ${r.slot}`);
    }
    const chunk = region.memory.chunkAt(region.offset);
    if (region.offset + region.size > chunk.base + chunk.size) throw usage('a memory region must stay within one chunk of machine memory');
    this.slots.set(region.slot, { region, dirty: new Set() });
    this.remapped();
  }

  unmapMemory(slot: number): void {
    this.slots.delete(slot);
    this.remapped();
  }

  private remapped(): void {
    this.pages.clear();
    this.dropCachedTranslations();
  }

  dirtyPages(slot: number): number[] {
    const s = this.slots.get(slot);
    if (!s) throw usage(`no memory slot ${slot}`);
    const out = [...s.dirty].sort((a, b) => a - b);
    s.dirty.clear();
    return out;
  }

  dropCachedTranslations(): void {
    for (const v of this.vcpus) v.cpu.mmu.flush();
  }

  /** The page backing guest-physical frame `gfn`, if a slot does. */
  page(gfn: number): PhysPage | undefined {
    let p = this.pages.get(gfn);
    if (p === undefined) {
      p = null;
      const gpa = gfn * 4096;
      for (const s of this.slots.values()) {
        const r = s.region;
        if (gpa < r.guestPhys || gpa >= r.guestPhys + r.size) continue;
        const machine = r.offset + (gpa - r.guestPhys);
        const chunk = r.memory.chunkAt(machine);
        const index = (gpa - r.guestPhys) / 4096;
        const dirty = s.dirty;
        p = {
          bytes: chunk.bytes, view: chunk.view, off: machine - chunk.base, readonly: r.readonly === true, machine,
          onWrite: r.logDirty ? () => dirty.add(index) : undefined,
        };
        break;
      }
      this.pages.set(gfn, p);
    }
    return p ?? undefined;
  }

  createVcpu(id: number): SoftVcpu {
    if (this.dead) throw destroyed('the VM');
    const v = new SoftVcpu(id, this);
    this.vcpus.add(v);
    return v;
  }

  destroy(): void {
    if (this.dead) return;
    this.dead = true;
    for (const v of this.vcpus) v.destroy();
    this.onDestroy();
  }
}

export class SoftVcpu implements Vcpu {
  readonly regs: RegisterFile = Object.fromEntries(GPR_NAMES.map((n) => [n, 0n])) as RegisterFile;
  readonly canStart = false;
  readonly cpu: SoftCpu;
  private deadline: bigint | null = null;
  private kicked = false;
  private dead = false;

  constructor(readonly id: number, private readonly vm: SoftVm) {
    const sregs: SpecialRegisters = {
      cs: SEG0, ds: SEG0, es: SEG0, fs: SEG0, gs: SEG0, ss: SEG0, tr: SEG0, ldt: SEG0,
      gdt: { base: 0n, limit: 0xffff }, idt: { base: 0n, limit: 0xffff },
      cr0: 0x60000010n, cr2: 0n, cr3: 0n, cr4: 0n, cr8: 0n, efer: 0n, apicBase: 0xfee00900n,
    };
    this.cpu = new SoftCpu(sregs, (gfn) => vm.page(gfn), {
      cpuid: (leaf, sub) => vm.engine.cpuid(leaf, sub),
      tsc: () => process.hrtime.bigint(),
    });
    this.regs.rflags = 2n;
  }

  /** Instructions this vCPU has retired. */
  get retired(): number {
    return this.cpu.retired;
  }

  getSpecialRegisters(): SpecialRegisters {
    return structuredClone(this.cpu.sregs);
  }

  setSpecialRegisters(s: SpecialRegisters): void {
    Object.assign(this.cpu.sregs, structuredClone(s));
    this.cpu.syncCpl();
  }

  getDebugRegisters(): DebugRegisters {
    return structuredClone(this.cpu.debug);
  }

  setDebugRegisters(d: DebugRegisters): void {
    this.cpu.debug = structuredClone(d);
  }

  getMsrs(indices: readonly number[]): bigint[] {
    const s = this.cpu.sregs;
    return indices.map((i) => {
      if (i === 0xc0000100) return s.fs.base;
      if (i === 0xc0000101) return s.gs.base;
      if (i === 0xc0000080) return s.efer;
      if (i === 0x10) return process.hrtime.bigint();
      return this.cpu.msrs.get(i) ?? 0n;
    });
  }

  setMsrs(entries: ReadonlyArray<readonly [number, bigint]>): void {
    const s = this.cpu.sregs;
    for (const [i, v] of entries) {
      if (i === 0xc0000100) s.fs = { ...s.fs, base: v };
      else if (i === 0xc0000101) s.gs = { ...s.gs, base: v };
      else if (i === 0xc0000080) { s.efer = v; this.cpu.mmu.flush(); }
      else this.cpu.msrs.set(i, v);
    }
  }

  tscKhz(): number {
    return SOFT_TSC_KHZ;
  }

  tscNow(): { tsc: bigint; hostNs: bigint } {
    const hostNs = process.hrtime.bigint();
    return { tsc: hostNs, hostNs };
  }

  run(): Exit {
    if (this.dead) throw destroyed('the vCPU');
    const cpu = this.cpu, R = cpu.R, r = this.regs;
    // A kick or a passed deadline ends the run before it starts (a guest whose every run ends in an
    // exit within CLOCK_EVERY instructions must still be stopped at its deadline).
    if (this.kicked || (this.deadline !== null && process.hrtime.bigint() >= this.deadline)) {
      this.kicked = false;
      return { kind: 'interrupted' };
    }
    R[0] = r.rax; R[1] = r.rcx; R[2] = r.rdx; R[3] = r.rbx; R[4] = r.rsp; R[5] = r.rbp; R[6] = r.rsi; R[7] = r.rdi;
    R[8] = r.r8; R[9] = r.r9; R[10] = r.r10; R[11] = r.r11; R[12] = r.r12; R[13] = r.r13; R[14] = r.r14; R[15] = r.r15;
    cpu.rip = r.rip;
    cpu.setRflags(r.rflags);
    let exit: Exit | undefined;
    const deadline = this.deadline;
    const retired = cpu.retired;
    for (let n = 1; ; n++) {
      exit = cpu.step();
      if (exit) break;
      if (n % CLOCK_EVERY === 0) {
        if (this.kicked) { this.kicked = false; exit = { kind: 'interrupted' }; break; }
        if (deadline !== null && process.hrtime.bigint() >= deadline) { exit = { kind: 'interrupted' }; break; }
      }
    }
    r.rax = R[0]!; r.rcx = R[1]!; r.rdx = R[2]!; r.rbx = R[3]!; r.rsp = R[4]!; r.rbp = R[5]!; r.rsi = R[6]!; r.rdi = R[7]!;
    r.r8 = R[8]!; r.r9 = R[9]!; r.r10 = R[10]!; r.r11 = R[11]!; r.r12 = R[12]!; r.r13 = R[13]!; r.r14 = R[14]!; r.r15 = R[15]!;
    r.rip = cpu.rip;
    r.rflags = cpu.rflags();
    this.vm.engine.retired += cpu.retired - retired;
    return exit;
  }

  start(): void {
    throw usage("the software engine runs vCPUs on the caller's thread (canStart is false)");
  }

  setDeadline(ns: bigint | null): void {
    this.deadline = ns;
  }

  kick(): void {
    this.kicked = true;
  }

  destroy(): void {
    this.dead = true;
  }
}
