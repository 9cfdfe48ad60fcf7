// `paravane run`: build a domain from each kernel file (or from a config
// file's list), run them side by side under the scheduler, stream their
// consoles to stdout (each line prefixed with the domain's name when there
// are several). Exit status: 0 when the guest powers off, 1 when it
// crashes, shuts down otherwise, is killed or times out (reason on stderr),
// 2 on bad input (unreadable or malformed kernel, memory too small, bad
// flags), with a one-line message. Input: the user's arguments and files.

import { readFileSync } from 'node:fs';
import * as path from 'node:path';
import { HYPERCALLS } from '../abi/generated/hypercalls.js';
import { ShutdownReason } from '../abi/generated/sched.js';
import { EngineUnavailableError } from '../engine/errors.js';
import { selectEngine } from '../engine/select.js';
import { BuildError } from '../hv/domain/builder.js';
import type { Domain, DomainEnd } from '../hv/domain/domain.js';
import { GuestElfError } from '../hv/domain/elf.js';
import { CAP_RANGE, Hypervisor, inRange, machineBytesFor, WEIGHT_RANGE } from '../hv/hypervisor.js';
import { EXIT_KINDS } from '../hv/cpu/exit-counts.js';

export interface RunCommandOptions {
  memory: string;
  weight?: string;
  cap?: string;
  /** Where host input comes from (default: process.stdin). */
  stdin?: NodeJS.ReadableStream;
  /** A JSON file: { "domains": [ { "kernel", "name", "memory", "cmdline", "initrd", "weight", "cap" }, ... ] }. */
  config?: string;
  cmdline?: string;
  initrd?: string;
  timeout?: string;
  stats?: boolean;
  kvm: string;
}

/** Bad input: exit status 2 with this message. */
export class UsageError extends Error {}

const MAX_MEMORY_MIB = 16 * 1024;

function parseMemory(s: string): number {
  if (!/^\d+$/.test(s)) throw new UsageError(`--memory must be a whole number of MiB, not "${s}"`);
  const mib = Number(s);
  if (mib < 1 || mib > MAX_MEMORY_MIB) throw new UsageError(`--memory must be between 1 and ${MAX_MEMORY_MIB} MiB, not ${mib}`);
  return mib;
}

function parseTimeout(s: string | undefined): number | undefined {
  if (s === undefined) return undefined;
  const t = Number(s);
  if (!/^\d+(\.\d+)?$/.test(s) || !(t > 0) || t > 1e6) throw new UsageError(`--timeout must be a positive number of seconds, not "${s}"`);
  return t;
}

/** Wide enough for every hypercall name and count kind ('run started at wake-up'). */
const STATS_NAME_WIDTH = Math.max(...EXIT_KINDS.map((k) => k.length), ...HYPERCALLS.map((h) => h.name.length));

function readInput(what: string, path: string): Uint8Array {
  try {
    return readFileSync(path);
  } catch (e) {
    const err = e as NodeJS.ErrnoException;
    throw new UsageError(`cannot read ${what} ${path}: ${err.code === 'ENOENT' ? 'no such file' : err.code === 'EISDIR' ? 'it is a directory' : err.message}`);
  }
}

/** The --stats report: hypercalls by name, exits by kind. */
export function formatStats(d: Domain, seconds: number): string {
  const lines = [`paravane: domain ${d.id} (${d.name}) ran ${seconds.toFixed(3)} s; frames returned to the pool: ${d.framesReturned}`];
  lines.push('  hypercalls:');
  let any = false;
  d.hypercallCounts.forEach((n, nr) => {
    if (!n) return;
    any = true;
    const name = HYPERCALLS.find((h) => h.nr === nr)?.name ?? `#${nr}`;
    lines.push(`    ${name.padEnd(STATS_NAME_WIDTH)} ${String(n).padStart(10)}`);
  });
  if (!any) lines.push('    (none)');
  lines.push('  exits:');
  for (const [kind, n] of d.exitCounts.entries()) lines.push(`    ${kind.padEnd(STATS_NAME_WIDTH)} ${String(n).padStart(10)}`);
  return lines.join('\n') + '\n';
}

function describeEnd(d: Domain, end: DomainEnd): { code: number; message?: string } {
  switch (end.kind) {
    case 'shutdown':
      if (end.reason === ShutdownReason.SHUTDOWN_poweroff) return { code: 0 };
      return { code: 1, message: `domain ${d.id} (${d.name}) shut down with reason ${end.reasonName}` };
    case 'crashed':
      return { code: 1, message: `domain ${d.id} (${d.name}) crashed: ${end.reason}` };
    case 'killed':
      return { code: 1, message: `domain ${d.id} (${d.name}) killed: ${end.reason}` };
  }
}

/** One domain to run. */
interface DomainSpec {
  kernel: string;
  name: string;
  memoryMib: number;
  cmdline?: string;
  initrd?: string;
  weight?: number;
  cap?: number;
}

const SPEC_KEYS = new Set(['kernel', 'name', 'memory', 'cmdline', 'initrd', 'weight', 'cap']);

/** A whole number in `range`, from a flag or a config value; undefined when not given. */
function parseRanged(v: unknown, where: string, what: string, range: { min: number; max: number }): number | undefined {
  if (v === undefined) return undefined;
  const n = Number(v);
  if (!inRange(n, range)) throw new UsageError(`${where}: ${what} from ${range.min} to ${range.max}, not "${String(v)}"`);
  return n;
}
const parseWeight = (v: unknown, where: string) => parseRanged(v, where, 'weight must be a whole number', WEIGHT_RANGE);
const parseCap = (v: unknown, where: string) => parseRanged(v, where, 'cap must be a whole percentage', CAP_RANGE);

/** The domains to run: the kernels on the command line, or a config file's `domains` list. */
function domainSpecs(kernels: string[], opts: RunCommandOptions): DomainSpec[] {
  const base = {
    memoryMib: parseMemory(opts.memory), cmdline: opts.cmdline, initrd: opts.initrd,
    weight: parseWeight(opts.weight, '--weight'), cap: parseCap(opts.cap, '--cap'),
  };
  let specs: DomainSpec[];
  if (opts.config !== undefined) {
    if (kernels.length) throw new UsageError('give the kernels either on the command line or in --config, not both');
    let doc: unknown;
    try {
      doc = JSON.parse(Buffer.from(readInput('config file', opts.config)).toString('utf8'));
    } catch (e) {
      if (e instanceof UsageError) throw e;
      throw new UsageError(`${opts.config}: not valid JSON (${(e as Error).message})`);
    }
    const list = (doc as { domains?: unknown }).domains;
    if (!Array.isArray(list) || list.length === 0) throw new UsageError(`${opts.config}: needs a non-empty "domains" list`);
    specs = list.map((e: unknown, i) => {
      const where = `${opts.config}: domains[${i}]`;
      if (typeof e !== 'object' || e === null) throw new UsageError(`${where} must be an object`);
      const o = e as Record<string, unknown>;
      for (const k of Object.keys(o)) if (!SPEC_KEYS.has(k)) throw new UsageError(`${where}: unknown key "${k}"`);
      if (typeof o.kernel !== 'string') throw new UsageError(`${where}: "kernel" (a path) is required`);
      const str = (k: string) => { if (o[k] !== undefined && typeof o[k] !== 'string') throw new UsageError(`${where}: "${k}" must be a string`); return o[k] as string | undefined; };
      // Paths are relative to the config file.
      const rel = (f: string | undefined) => (f === undefined ? undefined : path.resolve(path.dirname(opts.config!), f));
      return {
        kernel: rel(o.kernel)!, name: str('name') ?? '', cmdline: str('cmdline') ?? base.cmdline, initrd: rel(str('initrd')) ?? base.initrd,
        memoryMib: o.memory === undefined ? base.memoryMib : parseMemory(String(o.memory)),
        weight: parseWeight(o.weight, where) ?? base.weight, cap: parseCap(o.cap, where) ?? base.cap,
      };
    });
  } else {
    if (!kernels.length) throw new UsageError('no kernel given');
    specs = kernels.map((kernel) => ({ kernel, name: '', ...base }));
  }
  // Names: given, or the kernel's file name; made unique.
  const seen = new Map<string, number>();
  for (const sp of specs) {
    const want = sp.name || path.basename(sp.kernel).replace(/\.elf$/, '');
    const n = (seen.get(want) ?? 0) + 1;
    seen.set(want, n);
    sp.name = n === 1 ? want : `${want}-${n}`;
  }
  return specs;
}

/** Replaces ${domid:NAME} in a command line with that domain's id. */
function substituteDomids(cmdline: string | undefined, ids: Map<string, number>, name: string): string | undefined {
  return cmdline?.replace(/\$\{domid:([^}]*)\}/g, (_, n: string) => {
    const id = ids.get(n);
    if (id === undefined) throw new UsageError(`${name}: the command line names domain "${n}", which is not being run`);
    return String(id);
  });
}

/** Console output of one of several domains: whole lines, each prefixed with the domain's name. */
function prefixedConsole(name: string, out: (b: Uint8Array) => void): { write: (b: Uint8Array) => void; flush: () => void } {
  let partial = '';
  const emit = (line: string) => out(Buffer.from(`[${name}] ${line}`, 'latin1'));
  return {
    write: (b) => {
      partial += Buffer.from(b).toString('latin1');
      let nl: number;
      while ((nl = partial.indexOf('\n')) >= 0) {
        emit(partial.slice(0, nl + 1));
        partial = partial.slice(nl + 1);
      }
    },
    flush: () => {
      if (partial) emit(partial + '\n');
      partial = '';
    },
  };
}

/** Runs the command; returns the exit status. Writes guest output to `out`, messages to `err`. */
export async function runCommand(
  kernelPaths: string[], opts: RunCommandOptions,
  io: { out: (b: Uint8Array) => void; err: (s: string) => void } = {
    out: (b) => process.stdout.write(b), err: (s) => process.stderr.write(s),
  },
): Promise<number> {
  let hv: Hypervisor | undefined;
  const abort = new AbortController();
  const onSignal = (sig: NodeJS.Signals): void => abort.abort(`interrupted by ${sig}`);
  let current = kernelPaths[0] ?? '';
  let detachInput: (() => void) | undefined;
  try {
    const specs = domainSpecs(kernelPaths, opts);
    const timeout = parseTimeout(opts.timeout);
    const inputs = specs.map((sp) => {
      current = sp.kernel;
      return { sp, kernel: readInput('kernel', sp.kernel), initrd: sp.initrd === undefined ? undefined : readInput('initrd', sp.initrd) };
    });
    const machine = inputs.reduce((sum, x) => sum + machineBytesFor(x.sp.memoryMib << 20) + (x.initrd ? x.initrd.length : 0), 0);
    const engine = selectEngine('kvm', opts.kvm);
    const consoles: Array<ReturnType<typeof prefixedConsole>> = [];
    try {
      hv = new Hypervisor(engine, { memoryBytes: machine });
      // Every domain is built before any runs, so that command lines can name the others' ids.
      const ids = new Map<string, number>();
      let next = hv.peekNextDomid();
      for (const x of inputs) ids.set(x.sp.name, next++);
      const domains: Domain[] = [];
      for (const x of inputs) {
        current = x.sp.kernel;
        const con = inputs.length > 1 ? prefixedConsole(x.sp.name, io.out) : undefined;
        if (con) consoles.push(con);
        const d = hv.createDomain(x.kernel, {
          name: x.sp.name, memoryBytes: x.sp.memoryMib << 20, cmdline: substituteDomids(x.sp.cmdline, ids, x.sp.name), initrd: x.initrd,
          console: con ? con.write : io.out,
        });
        if (d.id !== ids.get(x.sp.name)) throw new Error(`domain ${x.sp.name} got id ${d.id}, not ${ids.get(x.sp.name)}`);
        domains.push(d);
      }
      process.once('SIGINT', onSignal).once('SIGTERM', onSignal);
      // Host input goes to the first domain: its console ring, or console_io reads.
      const first = domains[0]!;
      const onInput = (b: Buffer) => { if (first.running) first.consoleInput(b); };
      const stdin = opts.stdin ?? process.stdin;
      stdin.on('data', onInput);
      detachInput = () => {
        stdin.off('data', onInput);
        stdin.pause();
      };
      const t0 = process.hrtime.bigint();
      const ends = await Promise.all(domains.map((d, i) => hv!.run(d, {
        timeoutMs: timeout === undefined ? undefined : timeout * 1000, signal: abort.signal, weight: inputs[i]!.sp.weight, cap: inputs[i]!.sp.cap,
      })));
      for (const c of consoles) c.flush();
      const seconds = Number(process.hrtime.bigint() - t0) / 1e9;
      let code = 0;
      ends.forEach((end, i) => {
        const d = domains[i]!;
        if (end.kind === 'paused') throw new Error('a domain was paused, which `paravane run` never does');
        if (opts.stats) io.err(formatStats(d, seconds));
        const r = describeEnd(d, end);
        if (r.message) io.err(`paravane: ${r.message}\n`);
        code = Math.max(code, r.code);
      });
      return code;
    } finally {
      detachInput?.();
      process.off('SIGINT', onSignal).off('SIGTERM', onSignal);
      hv?.close();
      engine.close();
    }
  } catch (e) {
    if (e instanceof UsageError || e instanceof BuildError) {
      io.err(`paravane: ${e.message}\n`);
      return 2;
    }
    if (e instanceof GuestElfError) {
      io.err(`paravane: ${current}: ${e.message}\n`);
      return 2;
    }
    if (e instanceof EngineUnavailableError) {
      io.err(`paravane: ${e.message} (see \`paravane doctor\`)\n`);
      return 1;
    }
    throw e;
  }
}
