// What a `paravane run` answers on its control socket
// (src/toolstack/control.ts): its domains listed, one described, paused
// and unpaused, asked to shut down (XenStore's control/shutdown, as xl
// shutdown asks), destroyed, and the hypervisor's log. A request naming
// no domain of this run gets an error naming the ones it has.

import type { Domain } from '../hv/domain/domain.js';
import type { Hypervisor } from '../hv/hypervisor.js';
import { requestShutdown } from '../hv/xenstore/toolstack.js';
import { DESTROY_REASON } from './exit-status.js';
import type { Socket } from 'node:net';
import type { ControlRequest, ControlResponse, DomainInfo, StreamingReply } from '../toolstack/control.js';

/** The hypervisor's log (`paravane dmesg`): the last `max` bytes of console_io lines and end messages. */
export class LogBuffer {
  private chunks: Buffer[] = [];
  private bytes = 0;
  constructor(private readonly max = 1 << 20) {}

  push(b: Uint8Array): void {
    this.chunks.push(Buffer.from(b));
    this.bytes += b.length;
    while (this.bytes > this.max && this.chunks.length > 1) this.bytes -= this.chunks.shift()!.length;
  }

  contents(): Buffer {
    return Buffer.concat(this.chunks);
  }
}

export interface ControlledDomain {
  d: Domain;
  /** Consoles attached from other processes (`paravane console`): each gets the domain's output as it comes. */
  taps: Set<(b: Uint8Array) => void>;
  /** Calls back when the domain ends (attached consoles close). */
  ended: Set<() => void>;
  kernel: string;
  memoryBytes: number;
  startedNs: bigint;
  /** Resumes a paused domain's run (set while it is paused). */
  resume?: () => void;
}

export function controlHandler(hv: Hypervisor, domains: readonly ControlledDomain[], log: LogBuffer): (req: ControlRequest) => ControlResponse | StreamingReply {
  const info = (c: ControlledDomain): DomainInfo => ({
    id: c.d.id, name: c.d.name, state: c.d.state === 'shutting-down' && c.d.end ? 'dead' : c.d.state, vcpus: c.d.vcpus.length, memoryBytes: c.memoryBytes,
    cpuNs: Number(c.d.cpuNs), uptimeNs: Number(process.hrtime.bigint() - c.startedNs), kernel: c.kernel,
    end: c.d.end ? (c.d.end.kind === 'shutdown' ? `shutdown (${c.d.end.reasonName})` : `${c.d.end.kind}: ${c.d.end.reason}`) : '',
    hypercalls: c.d.hypercallCounts.reduce((a, b) => a + b, 0),
  });
  const named = (name: string): ControlledDomain | string => {
    const c = domains.find((x) => x.d.name === name);
    return c ?? `no domain named ${JSON.stringify(name)} in this run (it has ${domains.map((x) => x.d.name).join(', ')})`;
  };
  return (req) => {
    if ('list' in req) return { domains: domains.map(info) };
    if ('dmesg' in req) return { log: log.contents() };
    const [what, arg] = Object.entries(req)[0] as [string, { name: string }];
    const c = named(arg.name);
    if (typeof c === 'string') return { error: c };
    const d = c.d;
    const ended = d.end !== undefined || d.state === 'dead';
    switch (what) {
      case 'info':
        return { domains: [info(c)] };
      case 'pause':
        if (ended) return { error: `${d.name} has ended` };
        if (d.state === 'paused') return { error: `${d.name} is already paused` };
        d.pause();
        return { domains: [info(c)] };
      case 'unpause':
        if (d.state !== 'paused' || !c.resume) return { error: `${d.name} is not paused` };
        c.resume();
        return { domains: [{ ...info(c), state: 'running' }] }; // it runs again as its run loop takes it back
      case 'shutdown':
        if (ended) return { error: `${d.name} has ended` };
        // As xl shutdown: the toolstack's request in XenStore, which a PV guest watches; the guest decides.
        requestShutdown(hv.xenstore, d.id);
        return { domains: [info(c)] };
      case 'console':
        if (ended) return { error: `${d.name} has ended` };
        return { response: { domains: [info(c)] }, attach: (sock) => attach(c, sock) };
      case 'destroy':
        if (ended) return { error: `${d.name} has ended` };
        d.kill(DESTROY_REASON);
        c.resume?.();
        return { domains: [info(c)] };
      default:
        return { error: `unknown request ${what}` };
    }
  };
}

/** An attached console: the domain's output to the socket, the socket's bytes to the domain, until either ends. */
function attach(c: ControlledDomain, sock: Socket): void {
  const tap = (b: Uint8Array): void => {
    if (!sock.destroyed) sock.write(b);
  };
  const close = (): void => {
    c.taps.delete(tap);
    c.ended.delete(close);
    sock.end();
  };
  c.taps.add(tap);
  c.ended.add(close);
  sock.on('data', (b: Buffer) => {
    if (c.d.end === undefined) c.d.consoleInput(b);
  });
  sock.on('close', close);
  sock.on('error', close);
}
