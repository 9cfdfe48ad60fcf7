// GDB's remote serial protocol, the stub side, for `paravane run --gdb
// PORT` (facts from GDB's manual, "Remote Protocol"): packets
// `$data#checksum` acknowledged with `+`, the stop reply `S05` (SIGTRAP),
// `W00` when the inferior exits, `X09` when it is killed; `?`, `g` (the
// amd64 registers gdb knows without a target description: 16 general
// registers, rip, eflags and six segment selectors; the rest are
// unavailable), `m`/`M` (memory), `Z0`/`z0` (software breakpoints the
// stub sets), `c`, `s`, `k`, `D`, and the queries gdb needs to start. The
// byte 0x03 asks for a stop. Listens on 127.0.0.1 only, one debugger at a
// time. Inputs: packets from the debugger (the user's; malformed ones get
// an error reply or are ignored, never a crash).

import * as net from 'node:net';

/** What the stub debugs: one stopped-or-running guest. */
export interface GdbTarget {
  /** The registers in gdb's amd64 order, little-endian: rax rbx rcx rdx rsi rdi rbp rsp r8-r15 (8 bytes each), rip (8), eflags, cs, ss, ds, es, fs, gs (4 each). */
  registers(): Uint8Array;
  readMemory(addr: bigint, len: number): Uint8Array | undefined;
  writeMemory(addr: bigint, bytes: Uint8Array): boolean;
  insertBreakpoint(addr: bigint): boolean;
  removeBreakpoint(addr: bigint): boolean;
  /** Lets the guest run (one instruction when `step`) until its next stop. */
  resume(step: boolean): void;
  /** Stops the guest at its next exit (gdb's interrupt). */
  interrupt(): void;
  /** Ends the guest (gdb's kill). */
  kill(): void;
}

/** Why the guest stopped, or how it ended, as the stub reports it. */
export type GdbEvent = { kind: 'stopped'; signal: number } | { kind: 'exited'; status: number } | { kind: 'killed'; signal: number };

export const SIGTRAP = 5, SIGINT = 2, SIGSEGV = 11, SIGKILL = 9;

const hex2 = (n: number): string => n.toString(16).padStart(2, '0');
const toHex = (b: Uint8Array): string => Buffer.from(b).toString('hex');

function checksum(s: string): string {
  let sum = 0;
  for (let i = 0; i < s.length; i++) sum = (sum + s.charCodeAt(i)) & 0xff;
  return hex2(sum);
}

export class GdbServer {
  private sock: net.Socket | undefined;
  private buf = '';
  /** The stop to report when gdb asks (`?`) or when it resumed and the guest stopped. */
  private last: GdbEvent = { kind: 'stopped', signal: SIGTRAP };
  /** gdb resumed the guest and waits for its stop reply. */
  private waiting = false;
  private readonly server: net.Server;
  /** Resolves when a debugger has connected. */
  readonly connected: Promise<void>;
  private done = false;

  private constructor(private readonly target: GdbTarget, server: net.Server, connected: Promise<void>) {
    this.server = server;
    this.connected = connected;
  }

  /** Listens on 127.0.0.1:`port` (0: any free port); `port` of the result is the one bound. */
  static async listen(port: number, target: GdbTarget): Promise<{ server: GdbServer; port: number }> {
    let onConnect!: () => void;
    const connected = new Promise<void>((res) => { onConnect = res; });
    let self!: GdbServer;
    const server = net.createServer((sock) => {
      if (self.sock) {
        sock.end('$E01#a6'); // one debugger at a time
        return;
      }
      self.attach(sock);
      onConnect();
    });
    self = new GdbServer(target, server, connected);
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(port, '127.0.0.1', () => resolve());
    });
    return { server: self, port: (server.address() as net.AddressInfo).port };
  }

  private attach(sock: net.Socket): void {
    this.sock = sock;
    sock.setEncoding('latin1');
    sock.on('data', (d: string) => this.input(d));
    sock.on('error', () => {});
    sock.on('close', () => {
      this.sock = undefined;
      // A debugger gone while the guest is stopped: it runs on, as after `detach`.
      if (!this.done && !this.waiting) this.target.resume(false);
    });
  }

  /** The guest stopped or ended: the reply gdb waits for after `c` or `s`. */
  report(e: GdbEvent): void {
    this.last = e;
    if (e.kind !== 'stopped') this.done = true;
    if (this.waiting) {
      this.waiting = false;
      this.send(this.stopReply());
    }
  }

  close(): void {
    this.done = true;
    this.sock?.end();
    this.server.close();
  }

  private stopReply(): string {
    const e = this.last;
    return e.kind === 'stopped' ? `S${hex2(e.signal)}` : e.kind === 'exited' ? `W${hex2(e.status & 0xff)}` : `X${hex2(e.signal)}`;
  }

  private send(data: string): void {
    this.sock?.write(`$${data}#${checksum(data)}`);
  }

  private input(d: string): void {
    this.buf += d;
    for (;;) {
      // A bare 0x03 asks for a stop; acks are taken as they come.
      const brk = this.buf.indexOf('\x03');
      const start = this.buf.indexOf('$');
      if (brk >= 0 && (start < 0 || brk < start)) {
        this.buf = this.buf.slice(brk + 1);
        if (this.waiting) this.target.interrupt();
        continue;
      }
      if (start < 0) {
        this.buf = '';
        return;
      }
      const end = this.buf.indexOf('#', start);
      if (end < 0 || this.buf.length < end + 3) return;
      const data = this.buf.slice(start + 1, end);
      const sum = this.buf.slice(end + 1, end + 3);
      this.buf = this.buf.slice(end + 3);
      if (sum.toLowerCase() !== checksum(data)) {
        this.sock?.write('-');
        continue;
      }
      this.sock?.write('+');
      const reply = this.packet(data);
      if (reply !== undefined) this.send(reply);
    }
  }

  /** The reply to one packet; undefined: none now (the stop reply comes later). */
  private packet(p: string): string | undefined {
    const t = this.target;
    const ended = this.last.kind !== 'stopped';
    switch (p[0]) {
      case '?':
        return this.stopReply();
      case 'g':
        return ended ? 'E01' : toHex(t.registers());
      case 'm': {
        const m = /^m([0-9a-fA-F]+),([0-9a-fA-F]+)$/.exec(p);
        if (!m || ended) return 'E01';
        const len = parseInt(m[2]!, 16);
        if (len > 0x4000) return 'E01';
        const bytes = t.readMemory(BigInt(`0x${m[1]}`), len);
        return bytes ? toHex(bytes) : 'E14'; // EFAULT
      }
      case 'M': {
        const m = /^M([0-9a-fA-F]+),([0-9a-fA-F]+):([0-9a-fA-F]*)$/.exec(p);
        if (!m || ended) return 'E01';
        const bytes = Buffer.from(m[3]!, 'hex');
        if (bytes.length !== parseInt(m[2]!, 16)) return 'E01';
        return t.writeMemory(BigInt(`0x${m[1]}`), bytes) ? 'OK' : 'E14';
      }
      case 'Z':
      case 'z': {
        const m = /^[Zz]0,([0-9a-fA-F]+),[0-9a-fA-F]+$/.exec(p);
        if (!m) return ''; // hardware breakpoints and watchpoints: not offered
        const addr = BigInt(`0x${m[1]}`);
        return (p[0] === 'Z' ? t.insertBreakpoint(addr) : t.removeBreakpoint(addr)) ? 'OK' : 'E14';
      }
      case 'c':
      case 's':
      case 'C':
      case 'S': {
        if (ended) return this.stopReply();
        // c and s; C and S with a signal, which the guest is not given (a PV kernel has no signals to take):
        // after a crash's stop, going on lets the crash happen.
        const plain = p[0] === 'c' || p[0] === 's';
        if (plain ? p.length > 1 : !/^[CS][0-9a-fA-F]{2}$/.test(p)) return 'E01'; // resuming elsewhere (c ADDR) is not offered
        this.waiting = true;
        t.resume(p[0] === 's' || p[0] === 'S');
        return undefined;
      }
      case 'k':
        if (!ended) t.kill();
        return undefined;
      case 'D':
        this.done = true;
        t.resume(false);
        setImmediate(() => this.sock?.end());
        return 'OK';
      case 'H':
        return 'OK';
      case 'T':
        return 'OK';
      case 'q':
        if (p.startsWith('qSupported')) return 'PacketSize=4000';
        if (p === 'qAttached') return '1';
        if (p === 'qC') return 'QC1';
        if (p === 'qfThreadInfo') return 'm1';
        if (p === 'qsThreadInfo') return 'l';
        if (p === 'qOffsets') return 'Text=0;Data=0;Bss=0';
        return '';
      case 'v':
        if (p === 'vMustReplyEmpty') return '';
        if (p.startsWith('vKill')) {
          if (!ended) t.kill();
          return 'OK';
        }
        return '';
      default:
        return '';
    }
  }
}
