// Engine-free test fixture: a hypervisor on the scripted engine
// (src/engine/scripted/), a domain built from one of the assembly test
// guests, and its vCPU 0 with the scripted CPU that plays its guest. Tests
// script what the guest does, then step the vCPU through the core's own
// run -> handleExit path. Runs on any machine; no /dev/kvm.

import * as fs from 'node:fs';
import * as path from 'node:path';
import { ScriptedEngine, type GuestStep, type ScriptedVcpu } from '../../src/engine/scripted/scripted-engine.js';
import type { ScriptedCpu } from '../../src/engine/scripted/scripted-cpu.js';
import { Hypervisor, machineBytesFor, type DomainOptions } from '../../src/hv/hypervisor.js';
import type { Domain } from '../../src/hv/domain/domain.js';
import { parseGuestKernel } from '../../src/hv/domain/elf.js';
import type { PvVcpu } from '../../src/hv/cpu/vcpu.js';
import { PerDomainSpace, SEL } from '../../src/hv/mm/xen-space.js';
import { Hypercall } from '../../src/abi/generated/xen.js';
import type { VirtualClock } from '../../src/hv/sched/host-clock.js';

export const ELF_DIR = path.resolve(import.meta.dirname, '../guests/build/elf');
const MIB = 1 << 20;

export interface ScriptedGuest {
  readonly engine: ScriptedEngine;
  readonly hv: Hypervisor;
  readonly d: Domain;
  /** The core's vCPU 0 of the domain. */
  readonly vcpu: PvVcpu;
  /** The engine's vCPU 0, which plays the guest. */
  readonly ev: ScriptedVcpu;
  readonly cpu: ScriptedCpu;
  /** Queues guest steps and runs the vCPU as the core does (run, then handleExit) until the steps are used or the domain stops running; returns handleExit's last answer. */
  play(...steps: GuestStep[]): boolean;
}

/** Adds a domain built from test guest `name` to `hv` (several share one engine). */
export function scriptedDomain(engine: ScriptedEngine, hv: Hypervisor, name = 'minimal', opts: Partial<DomainOptions> = {}, start = true): ScriptedGuest {
  const file = fs.readFileSync(path.join(ELF_DIR, `${name}.elf`));
  const d = hv.createDomain(file, { memoryBytes: 4 * MIB, ...opts });
  if (start) d.start();
  const vcpu = d.vcpus[0]!;
  const ev = vcpu.engine as ScriptedVcpu;
  const cpu = ev.cpu;
  cpu.hypercallPage = parseGuestKernel(file).notes.hypercallPage ?? 0n;
  // The timer-advance wait stub is CPU-run code too.
  cpu.codePages.add(PerDomainSpace.vcpuLayout(vcpu.index).wait);
  return {
    engine, hv, d, vcpu, ev, cpu,
    play(...steps) {
      ev.script(...steps);
      let go = true;
      while (ev.steps.length && d.running) go = vcpu.handleExit(vcpu.run());
      return go;
    },
  };
}

/**
 * The guest step that registers trap handlers: set_trap_table, through the
 * hypercall page, with (vector, flags, handler address) entries on Xen's
 * flat kernel code selector, the list laid in the guest's boot stack page.
 */
export function trapTable(g: ScriptedGuest, entries: ReadonlyArray<readonly [number, number, bigint]>): GuestStep {
  return (c) => {
    const at = g.d.layout.stackTop - 0x800n;
    const b = new Uint8Array(16 * (entries.length + 1));
    const d = new DataView(b.buffer);
    entries.forEach(([vector, flags, address], i) => {
      d.setUint8(16 * i, vector);
      d.setUint8(16 * i + 1, flags);
      d.setUint16(16 * i + 2, SEL.CS64 & ~3, true);
      d.setBigUint64(16 * i + 8, address, true);
    });
    c.write(at, b);
    return c.hypercall(Hypercall.HYPERVISOR_set_trap_table, [at]);
  };
}

/** A hypervisor on a fresh scripted engine, with room for `domains` domains of `domainBytes`; on `clock` when given (the engine's too). */
export function scriptedMachine(domains = 4, clock?: VirtualClock, domainBytes = 4 * MIB): { engine: ScriptedEngine; hv: Hypervisor } {
  const engine = new ScriptedEngine();
  if (clock) {
    engine.now = () => clock.now();
    // A spinning guest (the wait stub) lets time pass.
    engine.onPause = () => clock.advance(1_000n);
  }
  const hv = new Hypervisor(engine, { memoryBytes: domains * machineBytesFor(domainBytes), syscallAtCpl3: true, slot256Usable: false, hostClock: clock });
  return { engine, hv };
}

/** A hypervisor on a fresh scripted engine with one domain. */
export function scriptedGuest(name = 'minimal', opts: Partial<DomainOptions> = {}): ScriptedGuest {
  const { engine, hv } = scriptedMachine();
  return scriptedDomain(engine, hv, name, opts);
}
