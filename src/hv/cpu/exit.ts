// Exit handling: the step after run -> decode. One exhaustive switch on the
// engine's exit turns it into a hypercall (through one of the three
// transports: the hypercall page's port I/O, `syscall`, `vmcall`), an
// emulated page-table write, an exception bounced to the guest, or a crash.
// A free function over the vCPU's parts (ExitTarget), so that tests feed it
// synthetic exits. Inputs: the guest's registers and the frames its
// exceptions pushed (hostile); nothing a guest does may throw out of here
// except a bug in paravane: a guest that cannot continue is crashed.

import type { Exit, Vcpu } from '../../engine/types.js';
import type { HypercallArgs, HypercallContext } from '../hypercalls/context.js';
import { HYPERCALL_SLOTS, type HypercallTable } from '../hypercalls/table.js';
import { emulatePtWrite, type PtwrDomain } from '../mm/ptwr.js';
import { CSTAR_OFFSET, hasErrorCode, HYPERCALL_PORT, LSTAR_RETURN_OFFSET, LSTAR_VIRT, STUB_SIZE, STUBS_VIRT, SYSCALL_PORT } from '../mm/xen-space.js';
import { GuestFault, isCanonical } from '../mm/guest-access.js';
import { hex } from '../format.js';
import { EXIT } from './exit-counts.js';
import { FrameState, inExceptionStubs, inSyscallStubs, type GuestState, type RegsState, type Ring0Stack } from './guest-state.js';
import type { VcpuAddressSpace } from './address-space.js';
import type { VirtualTraps } from './virtual-traps.js';
import { emulatePrivileged, m2pAccess, type EmulationTarget } from './emulate.js';
import type { VcpuDebugRegisters } from './debug-registers.js';
import type { HypercallTransport, TraceSink } from './trace-sink.js';
import type { DebugHook } from './debugger.js';

const EXCEPTION_NAMES = ['#DE divide error', '#DB debug', 'NMI', '#BP breakpoint', '#OF overflow', '#BR bound range',
  '#UD invalid opcode', '#NM device not available', '#DF double fault', 'coprocessor overrun', '#TS invalid TSS',
  '#NP segment not present', '#SS stack fault', '#GP general protection', '#PF page fault', 'vector 15',
  '#MF x87 error', '#AC alignment check', '#MC machine check', '#XM SIMD error', '#VE virtualization exception',
  '#CP control protection'];
const SLOTS_N = BigInt(HYPERCALL_SLOTS);
const VMCALL = [0x0f, 0x01, 0xc1];
const VMMCALL = [0x0f, 0x01, 0xd9];
const SYSCALL_REFUSED = 'syscall is refused on this host (it leaves CPL 3 here, or was a 32-bit syscall); use the hypercall page or vmcall';

/** The parts of a vCPU and its domain that exit handling works on. */
export interface ExitTarget {
  readonly engine: Vcpu;
  readonly space: VcpuAddressSpace;
  readonly traps: VirtualTraps;
  readonly stack: Ring0Stack;
  readonly regsState: RegsState;
  /** The hypercall context of this vCPU (made once). */
  readonly context: HypercallContext;
  readonly hypercalls: HypercallTable;
  readonly hypercallCounts: Float64Array;
  /** The domain, its tables and this vCPU's view, for writable page tables. */
  readonly ptwr: PtwrDomain;
  /** The vCPU as the privileged-instruction emulator sees it. */
  readonly emulation: EmulationTarget;
  readonly debug: VcpuDebugRegisters;
  /** The domain is still running (not shutting down, crashed or killed). */
  readonly running: boolean;
  /**
   * Whether the vCPU must not run on now: blocked, or the run loop asked
   * for it back (its timers changed: that request is taken; a yield stays
   * for the run loop to see).
   */
  takeStop(): boolean;
  crash(reason: string): void;
  /** The domain hears of each hypercall before it is handled; false: the domain stopped running meanwhile, do not make the call. */
  hypercallStarting(nr: bigint): boolean;
  count(kind: number): void;
  /** The arguments a handler cut short with continueWith, taken once. */
  takeContinuation(): HypercallArgs | undefined;
  /** Where hypercalls, exits and upcalls are recorded, when the run is traced. */
  readonly trace: TraceSink | undefined;
  readonly index: number;
  /** The debugger attached to the domain (paravane run --gdb), which may own an exception. */
  readonly debugger: DebugHook | undefined;
}

/**
 * Handles one exit. Returns false when the vCPU should stop running for
 * now (deadline or kick, blocked, the run loop wants it, or the domain
 * stopped).
 */
export function handleExit(v: ExitTarget, exit: Exit): boolean {
  if (v.trace) traceExit(v, v.trace, exit);
  switch (exit.kind) {
    case 'io':
      // Reading path 4: the hypercall page's stub did `out` to HYPERCALL_PORT in guest kernel mode.
      if (exit.direction === 'out' && exit.port === HYPERCALL_PORT) {
        v.count(EXIT.page);
        // The port is closed in user mode (VcpuAddressSpace.toggle), so this is a kernel-mode call.
        if (v.space.userMode) v.crash('the hypercall port was reached from guest user mode (the I/O bitmap should have refused it)');
        else if (hypercall(v, v.regsState, 'page') === 'continue') v.engine.regs.rip -= 2n; // re-execute the stub's out
      } else if (exit.direction === 'out' && exit.port === SYSCALL_PORT) {
        v.count(EXIT.syscall);
        if (v.space.userMode) {
          const problem = v.traps.userSyscall();
          if (problem) v.crash(problem);
        } else if (hypercall(v, v.regsState, 'syscall') === 'continue') v.engine.regs.rip -= 2n; // the LSTAR stub's out again
      } else {
        v.crash(`port I/O ${exit.direction} ${hex(exit.port)} (the I/O bitmap should have refused it)`);
      }
      return v.running && !v.takeStop();
    case 'halt':
      exception(v);
      return v.running && !v.takeStop();
    case 'interrupted':
      v.count(EXIT.interrupted);
      return false;
    case 'shutdown':
      v.crash(`triple fault at rip ${hex(v.engine.regs.rip)}`);
      return false;
    case 'mmio':
      v.crash(`${exit.isWrite ? 'write to' : 'read from'} machine address ${hex(exit.address)}, outside machine memory`);
      return false;
    case 'internal-error':
      v.crash(exit.message ? `the engine stopped at rip ${hex(v.engine.regs.rip)}: ${exit.message}` : `the engine could not emulate an instruction at rip ${hex(v.engine.regs.rip)} (suberror ${exit.suberror})`);
      return false;
    case 'entry-failed':
      v.crash(`the engine could not enter the guest (reason ${hex(exit.reason)})`);
      return false;
    case 'unknown':
      v.crash(`unexpected exit ${exit.code}`);
      return false;
    default:
      return assertNever(exit);
  }
}

/**
 * Issues the hypercall in the guest's registers and puts the result in
 * rax. `state` is where the guest's rip, rflags and rsp are: the registers
 * (port I/O, syscall) or the ring-0 frame of a vmcall. Returns 'continue'
 * when the call was cut short (a continuation): the argument registers
 * then hold the rest of the work and rax the number, and the caller makes
 * the guest issue it again. Returns 'iret' when an iret hypercall replaced
 * the guest's state (rip included: the caller must not move it).
 */
export function hypercall(v: ExitTarget, state: GuestState, transport: HypercallTransport = 'page'): 'done' | 'continue' | 'iret' {
  const r = v.engine.regs;
  const nr = r.rax;
  // Console text held from earlier calls goes out first; if its reader paused or ended the domain
  // there, this call is not made now (nor counted): the guest issues it again when it resumes.
  if (!v.hypercallStarting(nr)) return 'continue';
  if (nr >= 0n && nr < SLOTS_N) v.hypercallCounts[Number(nr)]! += 1;
  const args: HypercallArgs = [r.rdi, r.rsi, r.rdx, r.r10, r.r8];
  v.traps.callRsp = state.rsp;
  const site = v.trace ? callSite(v, state, transport) : 0n;
  const t0 = v.trace ? process.hrtime.bigint() : 0n;
  const result = v.hypercalls.dispatch(v.context, nr, args); // Reading path 5
  v.trace?.hypercall(v.index, nr, args, result, site, process.hrtime.bigint() - t0, transport);
  // Reading path 10: back from the handler: an iret's frame applied, a continuation set up, or the result in rax.
  const iret = v.traps.takeIret();
  if (iret) {
    if (v.running) {
      const problem = v.traps.applyIret(iret, state);
      if (problem) v.crash(problem);
    }
    return 'iret';
  }
  const next = v.takeContinuation();
  if (next) {
    r.rdi = next[0];
    r.rsi = next[1];
    r.rdx = next[2];
    r.r10 = next[3];
    r.r8 = next[4];
    r.rax = nr;
    return 'continue';
  }
  r.rax = BigInt.asUintN(64, result);
  return 'done';
}

/**
 * A guest exception reached a ring-0 stub, which halted. The frame the
 * CPU pushed is on this vCPU's ring-0 stack; the stub's iretq resumes.
 * In order: a vmcall (a hypercall), a write to one of the domain's L1s
 * (writable page tables), `int $n` (#UD on this host), then the guest's
 * own handler for the vector, or a crash with the reason.
 */
function exception(v: ExitTarget): void {
  const r = v.engine.regs;
  if (inSyscallStubs(r.rip - 1n)) {
    v.crash(SYSCALL_REFUSED);
    return;
  }
  const offset = r.rip - 1n - STUBS_VIRT;
  if (!inExceptionStubs(r.rip - 1n) || offset % BigInt(STUB_SIZE) !== 0n) {
    v.crash(`halted at ${hex(r.rip)}, outside the exception stubs`);
    return;
  }
  let vector = Number(offset / BigInt(STUB_SIZE));
  const at = v.stack.offset(r.rsp, hasErrorCode(vector) ? 48 : 40);
  if (at === undefined) {
    v.crash(`exception ${vector} with the ring-0 stack at ${hex(r.rsp)}`);
    return;
  }
  const view = v.stack.view;
  const frame = new FrameState(view, at + (hasErrorCode(vector) ? 8 : 0));
  let errorCode = hasErrorCode(vector) ? view.getBigUint64(at, true) : undefined;
  let faultRip = frame.rip;
  const userMode = v.space.userMode;
  // A debugger's breakpoint or single step: the domain is stopped for it, and the guest never sees it.
  if (v.debugger?.trap(v.index, vector, errorCode, frame)) {
    v.count(EXIT.exception);
    return;
  }
  // A #DB in the hypervisor's own code: a breakpoint held by mov/pop ss fires at the first instruction of
  // the handler of what follows (int, a fault, syscall's stub). As Xen since XSA-260: the guest's DR6
  // records it, nothing is injected, and the interrupted stub goes on.
  if (vector === 1 && ((frame.cs & 3n) === 0n || inSyscallStubs(faultRip))) {
    v.debug.debugException();
    v.count(EXIT.exception);
    return;
  }
  // In guest user mode a vmcall is no hypercall (user mode has none, as on Xen): the #GP is the guest's.
  if (vector === 13 && errorCode === 0n && !userMode && isHypercallInstruction(v, faultRip)) {
    v.count(EXIT.vmcall);
    // Past the vmcall, unless the call continues (then it runs again) or was an iret.
    if (hypercall(v, frame, 'vmcall') === 'done') frame.rip = faultRip + 3n;
    return;
  }
  // A 32-bit syscall from guest user mode lands at CSTAR, whose stub faults at CPL 3: as Xen's cstar
  // entry for a 64-bit PV guest, the guest kernel's syscall32 (else syscall) callback, or #UD.
  if (vector === 13 && userMode && faultRip === LSTAR_VIRT + BigInt(CSTAR_OFFSET)) {
    v.count(EXIT.exception);
    const problem = v.traps.compatSyscall(frame);
    if (problem) v.crash(problem);
    return;
  }
  // The faulting address of a #PF: one KVM_GET_SREGS, when first needed.
  let cr2: bigint | undefined;
  const faultAddress = () => (cr2 ??= v.engine.getSpecialRegisters().cr2);
  let ptwrRefusal = '';
  let emulatedFault = '';
  if (vector === 14) {
    // A read of the M2P at Xen's address, where this host cannot map it: completed here.
    const e = m2pAccess(v.emulation, frame, faultAddress(), errorCode!);
    if (e === 'done') {
      v.count(EXIT.emulated);
      return;
    }
    if (e) errorCode = e.errorCode;
  }
  if (vector === 14 && errorCode !== undefined && (errorCode & 3n) === 3n && !userMode) {
    // A write to a present read-only page: perhaps one of its own L1 tables (writable page tables).
    const done = emulatePtWrite(v.ptwr, faultAddress(), frame, r);
    if (done === true) {
      v.count(EXIT.ptwr);
      return;
    }
    ptwrRefusal = done ? `; as a page-table update it was refused: ${done}` : '';
  }
  // A privileged instruction (#GP(0) in kernel mode) or Xen's forced-emulation prefix (#UD): emulated,
  // or turned into the fault the guest gets for it (a bad MSR or CR value: #GP).
  if (vector === 6 || ((vector === 13 || vector === 12) && errorCode === 0n)) {
    const e = emulatePrivileged(v.emulation, vector, frame);
    if (e === 'done') {
      v.count(EXIT.emulated);
      return;
    }
    if (e) {
      emulatedFault = ' (as the emulated instruction raises it)';
      vector = e.vector;
      errorCode = e.errorCode;
    }
  }
  v.count(EXIT.exception);
  // sysenter faults at CPL 3 (#GP(0) on Intel, #UD on AMD): Xen's sysenter entry, in the guest's callback.
  // Looked for only once the emulator has declined the instruction: its bytes are read here, off the hot path.
  if (!emulatedFault && ((vector === 13 && errorCode === 0n) || vector === 6) && instructionIs(v, faultRip, SYSENTER)) {
    const problem = v.traps.sysenter(frame);
    if (problem) v.crash(problem);
    return;
  }
  if (vector === 13 && faultRip === LSTAR_VIRT + BigInt(LSTAR_RETURN_OFFSET) && !isCanonical(r.rcx)) {
    // A kernel syscall returning to a non-canonical rip: as Xen since XSA-7, the guest gets #GP(0) at that rip.
    frame.rip = faultRip = r.rcx;
  }
  if (inSyscallStubs(faultRip)) {
    v.crash(SYSCALL_REFUSED);
    return;
  }
  // `int $n` and `int3` at CPL 3: kvm_pvm raises #UD at the instruction;
  // hardware (and the software engine) raise #GP((n << 3) | 2) through the
  // hypervisor's DPL-0 gates. Either way Xen's guests get vector n when its
  // DPL admits the mode (1 for kernel, 3 for user), else #GP((n << 3) | 2).
  const gateRefused = vector === 13 && errorCode !== undefined && (errorCode & 7n) === 2n;
  const soft = vector === 6 || gateRefused ? softwareInterrupt(v, faultRip) : undefined;
  if (soft && (!gateRefused || BigInt(soft.n) === errorCode! >> 3n)) {
    const { n, length } = soft;
    const permitted = v.traps.intPermitted(n);
    if (permitted) frame.rip = faultRip + BigInt(length); // a trap: it returns after the int
    const to = permitted ? n : 13;
    if (!v.traps.hasHandler(to)) {
      v.crash(`int $${hex(n)} at rip ${hex(faultRip)}: ${permitted ? `no handler for vector ${n}` : 'refused by its DPL, and no #GP handler'}`);
      return;
    }
    const problem = v.traps.bounce(to, permitted ? undefined : BigInt((n << 3) | 2), frame, to === 14 ? faultAddress() : 0n);
    if (problem) v.crash(`int $${hex(n)} at rip ${hex(faultRip)} could not be delivered: ${problem}`);
    return;
  }
  // A #DB: what the hardware's DR6 recorded becomes the guest's (get_debugreg(6) in its handler).
  if (vector === 1) v.debug.debugException();
  const name = EXCEPTION_NAMES[vector] ?? `vector ${vector}`;
  if (v.traps.hasHandler(vector) && !ptwrRefusal) {
    const problem = v.traps.bounce(vector, errorCode, frame, vector === 14 ? faultAddress() : 0n);
    if (problem) v.crash(`${name} (vector ${vector}) at rip ${hex(faultRip)}${emulatedFault} could not be delivered: ${problem}`);
    return;
  }
  const err = errorCode === undefined ? '' : `, error code ${hex(errorCode)}`;
  const address = vector === 14 ? `, address ${hex(faultAddress())}` : '';
  const mode = userMode ? ' in guest user mode' : '';
  v.crash(`unhandled ${name} (vector ${vector}${err}) at rip ${hex(faultRip)}${emulatedFault}${mode}${address}${ptwrRefusal}; no trap handler is registered`);
}

/** The vector and length of an `int $n` (cd nn) or `int3` (cc) at rip, if that is what is there. */
function softwareInterrupt(v: ExitTarget, rip: bigint): { n: number; length: number } | undefined {
  try {
    const b = v.space.guest.read(rip, 2);
    return b[0] === 0xcd ? { n: b[1]!, length: 2 } : b[0] === 0xcc ? { n: 3, length: 1 } : undefined;
  } catch (e) {
    if (e instanceof GuestFault) return undefined;
    throw e;
  }
}

const SYSENTER = [0x0f, 0x34];

/** Whether the bytes at rip are `op` (false where they cannot be read). */
function instructionIs(v: ExitTarget, rip: bigint, op: readonly number[]): boolean {
  try {
    const b = v.space.guest.read(rip, op.length);
    return op.every((x, i) => b[i] === x);
  } catch (e) {
    if (e instanceof GuestFault) return false;
    throw e;
  }
}

function isHypercallInstruction(v: ExitTarget, rip: bigint): boolean {
  return instructionIs(v, rip, VMCALL) || instructionIs(v, rip, VMMCALL);
}

function assertNever(x: never): never {
  throw new Error(`unhandled exit ${JSON.stringify(x)}`);
}

/**
 * Where the guest made a hypercall (for traces): a hypercall-page call's
 * return address (on the guest's stack, 0 if it cannot be read), the
 * instruction after `syscall` (rcx), or the `vmcall` itself.
 */
function callSite(v: ExitTarget, state: GuestState, transport: HypercallTransport): bigint {
  if (transport === 'syscall') return v.engine.regs.rcx;
  if (transport === 'vmcall') return state.rip;
  try {
    return new DataView(v.emulation.guest.read(state.rsp, 8).buffer).getBigUint64(0, true);
  } catch (e) {
    if (e instanceof GuestFault) return 0n;
    throw e;
  }
}

/** Records an exit: its kind, and its port (io) or the vector of the exception a stub halted on. */
function traceExit(v: ExitTarget, t: TraceSink, exit: Exit): void {
  const rip = v.engine.regs.rip;
  let detail = 0;
  if (exit.kind === 'io') detail = exit.port;
  else if (exit.kind === 'halt' && inExceptionStubs(rip - 1n)) detail = Number((rip - 1n - STUBS_VIRT) / BigInt(STUB_SIZE));
  t.exit(v.index, exit.kind, detail, rip);
}
