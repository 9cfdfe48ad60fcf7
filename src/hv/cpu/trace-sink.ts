// Where the core reports what a domain's vCPUs do, for `paravane run
// --trace`: each hypercall as its handler returns, each exit, each upcall.
// The core knows only this interface; the trace file's format is the
// toolstack's (src/toolstack/trace-file.ts). Absent (undefined) unless a
// trace was asked for, so an untraced run pays one property test per exit.

/** Which way a hypercall came in. */
export type HypercallTransport = 'page' | 'syscall' | 'vmcall';

export interface TraceSink {
  /**
   * A hypercall returned: its number, argument registers, the value the
   * guest gets in rax, where the guest made it (`site`), and the host time
   * the handler took (ns).
   */
  hypercall(vcpu: number, nr: bigint, args: readonly bigint[], result: bigint, site: bigint, handlerNs: bigint, transport: HypercallTransport): void;
  /** The engine returned an exit: its kind, its port (io) or vector (an exception), and the guest's rip. */
  exit(vcpu: number, kind: string, detail: number, rip: bigint): void;
  /** An event upcall was delivered, interrupting the guest at `rip`. */
  upcall(vcpu: number, rip: bigint): void;
}
