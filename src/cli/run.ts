// `paravane run`: build a domain from a kernel file, run it, stream its
// console to stdout. Exit status: 0 when the guest powers off, 1 when it
// crashes, shuts down otherwise, is killed or times out (reason on stderr),
// 2 on bad input (unreadable or malformed kernel, memory too small, bad
// flags), with a one-line message. Input: the user's arguments and files.

import { readFileSync } from 'node:fs';
import { HYPERCALLS } from '../abi/generated/hypercalls.js';
import { ShutdownReason } from '../abi/generated/sched.js';
import { EngineUnavailableError } from '../engine/errors.js';
import { selectEngine } from '../engine/select.js';
import { BuildError } from '../hv/builder.js';
import type { Domain, DomainEnd } from '../hv/domain.js';
import { GuestElfError } from '../hv/elf.js';
import { Hypervisor, machineBytesFor } from '../hv/hypervisor.js';

export interface RunCommandOptions {
  memory: string;
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
    lines.push(`    ${name.padEnd(20)} ${String(n).padStart(10)}`);
  });
  if (!any) lines.push('    (none)');
  lines.push('  exits:');
  for (const [kind, n] of d.exitCounts.entries()) lines.push(`    ${kind.padEnd(20)} ${String(n).padStart(10)}`);
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

/** Runs the command; returns the exit status. Writes guest output to `out`, messages to `err`. */
export async function runCommand(
  kernelPath: string, opts: RunCommandOptions,
  io: { out: (b: Uint8Array) => void; err: (s: string) => void } = {
    out: (b) => process.stdout.write(b), err: (s) => process.stderr.write(s),
  },
): Promise<number> {
  let hv: Hypervisor | undefined;
  const abort = new AbortController();
  const onSignal = (sig: NodeJS.Signals): void => abort.abort(`interrupted by ${sig}`);
  try {
    const mib = parseMemory(opts.memory);
    const timeout = parseTimeout(opts.timeout);
    const kernel = readInput('kernel', kernelPath);
    const initrd = opts.initrd === undefined ? undefined : readInput('initrd', opts.initrd);
    const memoryBytes = mib << 20;
    const engine = selectEngine('kvm', opts.kvm);
    try {
      hv = new Hypervisor(engine, { memoryBytes: machineBytesFor(memoryBytes) + (initrd ? initrd.length : 0) });
      const name = kernelPath.split('/').pop()!.replace(/\.elf$/, '');
      const d = hv.createDomain(kernel, { name, memoryBytes, cmdline: opts.cmdline, initrd, console: io.out });
      process.once('SIGINT', onSignal).once('SIGTERM', onSignal);
      const t0 = process.hrtime.bigint();
      const end = await hv.run(d, { timeoutMs: timeout === undefined ? undefined : timeout * 1000, signal: abort.signal });
      if (end.kind === 'paused') throw new Error('the domain was paused, which `paravane run` never does');
      const seconds = Number(process.hrtime.bigint() - t0) / 1e9;
      if (opts.stats) io.err(formatStats(d, seconds));
      const { code, message } = describeEnd(d, end);
      if (message) io.err(`paravane: ${message}\n`);
      return code;
    } finally {
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
      io.err(`paravane: ${kernelPath}: ${e.message}\n`);
      return 2;
    }
    if (e instanceof EngineUnavailableError) {
      io.err(`paravane: ${e.message} (see \`paravane doctor\`)\n`);
      return 1;
    }
    throw e;
  }
}
