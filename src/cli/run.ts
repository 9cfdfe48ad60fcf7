// `paravane run`: build a domain from each kernel file (or from a config
// file's list), run them side by side under the scheduler, stream their
// consoles to stdout (each line prefixed with the domain's name when there
// are several). Exit status: 0 when the guest powers off, 1 when it
// crashes, shuts down otherwise, is killed or times out (reason on stderr),
// 2 on bad input (unreadable or malformed kernel, memory too small, bad
// flags), with a one-line message. Input: the user's arguments and files.

import { totalmem } from 'node:os';
import { HYPERCALLS } from '../abi/generated/hypercalls.js';
import { ShutdownReason } from '../abi/generated/sched.js';
import { EngineUnavailableError } from '../engine/errors.js';
import { selectEngine } from '../engine/select.js';
import { BuildError } from '../hv/builder.js';
import type { Domain, DomainEnd } from '../hv/domain.js';
import { GuestElfError, MAX_IMAGE_BYTES } from '../hv/elf.js';
import { Hypervisor, machineBytesFor } from '../hv/hypervisor.js';
import { EXIT_KINDS } from '../hv/vcpu.js';
import { domainSpecs, type SpecFlags } from './config.js';
import { formatSize, readInputFile } from './input-files.js';
import { parseSeconds } from './numbers.js';
import { UsageError } from './usage-error.js';

export { UsageError };

export interface RunCommandOptions extends SpecFlags {
  /** Where host input comes from (default: process.stdin). */
  stdin?: NodeJS.ReadableStream;
  timeout?: string;
  stats?: boolean;
  kvm: string;
}

const MIB = 1 << 20;

/** Wide enough for every hypercall name and count kind ('run started at wake-up'). */
const STATS_NAME_WIDTH = Math.max(...EXIT_KINDS.map((k) => k.length), ...HYPERCALLS.map((h) => h.name.length));

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
    const specs = domainSpecs(kernelPaths, opts, Math.floor(totalmem() / MIB));
    const timeout = opts.timeout === undefined ? undefined : parseSeconds(opts.timeout, '--timeout');
    const inputs = specs.map((sp) => {
      current = sp.kernel;
      const initrdCap = sp.memoryMib * MIB;
      return {
        sp,
        kernel: readInputFile('kernel', sp.kernel, { bytes: MAX_IMAGE_BYTES, why: `a kernel file may be at most ${formatSize(MAX_IMAGE_BYTES)}` }),
        initrd: sp.initrd === undefined ? undefined : readInputFile('initrd', sp.initrd, { bytes: initrdCap, why: `it must fit in its domain's memory (${formatSize(initrdCap)})` }),
      };
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
