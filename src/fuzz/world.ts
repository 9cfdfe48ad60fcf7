// The machine the fuzzer runs on: a hypervisor on the scripted engine (no
// /dev/kvm), a victim domain that never runs, and the fuzz domain whose
// vCPU 0 the fuzzer plays through the scripted CPU; rebuilt when a call
// ends it. The production counterpart of test/support/scripted.ts. Inputs:
// the kernel image (trusted: paravane's own test guest).

import * as fs from 'node:fs';
import * as path from 'node:path';
import { ScriptedEngine, type ScriptedVcpu } from '../engine/scripted/scripted-engine.js';
import { PageFault, type ScriptedCpu } from '../engine/scripted/scripted-cpu.js';
import { Hypervisor, machineBytesFor } from '../hv/hypervisor.js';
import type { Domain } from '../hv/domain/domain.js';
import { parseGuestKernel } from '../hv/domain/elf.js';
import type { PvVcpu } from '../hv/cpu/vcpu.js';
import { PerDomainSpace } from '../hv/mm/xen-space.js';
import { OWNER_XEN } from '../hv/mm/frames.js';
import { VirtualClock } from '../hv/sched/host-clock.js';
import type { FuzzTargets } from './generate.js';

/** The test guest the fuzz and victim domains boot (built by `npm run build`). */
export const DEFAULT_KERNEL = path.resolve(import.meta.dirname, '../../test/guests/build/elf/minimal.elf');
const MIB = 1 << 20;
export const DOMAIN_BYTES = 4 * MIB;
/** The scratch area the generator lays structures in: 16 pages in the middle of the guest's mapping. */
const SCRATCH_PAGES = 16;

export interface FuzzDomain {
  readonly d: Domain;
  readonly vcpu: PvVcpu;
  readonly ev: ScriptedVcpu;
  readonly cpu: ScriptedCpu;
  /** Free frames before it was built: its destruction must give them all back. */
  readonly freeBefore: number;
}

export class FuzzWorld {
  readonly engine = new ScriptedEngine();
  readonly hv: Hypervisor;
  readonly victim: Domain;
  /** Free frames before any domain existed. */
  readonly initialFree: number;
  fuzz!: FuzzDomain;
  /**
   * The host clock of the fuzzer's machine, advanced by the runner a fixed
   * step per call: timers fall due at the same call on every run, so that
   * a seed and an index replay a finding.
   */
  readonly clock = new VirtualClock();

  constructor(readonly kernel: Uint8Array = fs.readFileSync(DEFAULT_KERNEL)) {
    this.engine.now = () => this.clock.now();
    this.hv = new Hypervisor(this.engine, {
      memoryBytes: 4 * machineBytesFor(DOMAIN_BYTES), syscallAtCpl3: true, slot256Usable: false, hostClock: this.clock,
    });
    this.initialFree = this.hv.frames.free;
    this.victim = this.hv.createDomain(kernel, { name: 'victim', memoryBytes: DOMAIN_BYTES });
    this.victim.start();
    this.buildFuzz();
  }

  /** Builds a fresh fuzz domain (the previous one must be destroyed first). */
  buildFuzz(): FuzzDomain {
    const freeBefore = this.hv.frames.free;
    // Two vCPUs: VCPUOP_initialise, up and down then have a vCPU besides the caller to act on.
    const d = this.hv.createDomain(this.kernel, { name: 'fuzz', memoryBytes: DOMAIN_BYTES, vcpus: 2 });
    d.start();
    const vcpu = d.vcpus[0]!;
    const ev = vcpu.engine as ScriptedVcpu;
    const cpu = ev.cpu;
    cpu.hypercallPage = parseGuestKernel(this.kernel).notes.hypercallPage ?? 0n;
    cpu.codePages.add(PerDomainSpace.vcpuLayout(vcpu.index).wait);
    this.fuzz = { d, vcpu, ev, cpu, freeBefore };
    return this.fuzz;
  }

  /** Where the guest's mapping puts pfn 0 (the test guests map their memory linearly). */
  private virtBase(d: Domain): bigint {
    return d.layout.startInfoVa - BigInt(d.layout.pfn.startInfo) * 0x1000n;
  }

  /** What the generator aims at, read from the live domains. */
  targets(): FuzzTargets {
    const { d, cpu } = this.fuzz;
    const base = this.virtBase(d);
    const nr = d.memory.nrPages;
    const scratchPfn = Math.floor(nr / 2);
    const scratchVa = base + BigInt(scratchPfn) * 0x1000n;
    for (let i = 0; i < SCRATCH_PAGES; i++) cpu.translate(scratchVa + BigInt(i) * 0x1000n, true); // must be writable at boot
    const tableMfns: number[] = [];
    for (let i = 0; i < d.layout.nrPtFrames; i++) tableMfns.push(d.memory.mfnOf(d.layout.pfn.ptBase + i));
    const xen = this.hv.frames.framesOf(OWNER_XEN);
    return {
      ownMfns: Array.from(d.memory.p2m),
      tableMfns,
      l4Mfn: d.layout.l4Mfn,
      ownDomid: d.id,
      victimMfns: [...Array.from(this.victim.memory.p2m), this.victim.layout.l4Mfn, this.victim.sharedInfoMfn],
      victimDomid: this.victim.id,
      xenMfns: [xen[0]!, xen[xen.length - 1]!, xen[Math.floor(xen.length / 2)]!, d.sharedInfoMfn],
      frameCount: this.hv.frames.count,
      scratchVa,
      scratchBytes: SCRATCH_PAGES * 0x1000,
      mappedStart: base + BigInt(d.layout.pfn.kernel) * 0x1000n,
      mappedEnd: d.layout.mappedEnd,
      tableVa: base + BigInt(d.layout.pfn.ptBase) * 0x1000n,
    };
  }

  /**
   * Stores bytes in the fuzz domain's memory with the guest's rights: page
   * by page through its current page tables, skipping pages it cannot
   * write (the hypervisor keeps page tables read-only; a page the fuzz
   * unmapped is just not written). Returns the bytes stored.
   */
  guestWrite(va: bigint, bytes: Uint8Array): number {
    const { cpu } = this.fuzz;
    let done = 0;
    for (let off = 0; off < bytes.length;) {
      const at = va + BigInt(off);
      const n = Math.min(bytes.length - off, 0x1000 - Number(at & 0xfffn));
      try {
        const maddr = cpu.translate(at, true);
        const page = this.hv.frames.bytes(Number(maddr >> 12n));
        page.set(bytes.subarray(off, off + n), Number(maddr & 0xfffn));
        done += n;
      } catch (e) {
        if (!(e instanceof PageFault)) throw e;
      }
      off += n;
    }
    return done;
  }

  close(): void {
    this.hv.close();
  }
}
