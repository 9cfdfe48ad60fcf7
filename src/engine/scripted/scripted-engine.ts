// The scripted engine: an engine over plain memory that runs no guest code
// of its own. A test (or the fuzzer) is the guest: on each run() it acts
// through a ScriptedCpu (sets registers, writes memory, issues a hypercall
// through one of the transports, raises an exception) and the CPU returns
// the exit real hardware would. What the CPU itself does around the guest
// is modelled from the machine's own tables: exceptions are delivered
// through the IDT onto the TSS's ring-0 stack (so the hypervisor finds the
// frame where it does on KVM), and the hypervisor's own stubs (the ring-0
// exception stubs' iretq, the hypercall page's ret, the LSTAR stub's
// return, the wait stub) are executed when the vCPU resumes in them. It
// makes the core testable on any machine, deterministically; KVM stays the
// integration test. Inputs: trusted (tests).

import { createPlainMemory } from '../plain-memory.js';
import { destroyed, usage } from '../errors.js';
import {
  GPR_NAMES, type CpuidResult, type DebugRegisters, type Engine, type EngineInfo, type Exit, type MachineMemory, type MemoryRegion, type RegisterFile, type Segment,
  type SpecialRegisters, type Vcpu, type VirtualMachine,
} from '../types.js';
import { ScriptedCpu } from './scripted-cpu.js';

/** What the guest does in one run: acts on the CPU and returns the exit that ends the run. */
export type GuestStep = (cpu: ScriptedCpu) => Exit;

const SEG0: Segment = { base: 0n, limit: 0, selector: 0, type: 0, present: false, dpl: 0, db: false, s: false, l: false, g: false, avl: false, unusable: true };

/** The guest TSC rate the scripted CPU reports (1 GHz: a tick is a nanosecond). */
export const SCRIPTED_TSC_KHZ = 1_000_000;

/**
 * The CPUID of the scripted CPU unless a test gives its own: an x86-64 AMD
 * processor as the development host reports itself (family 19h), with the
 * features a PV policy must hide (VME, PSE, PGE, MTRR, MCE, APIC, MONITOR,
 * XSAVE/OSXSAVE, PCID, FSGSBASE, INVPCID, 1 GiB pages, SVM) present, so that
 * hiding them is visible.
 */
export const DEFAULT_CPUID: ReadonlyMap<string, CpuidResult> = new Map<string, CpuidResult>([
  ['0:0', [0xd, 0x68747541, 0x444d4163, 0x69746e65]], // "AuthenticAMD" (ebx, edx, ecx)
  ['1:0', [0x00a00f11, 0x00020800, 0xfef8320b, 0x178bfbff]],
  ['7:0', [0, 0x219c97a9, 0x0040068c, 0x00000010]],
  ['d:0', [0x7, 0x340, 0x380, 0]],
  ['80000000:0', [0x80000008, 0x68747541, 0x444d4163, 0x69746e65]],
  ['80000001:0', [0x00a00f11, 0x40000000, 0x75c237ff, 0x2fd3fbff]],
  ['80000008:0', [0x3030, 0x0, 0x1, 0]],
]);

export class ScriptedEngine implements Engine {
  readonly name = 'scripted';
  /** CPUID by "leaf:subleaf" in hex (DEFAULT_CPUID unless a test sets its own). */
  cpuidTable: ReadonlyMap<string, CpuidResult> = DEFAULT_CPUID;

  cpuid(leaf: number, subleaf: number): CpuidResult {
    // Leaves whose sub-leaf selects the output; the others ignore it.
    const indexed = [0x4, 0x7, 0xb, 0xd, 0xf, 0x10, 0x12, 0x14, 0x8000001d].includes(leaf);
    return this.cpuidTable.get(`${leaf.toString(16)}:${(indexed ? subleaf : 0).toString(16)}`) ?? [0, 0, 0, 0];
  }
  private memory: MachineMemory | undefined;
  readonly vms: ScriptedVm[] = [];
  /**
   * The host clock the CPUs read (ns, as process.hrtime.bigint): deadlines
   * and the TSC follow it. Tests set it; by default it is the real clock.
   */
  now: () => bigint = () => process.hrtime.bigint();
  /** Called for each `pause` the CPU executes in a spin loop (a test's clock moves on here; the real one does by itself). */
  onPause: () => void = () => {};
  /** Whether the CPU faults every guest access in L4 slot 256, as kvm_pvm does (the M2P at Xen's address is then unreachable). */
  slot256Faults = false;

  info(): EngineInfo {
    return { name: this.name, apiVersion: 1, capabilities: {} };
  }

  createMemory(size: number, opts: { chunkSize?: number } = {}): MachineMemory {
    this.memory = createPlainMemory(size, opts.chunkSize);
    return this.memory;
  }

  createVm(): VirtualMachine {
    const vm = new ScriptedVm(this);
    this.vms.push(vm);
    return vm;
  }

  /** The machine memory the engine made (one per engine). */
  get machine(): MachineMemory {
    if (!this.memory) throw usage('the scripted engine has no memory yet');
    return this.memory;
  }

  close(): void {
    for (const vm of this.vms.splice(0)) vm.destroy();
  }
}

export class ScriptedVm implements VirtualMachine {
  readonly vcpus: ScriptedVcpu[] = [];
  /** dropCachedTranslations calls (the scripted CPU caches nothing). */
  drops = 0;
  dead = false;
  private readonly regions = new Map<number, MemoryRegion>();

  constructor(readonly engine: ScriptedEngine) {}

  mapMemory(region: MemoryRegion): void {
    if (this.dead) throw destroyed('the VM');
    if (region.guestPhys !== region.offset) throw usage('the scripted engine maps machine memory at its own addresses only');
    this.regions.set(region.slot, region);
  }

  unmapMemory(slot: number): void {
    this.regions.delete(slot);
  }

  dirtyPages(): number[] {
    return [];
  }

  dropCachedTranslations(): void {
    this.drops++;
  }

  createVcpu(id: number): ScriptedVcpu {
    if (this.dead) throw destroyed('the VM');
    const v = new ScriptedVcpu(id, this);
    this.vcpus.push(v);
    return v;
  }

  destroy(): void {
    this.dead = true;
    for (const v of this.vcpus) v.destroy();
  }
}

export class ScriptedVcpu implements Vcpu {
  readonly regs: RegisterFile = Object.fromEntries(GPR_NAMES.map((n) => [n, 0n])) as RegisterFile;
  readonly canStart = false;
  private sregs: SpecialRegisters = {
    cs: SEG0, ds: SEG0, es: SEG0, fs: SEG0, gs: SEG0, ss: SEG0, tr: SEG0, ldt: SEG0,
    gdt: { base: 0n, limit: 0 }, idt: { base: 0n, limit: 0 },
    cr0: 0n, cr2: 0n, cr3: 0n, cr4: 0n, cr8: 0n, efer: 0n, apicBase: 0n,
  };
  readonly msrs = new Map<number, bigint>();
  /** The guest: one step per run, in order. */
  readonly steps: GuestStep[] = [];
  /** What the guest does once its steps are used up (undefined: the script has ended, a test bug). */
  loop: GuestStep | undefined;
  /** Every exit returned, in order (for tests). */
  readonly exits: Exit[] = [];
  readonly cpu: ScriptedCpu;
  deadline: bigint | null = null;
  private kicked = false;
  dead = false;

  constructor(readonly id: number, readonly vm: ScriptedVm) {
    this.cpu = new ScriptedCpu(this, vm.engine);
  }

  /** Queues what the guest does in its next runs. */
  script(...steps: GuestStep[]): this {
    this.steps.push(...steps);
    return this;
  }

  getSpecialRegisters(): SpecialRegisters {
    return structuredClone(this.sregs);
  }

  setSpecialRegisters(s: SpecialRegisters): void {
    this.sregs = structuredClone(s);
  }

  /** The special registers in place (the scripted CPU's own view). */
  get special(): SpecialRegisters {
    return this.sregs;
  }

  /** The debug registers as set (the scripted CPU raises no #DB of its own). */
  debug: DebugRegisters = { db: [0n, 0n, 0n, 0n], dr6: 0xffff0ff0n, dr7: 0x400n };

  getDebugRegisters(): DebugRegisters {
    return structuredClone(this.debug);
  }

  setDebugRegisters(d: DebugRegisters): void {
    this.debug = structuredClone(d);
  }

  getMsrs(indices: readonly number[]): bigint[] {
    return indices.map((i) => this.msrs.get(i) ?? 0n);
  }

  setMsrs(entries: ReadonlyArray<readonly [number, bigint]>): void {
    for (const [i, v] of entries) this.msrs.set(i, v);
  }

  tscKhz(): number {
    return SCRIPTED_TSC_KHZ;
  }

  tscNow(): { tsc: bigint; hostNs: bigint } {
    const hostNs = this.vm.engine.now();
    return { tsc: hostNs, hostNs };
  }

  /**
   * One run: the CPU finishes the hypervisor stub it resumes in, then, unless
   * a kick or the deadline stops it first, the guest takes its next step.
   */
  run(): Exit {
    if (this.dead) throw destroyed('the vCPU');
    const exit = this.runOnce();
    this.exits.push(exit);
    return exit;
  }

  private runOnce(): Exit {
    const stub = this.cpu.resume();
    if (stub) return stub;
    if (this.kicked || (this.deadline !== null && this.vm.engine.now() >= this.deadline)) {
      this.kicked = false;
      return { kind: 'interrupted' };
    }
    return this.nextStep();
  }

  /** The guest's next step (the script ending is a test bug). */
  nextStep(): Exit {
    const step = this.steps.shift() ?? this.loop;
    if (!step) throw new Error(`scripted vCPU ${this.id}: the guest's script ended (rip 0x${this.regs.rip.toString(16)})`);
    return step(this.cpu);
  }

  start(): void {
    throw usage('the scripted engine runs vCPUs on the caller\'s thread (canStart is false)');
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
