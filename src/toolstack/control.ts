// The control API's transport (abi/toolstack/control.proto): where runs
// put their sockets, the framing (one length-delimited Request, one
// Response, per connection), a server for `paravane run` and a client for
// the commands that drive it. The directory is made 0700 and each socket
// 0600, so only their owner (and root) can connect: the kernel refuses
// everyone else. A socket whose run has gone (a crash, a kill -9) is found
// stale when nothing answers on it, and removed. Inputs: requests (from
// local processes of the same user: trusted to be the user, checked as
// data: an unknown name or a malformed message is an error reply).

import * as fs from 'node:fs';
import * as net from 'node:net';
import * as os from 'node:os';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';
import protobuf from 'protobufjs';

const SCHEMA = path.join(fileURLToPath(new URL('../..', import.meta.url)), 'abi/toolstack/control.proto');
/** The largest message either side accepts. */
const MAX_MESSAGE = 4 << 20;

let types: { req: protobuf.Type; res: protobuf.Type } | undefined;
function schema(): { req: protobuf.Type; res: protobuf.Type } {
  if (!types) {
    const root = protobuf.loadSync(SCHEMA);
    types = { req: root.lookupType('paravane.control.Request'), res: root.lookupType('paravane.control.Response') };
  }
  return types;
}

export type ControlRequest =
  | { list: Record<string, never> }
  | { info: { name: string } } | { pause: { name: string } } | { unpause: { name: string } }
  | { shutdown: { name: string } } | { destroy: { name: string } }
  | { dmesg: Record<string, never> } | { console: { name: string } };

/** A reply that turns the connection into a byte stream (console): `attach` gets the socket once the response is sent. */
export interface StreamingReply {
  response: ControlResponse;
  attach: (sock: net.Socket) => void;
}

export interface DomainInfo {
  id: number;
  name: string;
  state: string;
  vcpus: number;
  memoryBytes: number;
  cpuNs: number;
  uptimeNs: number;
  kernel: string;
  end: string;
  hypercalls: number;
}

export interface ControlResponse {
  error?: string;
  pid?: number;
  domains?: DomainInfo[];
  log?: Uint8Array;
}

export class ControlError extends Error {}

/** Where runs put their sockets (see control.proto). */
export function runDir(env: NodeJS.ProcessEnv = process.env): string {
  if (env.PARAVANE_RUN_DIR) return env.PARAVANE_RUN_DIR;
  if (env.XDG_RUNTIME_DIR) return path.join(env.XDG_RUNTIME_DIR, 'paravane');
  if (process.getuid?.() === 0) return '/run/paravane';
  return path.join(os.tmpdir(), `paravane-${process.getuid?.() ?? 'user'}`);
}

/** Makes the run directory (0700, this user's) or says why it cannot be used. */
export function ensureRunDir(dir: string): void {
  fs.mkdirSync(dir, { recursive: true, mode: 0o700 });
  const st = fs.statSync(dir);
  if (!st.isDirectory()) throw new ControlError(`${dir} is not a directory`);
  if (process.getuid && st.uid !== process.getuid()) throw new ControlError(`${dir} belongs to another user (uid ${st.uid}): set PARAVANE_RUN_DIR`);
  if (st.mode & 0o077) fs.chmodSync(dir, 0o700);
}

/** Reads one length-delimited message from `chunks` once it is all there; undefined until then. */
function framed(buf: Buffer): { body: Buffer; rest: Buffer } | undefined {
  let len = 0, shift = 0, at = 0;
  for (;;) {
    if (at >= buf.length) return undefined;
    const b = buf[at++]!;
    len += (b & 0x7f) * 2 ** shift;
    shift += 7;
    if (!(b & 0x80)) break;
    if (shift > 28) throw new ControlError('a message length longer than 4 bytes');
  }
  if (len > MAX_MESSAGE) throw new ControlError(`a message of ${len} bytes (at most ${MAX_MESSAGE})`);
  if (buf.length < at + len) return undefined;
  return { body: buf.subarray(at, at + len), rest: buf.subarray(at + len) };
}

function encode(type: protobuf.Type, obj: object): Uint8Array {
  return type.encodeDelimited(type.fromObject(obj)).finish();
}

function decodeResponse(body: Uint8Array): ControlResponse {
  const { res } = schema();
  const o = res.toObject(res.decode(body), { longs: Number, bytes: Buffer, defaults: false, arrays: true }) as ControlResponse & { domains?: DomainInfo[] };
  return o;
}

/** The socket `paravane run` serves the control API on, while it runs. */
export class ControlServer {
  readonly path: string;
  private readonly server: net.Server;

  private constructor(p: string, server: net.Server) {
    this.path = p;
    this.server = server;
  }

  /** Listens at <runDir>/<pid>.sock; `handle` answers each request. */
  static async start(handle: (req: ControlRequest) => ControlResponse | StreamingReply, dir = runDir()): Promise<ControlServer> {
    ensureRunDir(dir);
    const p = path.join(dir, `${process.pid}.sock`);
    fs.rmSync(p, { force: true }); // a stale socket of an earlier process with this pid
    const { req } = schema();
    const server = net.createServer((sock) => {
      let buf = Buffer.alloc(0);
      sock.on('error', () => sock.destroy());
      sock.on('data', (d) => {
        buf = Buffer.concat([buf, d]);
        let msg;
        try {
          msg = framed(buf);
        } catch (e) {
          sock.end(encode(schema().res, { error: `bad request: ${(e as Error).message}`, pid: process.pid }));
          return;
        }
        if (!msg) return;
        sock.removeAllListeners('data');
        let request: ControlRequest;
        try {
          const o = req.toObject(req.decode(msg.body), { oneofs: true, defaults: true }) as { what?: string } & Record<string, unknown>;
          if (!o.what) throw new ControlError('the request asks for nothing');
          request = { [o.what]: o[o.what] ?? {} } as ControlRequest;
        } catch (e) {
          sock.end(encode(schema().res, { error: `bad request: ${(e as Error).message}`, pid: process.pid }));
          return;
        }
        let r: ControlResponse | StreamingReply;
        try {
          r = handle(request);
        } catch (e) {
          sock.end(encode(schema().res, { error: `internal error: ${(e as Error).message}`, pid: process.pid }));
          return;
        }
        if ('attach' in r) {
          sock.write(encode(schema().res, { ...r.response, pid: process.pid }));
          if (msg.rest.length) sock.unshift(msg.rest);
          r.attach(sock);
        } else {
          sock.end(encode(schema().res, { ...r, pid: process.pid }));
        }
      });
    });
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(p, () => resolve());
    });
    fs.chmodSync(p, 0o600);
    // Not unref'd: a run whose domains are all paused is waiting for `paravane unpause` on this socket.
    return new ControlServer(p, server);
  }

  close(): void {
    this.server.close();
    fs.rmSync(this.path, { force: true });
  }
}

/**
 * Connects to the run serving `socket`, sends `req` and reads its one
 * response; resolves with the response, the socket still open, and any
 * bytes that came after the response (a console's first output).
 * Rejects on a connection error (ECONNREFUSED: nothing serves it), a bad
 * frame, a close before the answer, or `timeoutMs` without one.
 */
function exchange(socket: string, req: ControlRequest, timeoutMs: number): Promise<{ sock: net.Socket; response: ControlResponse; rest: Buffer }> {
  return new Promise((resolve, reject) => {
    const sock = net.createConnection(socket);
    let buf = Buffer.alloc(0);
    const fail = (e: Error): void => {
      clearTimeout(timer);
      sock.destroy();
      reject(e);
    };
    const timer = setTimeout(() => fail(new ControlError(`${socket} did not answer within ${timeoutMs / 1000} s`)), timeoutMs);
    const onData = (d: Buffer): void => {
      buf = Buffer.concat([buf, d]);
      let msg;
      try {
        msg = framed(buf);
      } catch (e) {
        fail(e as Error);
        return;
      }
      if (!msg) return;
      clearTimeout(timer);
      sock.off('data', onData);
      sock.off('end', onEnd);
      try {
        resolve({ sock, response: decodeResponse(msg.body), rest: Buffer.from(msg.rest) });
      } catch (e) {
        fail(e as Error);
      }
    };
    const onEnd = (): void => fail(new ControlError(`${socket} closed without an answer`));
    sock.on('connect', () => sock.write(encode(schema().req, req)));
    sock.on('data', onData);
    sock.on('end', onEnd);
    sock.once('error', fail);
  });
}

/** Sends one request to the run serving `socket`; its response, or an error (ECONNREFUSED: nothing serves it). */
export async function request(socket: string, req: ControlRequest, timeoutMs = 10_000): Promise<ControlResponse> {
  const { sock, response } = await exchange(socket, req, timeoutMs);
  sock.destroy();
  return response;
}

/** The runs serving the control API now: their sockets, by pid. Stale sockets (nothing answers) are removed. */
export async function findRuns(dir = runDir()): Promise<Array<{ pid: number; socket: string }>> {
  let names: string[];
  try {
    names = fs.readdirSync(dir);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return [];
    throw e;
  }
  const runs: Array<{ pid: number; socket: string }> = [];
  for (const n of names) {
    const m = /^(\d+)\.sock$/.exec(n);
    if (!m) continue;
    const socket = path.join(dir, n);
    const pid = Number(m[1]);
    let alive = true;
    try {
      process.kill(pid, 0);
    } catch (e) {
      alive = (e as NodeJS.ErrnoException).code === 'EPERM';
    }
    if (!alive) {
      fs.rmSync(socket, { force: true }); // its run is gone
      continue;
    }
    runs.push({ pid, socket });
  }
  return runs.sort((a, b) => a.pid - b.pid);
}

/**
 * Attaches to a domain's console through `socket`: returns the socket once
 * the run has accepted (its response had no error), carrying raw bytes
 * both ways from then on, and whatever output came with the response.
 */
export async function attachConsole(socket: string, name: string, timeoutMs = 10_000): Promise<{ sock: net.Socket; first: Buffer }> {
  const { sock, response, rest } = await exchange(socket, { console: { name } }, timeoutMs);
  if (response.error) {
    sock.destroy();
    throw new ControlError(response.error);
  }
  return { sock, first: rest };
}
