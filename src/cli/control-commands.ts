// The commands that drive running domains through their runs' control
// sockets (src/toolstack/control.ts): `paravane list`, `info NAME`,
// `pause NAME`, `unpause NAME`, `shutdown NAME [--wait]`, `destroy NAME`
// and `dmesg`, each with --json. A name is looked for in every run this
// user has going; a name in none, or in more than one, is an error that
// says so. Output goes through the given writers; the status is returned.

import { attachConsole, ControlError, findRuns, request, runDir, type ControlRequest, type ControlResponse, type DomainInfo } from '../toolstack/control.js';
import { EXIT } from './exit-status.js';

export interface ControlIo {
  out: (s: string) => void;
  err: (s: string) => void;
}

/** A domain of a run, as `list` shows it. */
type Found = DomainInfo & { pid: number; socket: string };

/** Every domain of every run; runs that do not answer are left out (a note on stderr). */
async function everyDomain(io: ControlIo): Promise<Found[]> {
  const all: Found[] = [];
  for (const run of await findRuns()) {
    try {
      const r = await request(run.socket, { list: {} });
      for (const d of r.domains ?? []) all.push({ ...d, pid: run.pid, socket: run.socket });
    } catch (e) {
      io.err(`paravane: run ${run.pid} (${run.socket}) did not answer: ${(e as Error).message}\n`);
    }
  }
  return all;
}

async function findDomain(name: string, io: ControlIo): Promise<Found> {
  const matches = (await everyDomain(io)).filter((d) => d.name === name);
  if (matches.length === 0) throw new ControlError(`no running domain is named ${JSON.stringify(name)} (\`paravane list\` shows them; runs are found in ${runDir()})`);
  if (matches.length > 1) throw new ControlError(`${matches.length} runs have a domain named ${JSON.stringify(name)} (pids ${matches.map((m) => m.pid).join(', ')}): name domains apart with --config`);
  return matches[0]!;
}

const mib = (b: number): string => `${Math.round(b / (1 << 20))}`;
const secs = (ns: number): string => (ns / 1e9).toFixed(1);

/** Rows of cells as aligned columns: the first left-aligned, the rest right-aligned. */
function columns(rows: readonly string[][]): string {
  const widths = rows[0]!.map((_, i) => Math.max(...rows.map((r) => r[i]!.length)));
  return rows.map((r) => r.map((c, i) => (i === 0 ? c.padEnd(widths[i]!) : c.padStart(widths[i]!))).join('  ').trimEnd()).join('\n') + '\n';
}

function table(domains: readonly Found[]): string {
  return columns([['NAME', 'ID', 'PID', 'STATE', 'VCPUS', 'MEM(MiB)', 'CPU(s)', 'UP(s)'],
    ...domains.map((d) => [d.name, String(d.id), String(d.pid), d.state, String(d.vcpus), mib(d.memoryBytes), secs(d.cpuNs), secs(d.uptimeNs)])]);
}

function describe(d: Found): string {
  return [
    `name      ${d.name}`, `id        ${d.id}`, `run       pid ${d.pid} (${d.socket})`, `state     ${d.state}${d.end ? ` (${d.end})` : ''}`,
    `kernel    ${d.kernel}`, `vcpus     ${d.vcpus}`, `memory    ${mib(d.memoryBytes)} MiB`, `cpu time  ${secs(d.cpuNs)} s`, `uptime    ${secs(d.uptimeNs)} s`,
    `hypercalls ${d.hypercalls}`,
  ].join('\n') + '\n';
}

/** Runs one control command; returns the exit status. */
export async function controlCommand(what: 'list' | 'info' | 'pause' | 'unpause' | 'shutdown' | 'destroy' | 'dmesg', name: string | undefined,
  opts: { json?: boolean; wait?: boolean }, io: ControlIo): Promise<number> {
  try {
    if (what === 'list') {
      const all = await everyDomain(io);
      io.out(opts.json ? JSON.stringify(all.map(({ socket: _s, ...d }) => d), null, 2) + '\n' : all.length ? table(all) : 'no domains are running\n');
      return EXIT.POWEROFF;
    }
    if (what === 'dmesg') {
      const runs = await findRuns();
      const logs: Array<{ pid: number; log: string }> = [];
      for (const run of runs) {
        const r = await request(run.socket, { dmesg: {} });
        logs.push({ pid: run.pid, log: Buffer.from(r.log ?? []).toString('latin1') });
      }
      io.out(opts.json ? JSON.stringify(logs, null, 2) + '\n' : logs.map((l) => (runs.length > 1 ? `== run ${l.pid}\n` : '') + l.log).join(''));
      return EXIT.POWEROFF;
    }
    const d = await findDomain(name!, io);
    const r: ControlResponse = await request(d.socket, { [what]: { name: d.name } } as ControlRequest);
    if (r.error) throw new ControlError(r.error);
    let now = r.domains?.[0] ? { ...r.domains[0], pid: d.pid, socket: d.socket } : d;
    if (what === 'shutdown' && opts.wait) {
      // Until the guest has ended (its run keeps it listed as dead), or its run has gone.
      for (;;) {
        let info: ControlResponse;
        try {
          info = await request(d.socket, { info: { name: d.name } });
        } catch {
          // The run exited with its last domain: how it ended is on that run's stderr.
          now = { ...now, state: 'dead', end: 'its run has exited' };
          break;
        }
        if (info.error || info.domains?.[0]?.end) {
          if (info.domains?.[0]) now = { ...info.domains[0], pid: d.pid, socket: d.socket };
          break;
        }
        await new Promise((res) => setTimeout(res, 100));
      }
    }
    if (opts.json) io.out(JSON.stringify((({ socket: _s, ...x }) => x)(now), null, 2) + '\n');
    else if (what === 'info') io.out(describe(now));
    else io.out(`${d.name}: ${what === 'shutdown' ? (opts.wait ? `ended: ${now.end || now.state}` : 'asked to shut down') : now.state}\n`);
    return EXIT.POWEROFF;
  } catch (e) {
    if (e instanceof ControlError || (e as NodeJS.ErrnoException).code) {
      io.err(`paravane: ${(e as Error).message}\n`);
      return EXIT.USAGE;
    }
    throw e;
  }
}

/** Ctrl-]: detaches an attached console, as `xl console` does. */
export const DETACH_KEY = 0x1d;

/**
 * `paravane console NAME`: the domain's console, attached from this
 * process: its output on stdout, stdin (raw on a terminal) to the domain.
 * Ctrl-] detaches (the domain runs on); the domain's end closes it.
 */
export async function consoleCommand(name: string, io: ControlIo & { write: (b: Uint8Array) => void; stdin: NodeJS.ReadableStream & { isTTY?: boolean; setRawMode?: (on: boolean) => void } }): Promise<number> {
  let attached;
  try {
    const d = await findDomain(name, io);
    attached = { d, ...(await attachConsole(d.socket, d.name)) };
  } catch (e) {
    if (e instanceof ControlError || (e as NodeJS.ErrnoException).code) {
      io.err(`paravane: ${(e as Error).message}\n`);
      return EXIT.USAGE;
    }
    throw e;
  }
  const { d, sock, first } = attached;
  const raw = io.stdin.isTTY === true && typeof io.stdin.setRawMode === 'function';
  io.err(`paravane: attached to ${d.name} (run ${d.pid}); Ctrl-] detaches\n`);
  if (first.length) io.write(first);
  return new Promise<number>((resolve) => {
    let detached = false;
    const finish = (why: string): void => {
      io.stdin.off('data', onKeys);
      io.stdin.pause();
      if (raw) io.stdin.setRawMode!(false);
      io.err(`\nparavane: ${why}\n`);
      resolve(EXIT.POWEROFF);
    };
    const onKeys = (b: Buffer): void => {
      const at = b.indexOf(DETACH_KEY);
      if (at < 0) {
        sock.write(b);
        return;
      }
      if (at > 0) sock.write(b.subarray(0, at));
      detached = true;
      sock.end();
    };
    sock.on('data', (b: Buffer) => io.write(b));
    sock.on('close', () => finish(detached ? `detached from ${d.name}` : `${d.name}'s console closed (the domain has ended)`));
    sock.on('error', () => {});
    if (raw) io.stdin.setRawMode!(true);
    io.stdin.on('data', onKeys);
    io.stdin.resume();
  });
}

/** One domain in a `top` sample: its share of a CPU and its hypercall rate since the last sample (since it started, at the first). */
export interface TopRow {
  name: string;
  id: number;
  pid: number;
  state: string;
  cpuPercent: number;
  hypercallsPerSecond: number;
  hypercalls: number;
}

/** Rates between two samples of the same domains (matched by run and id). */
export function topRows(now: readonly DomainInfo[] & readonly { pid: number }[], before: ReadonlyMap<string, DomainInfo>): TopRow[] {
  return now.map((d) => {
    const key = `${(d as Found).pid}:${d.id}`;
    const b = before.get(key);
    const dt = b ? d.uptimeNs - b.uptimeNs : d.uptimeNs;
    const cpu = b ? d.cpuNs - b.cpuNs : d.cpuNs;
    const calls = b ? d.hypercalls - b.hypercalls : d.hypercalls;
    return {
      name: d.name, id: d.id, pid: (d as Found).pid, state: d.state, hypercalls: d.hypercalls,
      cpuPercent: dt > 0 ? Math.round((cpu / dt) * 1000) / 10 : 0,
      hypercallsPerSecond: dt > 0 ? Math.round((calls / dt) * 1e9) : 0,
    };
  });
}

function topTable(rows: readonly TopRow[]): string {
  return columns([['NAME', 'ID', 'PID', 'STATE', 'CPU%', 'HYPERCALLS/s', 'HYPERCALLS'],
    ...rows.map((r) => [r.name, String(r.id), String(r.pid), r.state, r.cpuPercent.toFixed(1), String(r.hypercallsPerSecond), String(r.hypercalls)])]);
}

/**
 * `paravane top`: every domain's CPU share and hypercall rate, refreshed
 * every `delay` seconds, `iterations` times (for ever by default: Ctrl-C
 * ends it). On a terminal each refresh replaces the last; --json prints a
 * JSON array per refresh, one per line.
 */
export async function topCommand(opts: { iterations?: string; delay?: string; json?: boolean }, io: ControlIo & { tty: boolean }): Promise<number> {
  const iterations = opts.iterations === undefined ? Infinity : Number(opts.iterations);
  const delay = opts.delay === undefined ? 1 : Number(opts.delay);
  if (!(Number.isInteger(iterations) || iterations === Infinity) || iterations < 1) {
    io.err(`paravane: --iterations ${opts.iterations}: a whole number, at least 1\n`);
    return EXIT.USAGE;
  }
  if (!Number.isFinite(delay) || delay < 0.1 || delay > 3600) {
    io.err(`paravane: --delay ${opts.delay}: seconds, from 0.1 to 3600\n`);
    return EXIT.USAGE;
  }
  let before = new Map<string, DomainInfo>();
  for (let i = 0; i < iterations; i++) {
    if (i > 0) await new Promise((r) => setTimeout(r, delay * 1000));
    const now = await everyDomain(io);
    const rows = topRows(now, before);
    before = new Map(now.map((d) => [`${d.pid}:${d.id}`, d]));
    if (opts.json) io.out(JSON.stringify(rows) + '\n');
    else io.out((io.tty ? '\x1b[H\x1b[2J' : i > 0 ? '\n' : '') + (rows.length ? topTable(rows) : 'no domains are running\n'));
  }
  return EXIT.POWEROFF;
}
