// A domain in fv-trap mode: a plain kernel (one written for a PC, not for
// Xen) run deprivileged at CPL 3 on the same engine and hypervisor frames
// as PV domains, by trap and emulation (fv-vcpu.ts), on shadow page tables
// (shadow.ts), with the PC devices it drives (pc.ts). It is booted as a
// 64-bit loader boots a kernel: the image at its physical addresses, a
// boot page table mapping guest RAM at 0 and at the image's link base
// (-2 GiB) with 2 MiB pages, long mode and paging on, at the ELF's entry
// point (the kit's plain kernels start there, in entry-pvh.S's
// start64_entry).
//
// Every exception the guest raises reaches the monitor through the
// hypervisor's IDT stubs (the same ones PV domains use): a page fault is
// a hidden fault (the shadow entry built), a guest page-table write
// (emulated) or the guest's own (delivered to it); a #GP is a privileged
// instruction (emulated) or the guest's; the rest go to the guest's IDT.
// The timer's IRQ 0 is injected when the virtual IF allows; the domain
// waits at hlt until its next tick. Inputs: the kernel image and the
// guest's behaviour (hostile): what the monitor cannot continue from ends
// the domain as a crash, with the reason; its frames all go back.

import type { Exit, MachineMemory, VirtualMachine, Vcpu } from '../../engine/types.js';
import { parseGuestKernel } from '../domain/elf.js';
import { hex } from '../format.js';
import { FrameError, type FrameTable } from '../mm/frames.js';
import { emulatePtStore } from '../mm/ptwr-decode.js';
import { hasErrorCode, HYPERVISOR_VIRT_END, HYPERVISOR_VIRT_START, LSTAR_VIRT, PerDomainSpace, STUB_SIZE, STUBS_VIRT, SYSCALL_PORT, type XenSpace } from '../mm/xen-space.js';
import { Ring0Stack, type FrameState } from '../cpu/guest-state.js';
import { setupVcpu } from '../cpu/setup.js';
import { FvFault, FvVcpu, GuestPageFault, type GuestFrame } from './fv-vcpu.js';
import { PcPlatform } from './pc.js';
import { GuestRam, ShadowTables, type Translation } from './shadow.js';

export type FvEnd = { kind: 'poweroff' } | { kind: 'reboot' } | { kind: 'crash'; reason: string } | { kind: 'killed'; reason: string };

export interface FvDomainOptions {
  name?: string;
  memoryBytes: number;
  /** Receives the serial port's output. */
  console?: (bytes: Uint8Array) => void;
  /** Shadow frames kept before every shadow is dropped (default 2048: 8 MiB). */
  shadowFrames?: number;
}

/** What a domain needs from the machine. */
export interface FvMachine {
  readonly frames: FrameTable;
  readonly memory: MachineMemory;
  readonly xen: XenSpace;
  createVm(): VirtualMachine;
  /** The domain's clock, ns (the engine's TSC counts the same time). */
  now(): bigint;
}

/** Counts for `--stats`. */
export interface FvCounts {
  exits: number;
  pageFaults: number;
  hiddenFaults: number;
  guestFaults: number;
  ptWrites: number;
  privileged: number;
  interrupts: number;
  syscalls: number;
}

const VIRT_BASE = 0xffffffff80000000n;
/** The boot tables the loader leaves in the last three pages of guest RAM. */
const BOOT_TABLE_PAGES = 3;
const MIB = 1 << 20;

export class FvDomain {
  readonly ram: GuestRam;
  readonly shadow: ShadowTables;
  readonly pc: PcPlatform;
  readonly cpu: FvVcpu;
  private readonly vm: VirtualMachine;
  private readonly engine: Vcpu;
  private readonly perDomain: PerDomainSpace;
  private readonly stack: Ring0Stack;
  end: FvEnd | undefined;
  /** Halted, waiting for an interrupt until this time (ns). */
  waitUntil: bigint | undefined;
  readonly counts: FvCounts = { exits: 0, pageFaults: 0, hiddenFaults: 0, guestFaults: 0, ptWrites: 0, privileged: 0, interrupts: 0, syscalls: 0 };
  private lastFault = { rip: 0n, cr2: 0n, n: 0 };
  private destroyed = false;

  constructor(private readonly m: FvMachine, readonly id: number, readonly name: string, kernelFile: Uint8Array, opts: FvDomainOptions) {
    const kernel = parseGuestKernel(kernelFile, 'plain');
    if (!Number.isInteger(opts.memoryBytes) || opts.memoryBytes < 4 * MIB || opts.memoryBytes > 1024 * MIB || opts.memoryBytes % MIB) {
      throw new RangeError(`an fv-trap domain has 4 to 1024 MiB of memory in whole MiB, not ${opts.memoryBytes} bytes`);
    }
    const pages = opts.memoryBytes / 4096;
    for (const s of kernel.segments) {
      if (s.paddr + BigInt(s.memSize) > BigInt((pages - BOOT_TABLE_PAGES) * 4096)) {
        throw new RangeError(`segment ${s.index} (physical ${hex(s.paddr)}+${hex(s.memSize)}) does not fit in ${opts.memoryBytes / MIB} MiB`);
      }
    }
    const ft = m.frames;
    const p2m = ft.allocateArray(id, pages);
    this.ram = new GuestRam(ft, p2m);
    this.perDomain = m.xen.buildPerDomain(1);
    let vm: VirtualMachine | undefined;
    let shadow: ShadowTables | undefined;
    try {
      // The image at its physical addresses (frames come zeroed: .bss is).
      for (const s of kernel.segments) {
        for (let done = 0; done < s.fileSize;) {
          const gpa = Number(s.paddr) + done;
          const n = Math.min(s.fileSize - done, 4096 - (gpa & 0xfff));
          ft.bytes(p2m[Math.floor(gpa / 4096)]!).set(kernelFile.subarray(s.fileOffset + done, s.fileOffset + done + n), gpa & 0xfff);
          done += n;
        }
      }
      const cr3 = this.bootTables(pages);
      vm = m.createVm();
      for (const [slot, c] of m.memory.chunks.entries()) vm.mapMemory({ slot, guestPhys: c.base, memory: m.memory, offset: c.base, size: c.size });
      this.vm = vm;
      this.shadow = shadow = new ShadowTables(this.ram, this.perDomain, () => vm!.dropCachedTranslations(), opts.shadowFrames ?? 2048);
      const out = opts.console ?? (() => {});
      this.pc = new PcPlatform(() => m.now(), (b) => out(Uint8Array.of(b)));
      this.engine = vm.createVcpu(0);
      this.cpu = new FvVcpu(this.engine, this.shadow, this.pc, () => this.loadRoot(), () => vm!.dropCachedTranslations(), cr3);
      setupVcpu(this.engine, 0, { rip: kernel.entry, rsp: 0n, rsi: 0n, cr3: BigInt(this.shadow.root(cr3, false)) << 12n });
      const at = PerDomainSpace.vcpuLayout(0);
      const page = this.perDomain.stackPage(0);
      this.stack = new Ring0Stack(new DataView(page.buffer, page.byteOffset, 4096), at.stackTop);
    } catch (e) {
      vm?.destroy();
      shadow?.release();
      this.perDomain.release();
      for (const mfn of p2m) ft.release(mfn);
      throw e;
    }
  }

  /** The loader's page tables: RAM at 0 and at VIRT_BASE, 2 MiB pages, in the last pages of RAM. Returns CR3. */
  private bootTables(pages: number): bigint {
    const [l4, l3, l2] = [pages - 3, pages - 2, pages - 1];
    const w = (gpfn: number, i: number, v: bigint): void => this.ram.write64(gpfn, i, v);
    const upper = (gpfn: number): bigint => (BigInt(gpfn) << 12n) | 0x23n; // P | RW | A
    w(l4, 0, upper(l3));
    w(l4, Number((VIRT_BASE >> 39n) & 0x1ffn), upper(l3));
    w(l3, 0, upper(l2));
    w(l3, Number((VIRT_BASE >> 30n) & 0x1ffn), upper(l2));
    for (let i = 0; i < Math.ceil(pages / 512); i++) w(l2, i, (BigInt(i) << 21n) | 0xe3n); // P | RW | A | D | PS
    return BigInt(l4) << 12n;
  }

  private loadRoot(): void {
    const s = this.engine.getSpecialRegisters();
    s.cr3 = BigInt(this.shadow.root(this.cpu.cr3, this.cpu.cpl === 3)) << 12n;
    this.engine.setSpecialRegisters(s);
    this.vm.dropCachedTranslations();
  }

  get running(): boolean {
    return this.end === undefined;
  }

  /** Instructions the engine retired for this domain, where it counts them. */
  get instructionsRetired(): number | undefined {
    return this.engine.retired;
  }

  crash(reason: string): void {
    this.end ??= { kind: 'crash', reason };
  }

  /**
   * Runs the domain until `until` (ns), its end, or a hlt with nothing to
   * deliver (then `waitUntil` says when its timer is next due).
   */
  runSlice(until: bigint): void {
    this.waitUntil = undefined;
    while (this.running) {
      const now = this.m.now();
      this.pc.poll(now);
      if (this.pc.power) return this.powerEvent();
      if (now >= until) return;
      const next = this.pc.nextTick;
      this.engine.setDeadline(next !== undefined && next < until ? next : until);
      const exit = this.engine.run();
      this.counts.exits++;
      try {
        if (!this.handle(exit)) return;
      } catch (e) {
        if (e instanceof FvFault) this.crash(e.message);
        else if (e instanceof FrameError && e.code === 'ERR_NO_MEMORY') this.crash(`the machine ran out of frames for shadow page tables: ${e.message}`);
        else throw e;
      }
    }
  }

  private powerEvent(): void {
    const p = this.pc.power!;
    this.end ??= p.kind === 'crash' ? { kind: 'crash', reason: p.reason } : p;
  }

  /** Handles one exit; false: stop running now (ended, or halted waiting). */
  private handle(exit: Exit): boolean {
    const r = this.engine.regs;
    switch (exit.kind) {
      case 'halt': {
        const frame = this.stack.stubFrame(r.rip, r.rsp);
        if (!frame) {
          if (r.rip >= LSTAR_VIRT && r.rip < LSTAR_VIRT + 4096n) throw new FvFault('the kernel used syscall, which enters ring 0 on this host: fv-trap needs a host where syscall stays at CPL 3');
          throw new FvFault(`the vCPU halted at ${hex(r.rip)} in the monitor`);
        }
        const vector = Number((r.rip - STUBS_VIRT) / BigInt(STUB_SIZE));
        const errorCode = hasErrorCode(vector) ? frame.frame.getBigUint64(frame.ripAt - 8, true) : undefined;
        const go = this.exception(frame, vector, errorCode);
        if (go && this.running) this.interrupt(frame);
        return go && this.running;
      }
      case 'io':
        if (exit.direction === 'out' && exit.port === SYSCALL_PORT && r.rip === LSTAR_VIRT + 2n) {
          this.counts.syscalls++;
          if (!this.cpu.syscall()) {
            r.rip = r.rcx; // back to the instruction after syscall ... which was #UD
            r.rip -= 2n;
            this.cpu.deliver(r, 6);
          }
        } else if (exit.direction === 'out') {
          this.pc.write(exit.port, exit.size, new DataView(exit.data.buffer, exit.data.byteOffset).getUint32(0, true) & (exit.size === 4 ? 0xffffffff : (1 << (8 * exit.size)) - 1));
        } else {
          const v = this.pc.read(exit.port, exit.size);
          for (let i = 0; i < exit.size; i++) exit.data[i] = (v >>> (8 * i)) & 0xff;
        }
        this.interrupt(r);
        return true;
      case 'interrupted':
        // Stopped by the deadline: in the guest's code the interrupt goes in now; in a stub, after its exception.
        if (this.engine.getSpecialRegisters().cs.dpl === 3) this.interrupt(r);
        return true;
      case 'shutdown':
        throw new FvFault(`the engine's CPU shut down (a triple fault in the monitor's path) at ${hex(r.rip)}`);
      case 'mmio':
        throw new FvFault(`${exit.isWrite ? 'write to' : 'read from'} machine address ${hex(exit.address)}`);
      case 'internal-error':
        throw new FvFault(exit.message ? `the engine stopped at rip ${hex(r.rip)}: ${exit.message}` : `the engine could not run the instruction at ${hex(r.rip)}`);
      case 'entry-failed':
        throw new FvFault(`the engine could not enter the guest (reason ${hex(exit.reason)})`);
      default:
        throw new FvFault(`unexpected exit ${exit.kind}`);
    }
  }

  /** An exception the guest raised, at `f`. False: the vCPU halts (waiting). */
  private exception(f: FrameState, vector: number, errorCode: bigint | undefined): boolean {
    if (vector === 14) return this.pageFault(f, this.engine.getSpecialRegisters().cr2, errorCode ?? 0n);
    if (vector === 13) {
      const wasShadowed = this.cpu.stiShadow;
      let o;
      try {
        o = this.cpu.emulate(f, errorCode ?? 0n);
      } catch (e) {
        if (!(e instanceof GuestPageFault)) throw e;
        this.cpu.cr2 = e.va;
        this.cpu.deliver(f, 14, BigInt(e.code));
        return true;
      }
      if (wasShadowed) this.cpu.stiShadow = false;
      if (o === undefined) {
        this.counts.guestFaults++;
        this.cpu.deliver(f, 13, errorCode);
        return true;
      }
      this.counts.privileged++;
      if (o === 'halt') return this.halt(f);
      if (typeof o === 'object') this.cpu.deliver(f, o.vector, FvVcpu.hasErrorCode(o.vector) ? o.errorCode : undefined);
      return true;
    }
    this.counts.guestFaults++;
    this.cpu.deliver(f, vector, errorCode);
    return true;
  }

  private pageFault(f: FrameState, cr2: bigint, errorCode: bigint): boolean {
    this.counts.pageFaults++;
    if (cr2 >= HYPERVISOR_VIRT_START && cr2 < HYPERVISOR_VIRT_END) {
      throw new FvFault(`the kernel touched ${hex(cr2)}, in the range the monitor keeps for itself (${hex(HYPERVISOR_VIRT_START)}-${hex(HYPERVISOR_VIRT_END)})`);
    }
    // The same fault again and again: the shadow does not give what the walk allows (a monitor bug, said rather than spun on).
    const last = this.lastFault;
    if (last.rip === f.rip && last.cr2 === cr2) {
      if (++last.n > 8) throw new FvFault(`the shadow page tables cannot resolve the fault at ${hex(cr2)} (rip ${hex(f.rip)}, error ${errorCode})`);
    } else Object.assign(last, { rip: f.rip, cr2, n: 0 });
    const access = { write: (errorCode & 2n) !== 0n, user: this.cpu.cpl === 3, fetch: (errorCode & 16n) !== 0n };
    const mode = this.cpu.walkMode;
    const t = this.shadow.walk(cr2, access, mode);
    if ('outside' in t) throw new FvFault(`the kernel's page tables lead to guest-physical ${hex(t.outside)}, outside its memory`);
    if ('fault' in t) {
      this.counts.guestFaults++;
      this.cpu.cr2 = cr2;
      this.cpu.deliver(f, 14, BigInt(t.fault));
      return true;
    }
    if (access.write && this.shadow.isTable(t.gpfn)) return this.tableWrite(f, cr2, t);
    this.counts.hiddenFaults++;
    const outside = this.shadow.fill(cr2, t, mode, access.user);
    if (outside !== undefined) throw new FvFault(`${hex(cr2)} maps guest-physical ${hex(BigInt(outside) << 12n)}, outside the domain's ${this.ram.pages / 256} MiB`);
    return true;
  }

  /** A store into one of the guest's page tables (write-protected): done here, and the shadows built from the entry cleared. */
  private tableWrite(f: FrameState, cr2: bigint, t: Translation): boolean {
    const r = this.engine.regs;
    const index = Number((cr2 & 0xfffn) >> 3n);
    let code: Uint8Array;
    try {
      code = this.cpu.read(f.rip, 15);
    } catch {
      code = this.cpu.read(f.rip, 4096 - Number(f.rip & 0xfffn));
    }
    const effect = emulatePtStore({ code, rip: f.rip, cr2, reg: (g) => (g === 'rsp' ? f.rsp : r[g]), old: this.ram.read64(t.gpfn, index), rflags: f.rflags });
    if (typeof effect === 'string') {
      // Not a store the emulator takes (a string instruction, an access across entries): drop every
      // shadow, so the page is an ordinary one again until it is next walked as a table.
      this.shadow.flush();
      this.loadRoot();
      return true;
    }
    this.counts.ptWrites++;
    this.shadow.counts.ptWrites++;
    if (effect.entry !== undefined) {
      this.ram.write64(t.gpfn, index, effect.entry);
      this.shadow.entryWritten(t.gpfn, index);
    }
    for (const [g, v] of effect.regs) {
      if (g === 'rsp') f.rsp = v; else r[g] = v;
    }
    f.rflags = effect.rflags;
    f.rip += BigInt(effect.length);
    return true;
  }

  /** hlt at virtual CPL 0 (rip already past it). False: wait for the next tick. */
  private halt(f: GuestFrame): boolean {
    if (!this.cpu.vif) throw new FvFault(`the kernel halted with interrupts off at ${hex(f.rip - 1n)}: it can never run again`);
    this.cpu.stiShadow = false;
    const pending = this.pc.pendingVector;
    if (pending !== undefined && pending >> 4 > this.cpu.tpr) return true; // interrupt() delivers it
    const next = this.pc.nextTick;
    if (next === undefined) throw new FvFault(`the kernel halted at ${hex(f.rip - 1n)} with no timer running: it would wait for ever`);
    this.waitUntil = next;
    return false;
  }

  /** Delivers a pending interrupt to the state at `f` if the virtual IF allows. */
  private interrupt(f: GuestFrame): void {
    if (!this.cpu.vif || this.cpu.stiShadow) return;
    const pending = this.pc.pendingVector;
    if (pending === undefined || pending >> 4 <= this.cpu.tpr) return; // none, or held by the task priority
    const vector = this.pc.acknowledge()!;
    this.counts.interrupts++;
    this.cpu.deliver(f, vector);
  }

  /** After a wait: the tick is due; the vCPU resumes past its hlt and takes it. */
  wake(now: bigint): void {
    this.pc.poll(now);
    this.waitUntil = undefined;
    const r = this.engine.regs;
    const frame = this.stack.stubFrame(r.rip, r.rsp);
    if (frame) this.interrupt(frame);
  }

  /** Gives back every frame: guest RAM, shadows, the hypervisor's area. Returns how many. */
  destroy(): number {
    if (this.destroyed) return 0;
    this.destroyed = true;
    this.vm.destroy();
    let n = this.shadow.release() + this.perDomain.release();
    for (const mfn of this.ram.p2m) {
      this.m.frames.release(mfn);
      n++;
    }
    return n;
  }
}

export interface FvRunOptions {
  /** Each domain's quantum, ns (default 2 ms). */
  quantumNs?: bigint;
  /** Ends every domain still running (killed, with the signal's reason). */
  signal?: AbortSignal;
  /** Kills the domains still running at this time (ns, on `now`'s clock). */
  deadline?: bigint;
  /** Called as each domain ends. */
  onEnd?: (d: FvDomain) => void;
}

/**
 * Runs fv-trap domains round-robin in quanta until each ends; a domain
 * halted at hlt is passed over until its tick is due, and when all are
 * halted the process sleeps until the first is.
 */
export async function runFvDomains(domains: readonly FvDomain[], now: () => bigint, opts: FvRunOptions = {}): Promise<void> {
  const quantum = opts.quantumNs ?? 2_000_000n;
  const reported = new Set<FvDomain>();
  const report = (): void => {
    for (const d of domains) {
      if (d.running || reported.has(d)) continue;
      reported.add(d);
      opts.onEnd?.(d);
    }
  };
  for (;;) {
    report();
    const live = domains.filter((d) => d.running);
    if (live.length === 0) return;
    if (opts.signal?.aborted) {
      for (const d of live) d.end = { kind: 'killed', reason: String(opts.signal.reason) };
      continue;
    }
    if (opts.deadline !== undefined && now() >= opts.deadline) {
      for (const d of live) d.end = { kind: 'killed', reason: 'the run timed out' };
      continue;
    }
    let ran = false;
    for (const d of live) {
      const t = now();
      if (d.waitUntil !== undefined) {
        if (t < d.waitUntil) continue;
        d.wake(t);
      }
      d.runSlice(opts.deadline !== undefined && opts.deadline < t + quantum ? opts.deadline : t + quantum);
      ran = true;
    }
    if (!ran) {
      let wake = live.reduce((m, d) => (d.waitUntil! < m ? d.waitUntil! : m), live[0]!.waitUntil!);
      if (opts.deadline !== undefined && opts.deadline < wake) wake = opts.deadline;
      const ms = Number((wake - now()) / 1_000_000n);
      await new Promise<void>((res) => {
        const t = setTimeout(res, Math.max(0, ms));
        opts.signal?.addEventListener('abort', () => { clearTimeout(t); res(); }, { once: true });
      });
    } else {
      await new Promise((res) => setImmediate(res));
    }
  }
}
