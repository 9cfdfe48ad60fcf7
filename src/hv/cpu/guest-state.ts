// Where an interrupted guest's state is while the core works on it: in the
// registers (the vCPU stopped in its own code: a port-I/O hypercall), or in
// the exception frame the CPU pushed on the vCPU's ring-0 stack (it stopped
// in a ring-0 exception stub, about to iretq). GuestState reads and writes
// either the same way, so bounce frames and iret are written once.
// Inputs: the frame's words are the guest's (hostile); addresses are the
// hypervisor's.

import type { RegisterFile } from '../../engine/types.js';
import { PAGE_SIZE } from '../mm/frames.js';
import { hasErrorCode, LSTAR_VIRT, SEL, STUB_SIZE, STUBS_VIRT } from '../mm/xen-space.js';

/**
 * The interrupted guest state a bounce frame saves and replaces. `flat`:
 * it is the registers, where only the flat selectors can be loaded.
 */
export interface GuestState { rip: bigint; cs: bigint; rflags: bigint; rsp: bigint; ss: bigint; readonly flat?: true }

/** GuestState over a ring-0 exception frame (rip, cs, rflags, rsp, ss at ripAt). Accessors on the prototype: nothing made per use but the object. */
export class FrameState implements GuestState {
  constructor(readonly frame: DataView, readonly ripAt: number) {}
  private get(i: number): bigint { return this.frame.getBigUint64(this.ripAt + 8 * i, true); }
  private set(i: number, v: bigint): void { this.frame.setBigUint64(this.ripAt + 8 * i, BigInt.asUintN(64, v), true); }
  get rip() { return this.get(0); } set rip(v) { this.set(0, v); }
  get cs() { return this.get(1); } set cs(v) { this.set(1, v); }
  get rflags() { return this.get(2); } set rflags(v) { this.set(2, v); }
  get rsp() { return this.get(3); } set rsp(v) { this.set(3, v); }
  get ss() { return this.get(4); } set ss(v) { this.set(4, v); }
}

/** Reads and loads the vCPU's code selector through the engine (a 32-bit one: compatibility mode). */
export interface CodeSelector {
  read(): number;
  load(sel: number): void;
}

/**
 * GuestState over the registers (the vCPU in its own code: CS and SS are
 * the flat kernel selectors). One per vCPU. A return to 32-bit code loads
 * its selector through the engine; from then on CS is read back from the
 * engine (a guest that never leaves 64-bit code costs nothing).
 */
export class RegsState implements GuestState {
  readonly flat = true;
  private otherCs = false;
  constructor(private readonly r: RegisterFile, private readonly code?: CodeSelector) {}
  get rip() { return this.r.rip; } set rip(v) { this.r.rip = v; }
  get cs() { return this.otherCs ? BigInt(this.code!.read()) : BigInt(SEL.CS64); }
  set cs(v) {
    if (v === this.cs) return;
    if (!this.code) throw new Error(`cannot load cs ${v} through the registers`);
    this.code.load(Number(v));
    this.otherCs = true;
  }
  get rflags() { return this.r.rflags; } set rflags(v) { this.r.rflags = v; }
  get rsp() { return this.r.rsp; } set rsp(v) { this.r.rsp = v; }
  get ss() { return BigInt(SEL.DS); } set ss(v) { if (v !== BigInt(SEL.DS)) throw new Error(`cannot load ss ${v} through the registers`); }
}

/** The stub page syscall lands in: a guest halting or faulting there tried a syscall paravane refuses. */
export const inSyscallStubs = (rip: bigint): boolean => rip >= LSTAR_VIRT && rip < LSTAR_VIRT + 4096n;
/** Whether `rip` is inside the ring-0 exception stubs (the vCPU is halted there, about to iretq). */
export const inExceptionStubs = (rip: bigint): boolean => rip >= STUBS_VIRT && rip < STUBS_VIRT + 256n * BigInt(STUB_SIZE);
/** Whether `rip` is in the pages of the hypervisor's own code that can run at CPL 0: the exception stubs and the syscall stubs. */
export const inRing0Code = (rip: bigint): boolean => rip >= STUBS_VIRT && rip < LSTAR_VIRT + 4096n;

/** A vCPU's ring-0 stack page (viewed once), where the CPU pushes the exception frames the stubs halt on. */
export class Ring0Stack {
  constructor(readonly view: DataView, private readonly top: bigint) {}

  /** Where `bytes` at ring-0 stack address `rsp` lie in the stack page, or undefined if not all within it. */
  offset(rsp: bigint, bytes: number): number | undefined {
    const at = Number(rsp - (this.top - BigInt(PAGE_SIZE)));
    return at >= 0 && at + bytes <= PAGE_SIZE ? at : undefined;
  }

  /**
   * The ring-0 exception frame the vCPU will iretq to, for a vCPU stopped
   * at CPL 0 (which only the hypervisor's stubs run) past an exception
   * stub's hlt. Undefined anywhere else: at a stub's first byte (the CPU
   * has pushed an exception the core has not handled yet: a kick stopped
   * the vCPU before the hlt, whose exit comes next), or in the syscall
   * stub page (a syscall being refused). A stub at CPL 0 off this stack
   * is a bug in paravane.
   */
  stubFrame(rip: bigint, rsp: bigint): FrameState | undefined {
    if (!inExceptionStubs(rip)) return undefined;
    const offset = rip - STUBS_VIRT;
    const start = Number(offset % BigInt(STUB_SIZE));
    const vector = Number(offset / BigInt(STUB_SIZE));
    if (start === 0) return undefined;
    // After the hlt (byte 1) rsp points at the error code, if the vector has one; after the add, at rip.
    const ripAt = hasErrorCode(vector) && start === 1 ? 8 : 0;
    const at = this.offset(rsp + BigInt(ripAt), 40);
    if (at === undefined) throw new Error(`ring-0 stack at 0x${rsp.toString(16)} in a stub`);
    return new FrameState(this.view, at);
  }
}
