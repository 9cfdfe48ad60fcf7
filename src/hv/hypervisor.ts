// The hypervisor core: one machine (machine memory, frame table, M2P, the
// hypervisor's shared frames, the hypercall table) and the domains built on
// it. Single-threaded: it owns all state, runs vCPUs through the engine in
// quanta and returns to the event loop between quanta so the process stays
// responsive (signals, output, timers).

import type { Engine, MachineMemory } from '../engine/types.js';
import { buildDomain } from './domain/builder.js';
import { Domain, type DomainEnd } from './domain/domain.js';
import { parseGuestKernel } from './domain/elf.js';
import { kernelImage } from './domain/kernel-image.js';
import { FrameTable, PAGE_SIZE } from './mm/frames.js';
import type { HypercallTable } from './hypercalls/table.js';
import { createHypercallTable } from './hypercalls/index.js';
import { M2P_ALT_VIRT_START, M2P_VIRT_START, MAX_VCPUS, XenSpace, type PerDomainSpace } from './mm/xen-space.js';
import { PageTypes } from './mm/page-types.js';
import { DomainTranslations, engineCache, TranslationMarks } from './mm/tlb.js';
import { SystemClock } from './sched/time.js';
import { PvCpuidPolicy } from './cpu/cpuid-policy.js';
import type { GrantWorld } from './mm/grant-map.js';
import { Scheduler, type RunOptions } from './sched/run-loop.js';
import { XenstoreServer } from './xenstore/requests.js';
import { FvDomain, type FvDomainOptions } from './fv/fv-domain.js';
import { realHostClock } from './sched/host-clock.js';

export { CAP_RANGE, DEFAULT_WEIGHT, inRange, WEIGHT_RANGE, type RunOptions } from './sched/run-loop.js';
export { MAX_VCPUS } from './mm/xen-space.js';
import type { HostClock } from './sched/host-clock.js';
import { BuildError } from './domain/builder.js';
import { syscallStaysAtCpl3, upperHalfSlot256Usable } from '../engine/host-probe.js';

export interface MachineOptions {
  /** Machine memory in bytes (all domains plus the hypervisor's own frames). */
  memoryBytes: number;
  /** Whether `syscall` stays at CPL 3 on this host; probed when not given. */
  syscallAtCpl3?: boolean;
  /** Whether guests can use L4 slot 256 (Xen's M2P address) on this host; probed when not given. */
  slot256Usable?: boolean;
  /** The host's clock (default: the real one; tests give a VirtualClock). */
  hostClock?: HostClock;
}

export interface DomainOptions {
  name?: string;
  memoryBytes: number;
  cmdline?: string;
  initrd?: Uint8Array;
  /**
   * Receives what the domain's console shows (`xl console`): its PV
   * console ring, or its console_io output if it never uses the ring.
   * Each line once.
   */
  console?: (bytes: Uint8Array) => void;
  /** Receives every console_io write as it comes (the hypervisor's log, `xl dmesg`). */
  log?: (bytes: Uint8Array) => void;
  /** vCPUs (1 to MAX_VCPUS, default 1): vCPU 0 boots, the guest brings the others up (VCPUOP_initialise, VCPUOP_up). */
  vcpus?: number;
}

/** The domain ids Xen leaves to guests: 1 to DOMID_FIRST_RESERVED - 1 (0 is the control domain). */
const FIRST_DOMID = 1;
const LAST_DOMID = 0x7fef;

/** Frames the hypervisor keeps for itself beyond the M2P (shared tables, IDT, stubs). */
const XEN_RESERVE_FRAMES = 64;

/** Machine memory a single-domain run needs for a domain of `domainBytes`. */
export function machineBytesFor(domainBytes: number): number {
  const frames = Math.ceil(domainBytes / PAGE_SIZE) + 1 + 32 + XEN_RESERVE_FRAMES;
  // The M2P takes 8 bytes per machine frame.
  const total = frames + Math.ceil(((frames + 1024) * 8) / PAGE_SIZE) + 1024;
  return Math.ceil((total * PAGE_SIZE) / (1 << 21)) * (1 << 21);
}

export class Hypervisor {
  readonly memory: MachineMemory;
  readonly frames: FrameTable;
  readonly xen: XenSpace;
  readonly hypercalls: HypercallTable;
  readonly domains = new Map<number, Domain>();
  /** The page-type system: every guest page table is validated by it. */
  readonly pageTypes: PageTypes;
  /** Where guests read the M2P: Xen's address, or its second mapping where the host reserves slot 256. */
  readonly m2pVirt: bigint;
  private readonly perDomain = new Map<number, PerDomainSpace>();
  /** Each domain's stale-translation tracker, from the start of its build. */
  private readonly tlbs = new Map<number, DomainTranslations>();
  private readonly marks: TranslationMarks;
  /** The machine's grants, as grant operations see every domain. */
  readonly grantWorld: GrantWorld;
  /** What CPUID tells every guest: Xen's PV view of this host's CPU. */
  readonly cpuid: PvCpuidPolicy;
  /** System time, shared by every domain. */
  readonly clock: SystemClock;
  /** XenStore, served to every domain on its store ring (paravane is the toolstack, domain 0). */
  readonly xenstore = new XenstoreServer();
  private readonly scheduler: Scheduler;
  /** Domains in fv-trap mode (plain kernels, trapped and emulated), beside the PV ones. */
  readonly fvDomains = new Map<number, FvDomain>();
  private readonly hostNow: () => bigint;
  private nextDomid = FIRST_DOMID;
  private closed = false;

  constructor(private readonly engine: Engine, opts: MachineOptions) {
    this.clock = new SystemClock(opts.hostClock);
    const host = opts.hostClock ?? realHostClock;
    this.hostNow = () => host.now();
    this.scheduler = new Scheduler(this.clock, (d) => this.destroyDomain(d));
    const caps = engine.info().capabilities;
    this.cpuid = new PvCpuidPolicy((leaf, sub) => engine.cpuid(leaf, sub), { fsgsbase: caps['cr4-fsgsbase'] === 1, compatMode: caps['compat-mode'] === 1 });
    this.memory = engine.createMemory(opts.memoryBytes);
    try {
      this.frames = new FrameTable(this.memory);
      // How `syscall` behaves decides the syscall stub (one probe guest, ~1 ms).
      this.xen = new XenSpace(this.frames, opts.syscallAtCpl3 ?? syscallStaysAtCpl3(engine));
      this.m2pVirt = opts.slot256Usable ?? upperHalfSlot256Usable(engine) ? M2P_VIRT_START : M2P_ALT_VIRT_START;
      this.hypercalls = createHypercallTable();
      this.pageTypes = new PageTypes(this.frames, (mfn, domid) => {
        const pd = this.perDomain.get(domid);
        if (!pd) throw new Error(`no hypervisor area for domain ${domid}`);
        this.xen.fillReservedL4(mfn, pd);
      }, {
        typeTaken: (mfn, type) => this.tlbs.get(this.frames.owner[mfn]!)?.typeTaken(mfn, type),
        tableValidated: (mfn) => this.tlbs.get(this.frames.owner[mfn]!)?.tableValidated(mfn),
        // PT-18: a grant mapping overwritten or its table let go without an unmap crashes its domain, as on Xen.
        grantPteLost: (domid) => {
          const d = this.domains.get(domid);
          if (d?.running) d.crash('a grant mapping was overwritten, or its page table let go, without GNTTABOP_unmap_grant_ref');
        },
      });
      this.marks = new TranslationMarks(this.frames.count);
      this.grantWorld = {
        pt: this.pageTypes,
        grantsOf: (id) => this.domains.get(id)?.grants,
        mapsOf: (id) => this.domains.get(id)?.grantMaps,
        tlbOf: (id) => this.tlbs.get(id),
        domainIds: () => [...this.domains.keys()],
      };
    } catch (e) {
      this.memory.close();
      throw e;
    }
  }

  /** The id the next createDomain will give (when no domain is destroyed meanwhile). */
  peekNextDomid(): number {
    for (let i = 0, id = this.nextDomid; i <= LAST_DOMID - FIRST_DOMID; i++, id = id >= LAST_DOMID ? FIRST_DOMID : id + 1) {
      if (!this.domains.has(id) && !this.fvDomains.has(id)) return id;
    }
    throw new BuildError('every domain id is in use');
  }

  private allocateDomid(): number {
    const id = this.peekNextDomid();
    this.nextDomid = id >= LAST_DOMID ? FIRST_DOMID : id + 1;
    return id;
  }

  /**
   * Builds a domain from a kernel image: an ELF, or a bzImage holding one
   * (kernel-image.ts). Throws GuestElfError for a bad kernel and BuildError for options that cannot work; nothing is left
   * allocated after a failure.
   */
  createDomain(kernelFile: Uint8Array, opts: DomainOptions): Domain {
    if (this.closed) throw new Error('the hypervisor is closed');
    const image = kernelImage(kernelFile).elf;
    const kernel = parseGuestKernel(image);
    const vcpus = opts.vcpus ?? 1;
    if (!Number.isInteger(vcpus) || vcpus < 1 || vcpus > MAX_VCPUS) throw new BuildError(`a domain has 1 to ${MAX_VCPUS} vCPUs, not ${vcpus}`);
    const id = this.allocateDomid();
    const perDomain = this.xen.buildPerDomain(vcpus);
    let built: ReturnType<typeof buildDomain> | undefined;
    let vm: ReturnType<Engine['createVm']> | undefined;
    // The tracker exists before the build so that the boot tables are
    // marked as tables the engine may cache; it has nothing to flush
    // until the VM exists.
    const tlb = new DomainTranslations(engineCache({ dropCachedTranslations: () => vm?.dropCachedTranslations() }, this.memory), this.marks);
    try {
      this.perDomain.set(id, perDomain);
      this.tlbs.set(id, tlb);
      built = buildDomain(this.pageTypes, id, kernel, image, opts);
      vm = this.engine.createVm();
      for (const [slot, c] of this.memory.chunks.entries()) {
        vm.mapMemory({ slot, guestPhys: c.base, memory: this.memory, offset: c.base, size: c.size });
      }
      const d = new Domain({
        id, name: opts.name ?? `domain-${id}`, frames: this.frames, memory: built.memory, perDomain, vm,
        layout: built.layout, hypercalls: this.hypercalls, pageTypes: this.pageTypes, m2pVirt: this.m2pVirt, console: opts.console ?? (() => {}), log: opts.log, tlb,
        lookupEvents: (domid) => this.domains.get(domid)?.events, clock: this.clock, cpuid: this.cpuid, grantWorld: this.grantWorld,
        xenstore: this.xenstore,
      });
      this.domains.set(id, d);
      return d;
    } catch (e) {
      vm?.destroy();
      built?.memory.destroy();
      perDomain.release();
      this.perDomain.delete(id);
      this.tlbs.delete(id);
      throw e;
    }
  }

  /**
   * Builds an fv-trap domain from a plain kernel (an ELF entered in long
   * mode at its entry point: src/hv/fv/fv-domain.ts). Throws GuestElfError
   * for a bad image, RangeError for a size that cannot work.
   */
  createFvDomain(kernelFile: Uint8Array, opts: FvDomainOptions): FvDomain {
    if (this.closed) throw new Error('the hypervisor is closed');
    const image = kernelImage(kernelFile).elf;
    const id = this.allocateDomid();
    const d = new FvDomain({ frames: this.frames, memory: this.memory, xen: this.xen, createVm: () => this.engine.createVm(), now: this.hostNow }, id, opts.name ?? `domain-${id}`, image, opts);
    this.fvDomains.set(id, d);
    return d;
  }

  /** Destroys an fv-trap domain; returns the frames freed. */
  destroyFvDomain(d: FvDomain): number {
    this.fvDomains.delete(d.id);
    return d.destroy();
  }

  /** The clock fv-trap domains run on (ns). */
  get now(): () => bigint {
    return this.hostNow;
  }

  /** Destroys a domain and forgets it; returns the frames freed. */
  destroyDomain(d: Domain): number {
    const n = d.destroy();
    this.domains.delete(d.id);
    this.perDomain.delete(d.id);
    this.tlbs.delete(d.id);
    return n;
  }

  /**
   * Runs a domain until it ends (then destroys it) or is paused: see
   * Scheduler.run (src/hv/sched/run-loop.ts).
   */
  run(d: Domain, opts: RunOptions = {}): Promise<DomainEnd | { kind: 'paused' }> {
    return this.scheduler.run(d, opts);
  }

  /** Destroys every domain and releases the machine. */
  close(): void {
    if (this.closed) return;
    for (const d of [...this.domains.values()]) this.destroyDomain(d);
    for (const d of [...this.fvDomains.values()]) this.destroyFvDomain(d);
    this.xen.release();
    this.memory.close();
    this.closed = true;
  }
}
