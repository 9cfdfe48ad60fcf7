// The fuzz loop: draws calls from the generator, plays each as the fuzz
// domain's guest through one of the three transports, and checks the
// machine: a host exception (anything thrown out of the core's run/exit
// path that is not the domain being crashed), the page-type audit every N
// calls and at the end, the victim's memory and state, and every frame
// back in the pool after the last domain is destroyed. Each finding
// carries the seed and call index that reproduce it. Inputs: the options
// (trusted); everything the fuzz domain does is hostile by design.

import { createHash } from 'node:crypto';
import { XenErrno } from '../abi/generated/errno.js';
import { Hypercall } from '../abi/generated/xen.js';
import { PageFault } from '../engine/scripted/scripted-cpu.js';
import type { Exit } from '../engine/types.js';
import { auditPageTypes } from '../hv/mm/page-audit.js';
import { CallGenerator, hypercallName, type FuzzCall } from './generate.js';
import { Prng } from './prng.js';
import { FuzzWorld } from './world.js';

export interface FuzzOptions {
  calls: number;
  seed: number;
  /** Page-type audit (and victim check) every this many calls (default 1000). */
  auditEvery?: number;
  /** The guest kernel image (default: the minimal test guest). */
  kernel?: Uint8Array;
  /** Called before each call from index `traceFrom` on (replaying a finding). */
  trace?: (index: number, call: FuzzCall) => void;
  traceFrom?: number;
  /**
   * Runs after each call with the machine. Tests plant faults with it (to
   * see that the fuzzer reports them); the command never sets it.
   */
  afterCall?: (index: number, world: FuzzWorld) => void;
}

export type FindingKind = 'host-exception' | 'violation';

export interface Finding {
  kind: FindingKind;
  seed: number;
  /** The call at (or, for an audit, before) which it was seen; -1 after the run. */
  index: number;
  message: string;
}

export interface FuzzReport {
  seed: number;
  calls: number;
  seconds: number;
  callsPerSecond: number;
  /** Hypercall name -> result (0, >0, errno name, or how the domain ended) -> count. */
  histogram: Record<string, Record<string, number>>;
  /** Calls per transport. */
  transports: Record<string, number>;
  /** How fuzz domains ended (crashed, shutdown, blocked, ...) -> count. */
  domainEnds: Record<string, number>;
  domainsBuilt: number;
  audits: number;
  victimIntact: boolean;
  framesReturned: boolean;
  findings: Finding[];
}

/** Runs a call can take (continuations, upcalls) before the fuzzer calls the vCPU stuck. */
const MAX_RUNS_PER_CALL = 10_000;
/** Scripted time per call (ns): timers fall due at the same calls on every run. */
const NS_PER_CALL = 50_000n;

/** What the scripted CPU throws for code it does not model (not the hypervisor's failing). */
const ENGINE_LIMIT = /^the scripted CPU (cannot execute|does not walk superpages|ran \d+ instructions)/;

const VMCALL = Uint8Array.of(0x0f, 0x01, 0xc1);

const ERRNO_NAMES = new Map<number, string>(Object.entries(XenErrno).map(([k, v]) => [v as number, k.replace(/^XEN_/, '')]));

function resultName(rax: bigint): string {
  const v = BigInt.asIntN(64, rax);
  if (v === 0n) return '0';
  if (v > 0n) return '>0';
  if (v >= -4095n) return ERRNO_NAMES.get(Number(-v)) ?? `-${-v}`;
  return '<-4095';
}

/** A hash of every byte of the domain's memory (its frames and its shared_info). */
function checksum(world: FuzzWorld, d: FuzzWorld['victim']): string {
  const h = createHash('sha256');
  for (const mfn of d.memory.p2m) h.update(world.hv.frames.bytes(mfn));
  h.update(world.hv.frames.bytes(d.sharedInfoMfn));
  return h.digest('hex');
}

export function runFuzz(opts: FuzzOptions): FuzzReport {
  const { seed, calls } = opts;
  const auditEvery = opts.auditEvery ?? 1000;
  const world = new FuzzWorld(opts.kernel);
  const prng = new Prng(seed);
  const histogram: Record<string, Record<string, number>> = {};
  const transports: Record<string, number> = {};
  const domainEnds: Record<string, number> = {};
  const findings: Finding[] = [];
  let audits = 0;
  let domainsBuilt = 1;
  const victimSum = checksum(world, world.victim);
  let victimIntact = true;
  let gen = new CallGenerator(prng, world.targets());
  const note = (kind: FindingKind, index: number, message: string) => findings.push({ kind, seed, index, message });
  const bump = (table: Record<string, number>, key: string) => { table[key] = (table[key] ?? 0) + 1; };

  const audit = (index: number) => {
    audits++;
    const live = [...world.hv.domains.values()].filter((d) => d.state !== 'dead');
    for (const p of auditPageTypes(world.hv.frames, live.map((d) => d.auditView()))) note('violation', index, `page-type audit: ${p}`);
    if (victimIntact && !world.victim.running) {
      victimIntact = false;
      note('violation', index, `the victim is no longer running (${JSON.stringify(world.victim.end)})`);
    }
    if (victimIntact && checksum(world, world.victim) !== victimSum) {
      victimIntact = false;
      note('violation', index, 'the victim\'s memory changed');
    }
  };

  /** Destroys the fuzz domain and checks it gave back every frame it took; then builds a fresh one. */
  const rebuild = (index: number) => {
    const { d, freeBefore } = world.fuzz;
    audit(index);
    try {
      world.hv.destroyDomain(d);
    } catch (e) {
      note('host-exception', index, `destroying fuzz domain ${d.id}: ${describe(e)}`);
    }
    const left = world.hv.frames.framesOf(d.id).length;
    if (left) note('violation', index, `fuzz domain ${d.id} still owns ${left} frames after its destruction`);
    if (world.hv.frames.free !== freeBefore) note('violation', index, `fuzz domain ${d.id}: ${freeBefore - world.hv.frames.free} frames not returned to the pool`);
    world.buildFuzz();
    domainsBuilt++;
    gen = new CallGenerator(prng, world.targets());
  };

  /** Plays one call; returns the histogram's name for its result. */
  const play = (call: FuzzCall, index: number): string => {
    const { d, vcpu, ev } = world.fuzz;
    let result: string | undefined;
    ev.script(
      (cpu) => guestStep(world, call, cpu),
      (cpu) => {
        result = resultName(cpu.regs.rax);
        return { kind: 'interrupted' };
      },
    );
    try {
      for (let runs = 0; result === undefined; runs++) {
        if (!d.running) break;
        if (vcpu.blocked) {
          vcpu.blocking.expireTimers();
          if (!vcpu.blocking.wakeable()) {
            d.kill('blocked with nothing to wake it (the fuzzer stops it)');
            bump(domainEnds, 'blocked');
            return 'blocked';
          }
        }
        if (runs >= MAX_RUNS_PER_CALL) {
          d.kill(`stuck: ${MAX_RUNS_PER_CALL} runs without the call returning`);
          bump(domainEnds, 'stuck');
          return 'stuck';
        }
        let exit: Exit;
        try {
          exit = vcpu.run();
        } catch (e) {
          // The scripted CPU faulting on its own fetch or stack access: what hardware raises as #PF.
          if (!(e instanceof PageFault)) throw e;
          exit = ev.cpu.raise(14, e.errorCode, e.address);
        }
        vcpu.handleExit(exit);
      }
    } catch (e) {
      if (e instanceof Error && ENGINE_LIMIT.test(e.message)) {
        // The guest went where the scripted CPU cannot follow (its rip in the hypercall page's padding after an iret):
        // hardware would run or fault there; the fuzzer ends the domain and counts it apart.
        d.kill(`engine limit: ${e.message}`);
        bump(domainEnds, 'engine-limit');
        ev.steps.length = 0;
        return 'engine-limit';
      }
      note('host-exception', index, `${hypercallName(call.nr)} via ${call.via}: ${describe(e)}`);
      d.crash('fuzz: host exception');
      bump(domainEnds, 'host-exception');
      ev.steps.length = 0;
      return 'host-exception';
    }
    ev.steps.length = 0;
    if (result !== undefined) return result;
    const kind = d.end?.kind ?? d.state;
    bump(domainEnds, kind);
    return kind;
  };

  const t0 = performance.now();
  for (let i = 0; i < calls; i++) {
    if (!world.fuzz.d.running) rebuild(i - 1); // findings there belong to the call that ended the domain
    world.clock.advance(NS_PER_CALL);
    const call = gen.next();
    if (opts.trace && i >= (opts.traceFrom ?? 0)) opts.trace(i, call);
    bump(transports, call.via);
    const res = play(call, i);
    const h = (histogram[hypercallName(call.nr)] ??= {});
    h[res] = (h[res] ?? 0) + 1;
    opts.afterCall?.(i, world);
    if ((i + 1) % auditEvery === 0) audit(i);
  }
  const seconds = (performance.now() - t0) / 1000;

  // The end: a last audit, then every domain destroyed and every frame back.
  audit(calls - 1);
  let framesReturned = true;
  try {
    world.hv.destroyDomain(world.fuzz.d);
    world.hv.destroyDomain(world.victim);
  } catch (e) {
    note('host-exception', -1, `destroying the domains: ${describe(e)}`);
  }
  if (world.hv.frames.free !== world.initialFree) {
    framesReturned = false;
    note('violation', -1, `${world.initialFree - world.hv.frames.free} frames not returned after the last domain was destroyed`);
  }
  world.close();
  return { seed, calls, seconds, callsPerSecond: calls / seconds, histogram, transports, domainEnds, domainsBuilt, audits, victimIntact, framesReturned, findings };
}

function describe(e: unknown): string {
  if (e instanceof Error) return `${e.name}: ${e.message}${e.stack ? `\n${e.stack.split('\n').slice(1, 6).join('\n')}` : ''}`;
  return String(e);
}

/**
 * The guest's side of one call: it lays the fuzzed structures in its memory
 * and issues the call. A refused store or stack access is the #PF hardware
 * raises, taken by the hypervisor like any guest exception.
 */
function guestStep(world: FuzzWorld, call: FuzzCall, cpu: FuzzWorld['fuzz']['cpu']): Exit {
  for (const w of call.writes) world.guestWrite(w.va, w.bytes);
  try {
    if (call.nr === Hypercall.HYPERVISOR_iret && call.stack) {
      // iret's frame is on the stack: the guest pushes it and jumps to the stub (page), or issues the call with it at rsp.
      const r = cpu.regs;
      if (call.via === 'page') {
        const tail = call.stack.subarray(24); // flags, rip, cs, rflags, rsp, ss (the stub pushes rcx, r11, rax)
        r.rsp = BigInt.asUintN(64, r.rsp - BigInt(tail.length));
        world.guestWrite(r.rsp, tail);
        return cpu.jumpTo(cpu.hypercallPage + BigInt(32 * call.nr));
      }
      r.rsp = BigInt.asUintN(64, r.rsp - BigInt(call.stack.length));
      world.guestWrite(r.rsp, call.stack);
    }
    if (call.via === 'vmcall') {
      // The guest stores the vmcall at rip with its own rights (ScriptedCpu.hypercall pokes it there, past the
      // page tables' RW bit, which after an iret into a read-only page would write the hypervisor's tables).
      // Where it cannot, whatever is at rip runs: the #GP comes all the same and the hypervisor decodes it.
      const r = cpu.regs;
      [r.rdi, r.rsi, r.rdx, r.r10, r.r8] = [0, 1, 2, 3, 4].map((i) => BigInt.asUintN(64, call.args[i] ?? 0n)) as [bigint, bigint, bigint, bigint, bigint];
      r.rax = BigInt(call.nr);
      world.guestWrite(r.rip, VMCALL);
      return cpu.raise(13, 0n);
    }
    return cpu.hypercall(call.nr, call.args, call.via);
  } catch (e) {
    if (e instanceof PageFault) return cpu.raise(14, e.errorCode, e.address);
    throw e;
  }
}
