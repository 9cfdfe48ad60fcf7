// Event channels, Xen's 2-level ABI (Xen's public headers; docs/abi.md): per
// domain 4096 ports, each free, unbound (reserved for a remote domain),
// interdomain (connected to a remote port), VIRQ or IPI, notifying one vCPU.
// Raising an event sets the port's bit in shared_info.evtchn_pending and,
// unless the port is masked, its word's bit in the vCPU's
// evtchn_pending_sel and evtchn_upcall_pending; the vCPU then gets an upcall
// the next time it resumes with events unmasked (src/hv/cpu/vcpu.ts), and is
// kicked or woken so that this is soon. Guests update the same words with
// locked instructions while their vCPU runs on another thread, so every
// update here is an atomic read-modify-write (Atomics on 32-bit halves of
// the 64-bit words). Inputs: hostile (ports, domain ids, VIRQ numbers).

import { DomidSpecial, Virq, VcpuInfo, SharedInfo } from '../../abi/generated/xen.js';
import { Evtchn2l, EvtchnStat } from '../../abi/generated/event-channel.js';
import { XenErrno } from '../../abi/generated/errno.js';

export const NR_EVENT_CHANNELS = Evtchn2l.EVTCHN_2L_NR_CHANNELS;
/** VIRQs bound per vCPU (the rest are global: bound on vCPU 0, movable). */
const PER_VCPU_VIRQS = new Set<number>([Virq.VIRQ_TIMER, Virq.VIRQ_DEBUG, Virq.VIRQ_XENOPROF, Virq.VIRQ_XENPMU]);

/** A port's binding. */
export type PortState =
  | { kind: 'free' }
  | { kind: 'reserved' }
  | { kind: 'unbound'; remoteDom: number }
  | { kind: 'interdomain'; remoteDom: number; remotePort: number }
  | { kind: 'virq'; virq: number }
  | { kind: 'ipi' }
  /** Connected to a backend inside the hypervisor (the console): a send calls it. */
  | { kind: 'backend'; name: string; onSend: () => void };

/** A refused event-channel operation (errno: a XenErrno value, negated by the hypercall). */
export class EventError extends Error {
  constructor(readonly errno: number, detail: string) {
    super(detail);
    this.name = 'EventError';
  }
}

/** What the event channels of a domain need from the rest of the hypervisor. */
export interface EventHost {
  /** The event channels of domain `domid` (the caller's own included), if it exists. */
  lookup(domid: number): EventChannels | undefined;
  /** vCPU `vcpu` of this domain has a new pending event (maybe masked): make it notice soon (wake it if blocked or polling). */
  notify(vcpu: number): void;
  /** Where vCPU `vcpu`'s vcpu_info is: 32-bit words of its page and its byte offset there (VCPUOP_register_vcpu_info moves it). */
  vcpuInfo(vcpu: number): { words: Int32Array; base: number };
}

/** The state of every free port: one object, never changed (a port changes state by replacement). */
const FREE: PortState = Object.freeze({ kind: 'free' });

/** One domain's event channels. */
export class EventChannels {
  private readonly ports: PortState[] = new Array<PortState>(NR_EVENT_CHANNELS).fill(FREE);
  private readonly notifyVcpu = new Uint8Array(NR_EVENT_CHANNELS);
  /** Port of each VIRQ, per vCPU (0: not bound). */
  private readonly virqPorts: Uint16Array[];
  /** shared_info as 32-bit words, for atomic bit updates. */
  private readonly words: Int32Array;

  constructor(readonly domid: number, sharedInfo: Uint8Array, readonly vcpus: number, private readonly host: EventHost) {
    if (sharedInfo.byteOffset % 4) throw new Error('shared_info must be 4-byte aligned');
    this.words = new Int32Array(sharedInfo.buffer, sharedInfo.byteOffset, sharedInfo.byteLength / 4);
    this.ports[0] = { kind: 'reserved' }; // port 0 is never used, as on Xen
    this.virqPorts = Array.from({ length: vcpus }, () => new Uint16Array(Virq.NR_VIRQS));
  }

  /** Whether domain `domid` exists. */
  domainExists(domid: number): boolean {
    return this.host.lookup(domid) !== undefined;
  }

  state(port: number): PortState {
    return this.valid(port) ? this.ports[port]! : FREE;
  }

  /** The state of a port in use (bound, unbound or a backend's); -EINVAL otherwise. */
  private inUse(port: number): PortState {
    const s = this.state(port); // FREE for a port out of range
    if (s.kind === 'free' || s.kind === 'reserved') throw new EventError(XenErrno.XEN_EINVAL, `port ${port} is not in use`);
    return s;
  }

  private valid(port: number): boolean {
    return Number.isInteger(port) && port >= 0 && port < NR_EVENT_CHANNELS;
  }

  private freePort(): number {
    for (let p = 1; p < NR_EVENT_CHANNELS; p++) if (this.ports[p]!.kind === 'free') return p;
    throw new EventError(XenErrno.XEN_ENOSPC, 'no free event channel');
  }

  private checkVcpu(vcpu: number): void {
    if (!Number.isInteger(vcpu) || vcpu < 0 || vcpu >= this.vcpus) throw new EventError(XenErrno.XEN_ENOENT, `no vCPU ${vcpu}`);
  }

  /**
   * Ports in Xen's sense of valid (evtchn_port_is_valid): below the end of
   * the last 64-port bucket ever allocated (the first exists from the start).
   */
  private validEnd = 64;

  /** Whether `port` is valid as Xen counts it (SCHEDOP_poll accepts closed ports below that). */
  inValidRange(port: number): boolean {
    return Number.isInteger(port) && port >= 0 && port < this.validEnd;
  }

  /** A new port, bound to `state`, notifying vCPU 0, not pending, unmasked. */
  private take(state: PortState, vcpu = 0): number {
    const p = this.freePort();
    this.validEnd = Math.max(this.validEnd, (Math.floor(p / 64) + 1) * 64);
    this.ports[p] = state;
    this.notifyVcpu[p] = vcpu;
    this.clearBit(SharedInfo.OFFSETS.evtchn_pending, p);
    this.clearBit(SharedInfo.OFFSETS.evtchn_mask, p);
    return p;
  }

  /** EVTCHNOP_alloc_unbound for `remoteDom` (already resolved from DOMID_SELF). */
  allocUnbound(remoteDom: number): number {
    // As Xen: the remote domain need not exist yet (it is only recorded).
    return this.take({ kind: 'unbound', remoteDom });
  }

  /** EVTCHNOP_bind_interdomain: connects a new local port to `remotePort` of `remoteDom`. */
  bindInterdomain(remoteDom: number, remotePort: number): number {
    const remote = this.host.lookup(remoteDom);
    if (!remote) throw new EventError(XenErrno.XEN_ESRCH, `no domain ${remoteDom}`);
    const rs = remote.state(remotePort);
    if (!remote.valid(remotePort) || rs.kind !== 'unbound' || rs.remoteDom !== this.domid) {
      throw new EventError(XenErrno.XEN_EINVAL, `port ${remotePort} of domain ${remoteDom} is not left unbound for domain ${this.domid}`);
    }
    const local = this.take({ kind: 'interdomain', remoteDom, remotePort });
    if (remote === this && local === remotePort) throw new Error('event channels: a port bound to itself');
    remote.ports[remotePort] = { kind: 'interdomain', remoteDom: this.domid, remotePort: local };
    // As Xen: the new local port starts pending, so nothing the peer raised is lost.
    this.setPending(local);
    return local;
  }

  /** EVTCHNOP_bind_virq. */
  bindVirq(virq: number, vcpu: number): number {
    if (!Number.isInteger(virq) || virq < 0 || virq >= Virq.NR_VIRQS) throw new EventError(XenErrno.XEN_EINVAL, `VIRQ ${virq} does not exist`);
    this.checkVcpu(vcpu);
    if (!PER_VCPU_VIRQS.has(virq) && vcpu !== 0) throw new EventError(XenErrno.XEN_EINVAL, `global VIRQ ${virq} must be bound on vCPU 0`);
    if (this.virqPorts[vcpu]![virq]) throw new EventError(XenErrno.XEN_EEXIST, `VIRQ ${virq} is already bound on vCPU ${vcpu}`);
    const p = this.take({ kind: 'virq', virq }, vcpu);
    this.virqPorts[vcpu]![virq] = p;
    return p;
  }

  /**
   * A port connected to a backend in the hypervisor (as the toolstack
   * connects the console's port to its daemon before boot): the guest's
   * sends call `onSend`; the backend raises events with setPending.
   */
  bindBackend(name: string, onSend: () => void): number {
    return this.take({ kind: 'backend', name, onSend });
  }

  /** EVTCHNOP_bind_ipi. */
  bindIpi(vcpu: number): number {
    this.checkVcpu(vcpu);
    return this.take({ kind: 'ipi' }, vcpu);
  }

  /** EVTCHNOP_close. */
  close(port: number): void {
    const s = this.inUse(port);
    if (s.kind === 'interdomain') {
      // The other end goes back to unbound, ready for a new bind.
      const remote = this.host.lookup(s.remoteDom);
      if (remote) remote.ports[s.remotePort] = { kind: 'unbound', remoteDom: this.domid };
    } else if (s.kind === 'virq') {
      this.virqPorts[this.notifyVcpu[port]!]![s.virq] = 0;
    }
    this.ports[port] = FREE;
  }

  /** The other end of a domain that is going away: its interdomain peers become unbound. */
  closeAll(): void {
    for (let p = 1; p < NR_EVENT_CHANNELS; p++) if (this.ports[p]!.kind !== 'free') this.close(p);
  }

  /** EVTCHNOP_send. */
  send(port: number): void {
    if (!this.valid(port)) throw new EventError(XenErrno.XEN_EINVAL, `port ${port} does not exist`);
    const s = this.ports[port]!;
    switch (s.kind) {
      case 'interdomain':
        this.host.lookup(s.remoteDom)?.setPending(s.remotePort);
        return;
      case 'ipi':
        this.setPending(port);
        return;
      case 'backend':
        s.onSend();
        return;
      case 'unbound':
        return; // as Xen: dropped silently
      default:
        throw new EventError(XenErrno.XEN_EINVAL, `port ${port} (${s.kind}) cannot be sent on`);
    }
  }

  /** EVTCHNOP_status: [status, vcpu, and the union's two words]. */
  status(port: number): { status: number; vcpu: number; a: number; b: number } {
    if (!this.valid(port)) throw new EventError(XenErrno.XEN_EINVAL, `port ${port} does not exist`);
    const s = this.ports[port]!;
    const vcpu = this.notifyVcpu[port]!;
    switch (s.kind) {
      case 'free':
      case 'reserved':
        return { status: EvtchnStat.EVTCHNSTAT_closed, vcpu, a: 0, b: 0 };
      case 'unbound':
        return { status: EvtchnStat.EVTCHNSTAT_unbound, vcpu, a: s.remoteDom, b: 0 };
      case 'interdomain':
        return { status: EvtchnStat.EVTCHNSTAT_interdomain, vcpu, a: s.remoteDom, b: s.remotePort };
      case 'virq':
        return { status: EvtchnStat.EVTCHNSTAT_virq, vcpu, a: s.virq, b: 0 };
      case 'ipi':
        return { status: EvtchnStat.EVTCHNSTAT_ipi, vcpu, a: 0, b: 0 };
      case 'backend':
        // As the console's port looks on Xen: connected to the control domain's daemon.
        return { status: EvtchnStat.EVTCHNSTAT_interdomain, vcpu, a: 0, b: 0 };
    }
  }

  /** EVTCHNOP_bind_vcpu. */
  bindVcpu(port: number, vcpu: number): void {
    const s = this.inUse(port);
    this.checkVcpu(vcpu);
    if (s.kind === 'ipi' || (s.kind === 'virq' && PER_VCPU_VIRQS.has(s.virq))) throw new EventError(XenErrno.XEN_EINVAL, `port ${port} cannot move to another vCPU`);
    if (s.kind === 'virq') {
      this.virqPorts[this.notifyVcpu[port]!]![s.virq] = 0;
      this.virqPorts[vcpu]![s.virq] = port;
    }
    this.notifyVcpu[port] = vcpu;
  }

  /** EVTCHNOP_unmask: clears the mask bit and, if the port is pending, notifies as a new event would. */
  unmask(port: number): void {
    if (!this.valid(port)) throw new EventError(XenErrno.XEN_EINVAL, `port ${port} does not exist`);
    this.clearBit(SharedInfo.OFFSETS.evtchn_mask, port);
    if (this.testBit(SharedInfo.OFFSETS.evtchn_pending, port)) {
      this.markSelector(port);
      this.host.notify(this.notifyVcpu[port]!);
    }
  }

  /** Raises VIRQ `virq` on `vcpu` (hypervisor-side events: timer, console, debug). Returns whether it was bound. */
  raiseVirq(virq: number, vcpu = 0): boolean {
    const p = this.virqPorts[vcpu]?.[virq];
    if (!p) return false;
    this.setPending(p);
    return true;
  }

  /** Whether `port` is pending (SCHEDOP_poll). */
  isPending(port: number): boolean {
    return this.valid(port) && this.testBit(SharedInfo.OFFSETS.evtchn_pending, port);
  }

  /** Xen's evtchn_2l_set_pending. */
  setPending(port: number): void {
    if (this.testAndSetBit(SharedInfo.OFFSETS.evtchn_pending, port)) return;
    if (!this.testBit(SharedInfo.OFFSETS.evtchn_mask, port)) this.markSelector(port);
    // Pollers wait for masked ports too (SCHEDOP_poll): every new event wakes the vCPU to check.
    this.host.notify(this.notifyVcpu[port]!);
  }

  /** Sets the port's word in evtchn_pending_sel and evtchn_upcall_pending of its vCPU, and notifies it. */
  private markSelector(port: number): void {
    const vcpu = this.notifyVcpu[port]!;
    const { words, base } = this.host.vcpuInfo(vcpu);
    if (testAndSetBit(words, base + VcpuInfo.OFFSETS.evtchn_pending_sel, port >> 6)) return;
    // evtchn_upcall_pending is a byte: set it with an atomic OR on its 32-bit word.
    const at = base + VcpuInfo.OFFSETS.evtchn_upcall_pending;
    Atomics.or(words, at >> 2, 1 << ((at & 3) * 8));
  }

  private testBit(base: number, bit: number): boolean {
    return (Atomics.load(this.words, (base >> 2) + (bit >> 5)) & (1 << (bit & 31))) !== 0;
  }

  private testAndSetBit(base: number, bit: number): boolean {
    return testAndSetBit(this.words, base, bit);
  }

  private clearBit(base: number, bit: number): void {
    Atomics.and(this.words, (base >> 2) + (bit >> 5), ~(1 << (bit & 31)));
  }
}

/** DOMID_SELF in a domid argument: the caller. */
export function resolveDomid(domid: number, self: number): number {
  return domid === DomidSpecial.DOMID_SELF ? self : domid;
}

/** Atomically sets bit `bit` of the bitmap at byte `base` of `words`; returns whether it was set. */
function testAndSetBit(words: Int32Array, base: number, bit: number): boolean {
  const m = 1 << (bit & 31);
  return (Atomics.or(words, (base >> 2) + (bit >> 5), m) & m) !== 0;
}
