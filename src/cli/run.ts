// `paravane run`: builds a domain per kernel (or config entry), runs them side
// by side, streams their consoles to stdout (prefixed when several) and reports
// each domain's end as it happens. Input: the user's arguments and files
// (untrusted), checked by run-plan.ts before the engine is opened.

import * as fs from 'node:fs';
import { HYPERCALLS } from '../abi/generated/hypercalls.js';
import { EngineUnavailableError } from '../engine/errors.js';
import { ENGINE_CHOICES, selectEngine, type EngineChoice } from '../engine/select.js';
import type { Engine } from '../engine/types.js';
import { BuildError } from '../hv/domain/builder.js';
import type { Domain, DomainEnd } from '../hv/domain/domain.js';
import { GuestElfError } from '../hv/domain/elf.js';
import { Hypervisor } from '../hv/hypervisor.js';
import { EXIT_KINDS } from '../hv/cpu/exit-counts.js';
import { endMessage, EXIT, outcomeOf, runStatus, statusOf, type Outcome } from './exit-status.js';
import { checkFvPlan, RUN_MODES, runFvPlan, type RunMode } from './run-fv.js';
import { FIRST_DOMID, planRun, type RunFlags, type RunPlan } from './run-plan.js';
import { CONSOLE_QUIT, onOutputError, RunStop } from './stop.js';
import { ConsoleInput, ConsoleOutput, type ConsoleSink } from './consoles.js';
import { UsageError } from './usage-error.js';
import { TraceWriter } from '../toolstack/trace-file.js';
import { hypercallName } from '../toolstack/trace-summary.js';
import { ControlServer } from '../toolstack/control.js';
import { controlHandler, LogBuffer, type ControlledDomain } from './run-control.js';
import { DomainDebugger } from './run-gdb.js';
import { GdbServer, SIGKILL, SIGSEGV } from '../toolstack/gdb-remote.js';

/** This paravane's version (package.json), as traces record it. */
const PARAVANE_VERSION = (JSON.parse(fs.readFileSync(new URL('../../package.json', import.meta.url), 'utf8')) as { version: string }).version;

export { UsageError, endMessage };

/** Set in the environment of the background run `run --detach` starts: it does not stop when its parent goes. */
export const DETACHED_ENV = 'PARAVANE_DETACHED';

export interface RunCommandOptions extends RunFlags {
  /** Where host input comes from (default: process.stdin). */
  stdin?: NodeJS.ReadableStream;
  stats?: boolean;
  /** File the hypervisor's log (every domain's console_io output) is appended to. */
  log?: string;
  kvm: string;
  /** auto (default), kvm or soft. */
  engine?: string;
  /** pv (default): PV kernels; fv-trap: plain kernels, trapped and emulated (run-fv.ts). */
  mode?: string;
  /** File every hypercall, exit and upcall is recorded in (src/toolstack/trace-file.ts). */
  trace?: string;
  /** TCP port (on 127.0.0.1) a GDB remote stub serves the one domain on; 0: any free port. */
  gdb?: string;
  /** Each domain's end as one JSON line on stderr (with its statistics) instead of the messages. */
  json?: boolean;
}

/** Where a run writes: guest output, messages, and how it learns that its output is gone. */
export interface RunIo {
  out: (b: Uint8Array) => void;
  err: (s: string) => void;
  /** Calls back at the first failed write to `out`; returns the function that stops listening. */
  onOutError: (cb: (e: NodeJS.ErrnoException) => void) => () => void;
  /** Whether `err` is a terminal (a person reads it: hints go there). */
  errIsTty?: boolean;
}

/** Standard output and error; writes to a stdout that failed (EPIPE) are dropped. */
export function processIo(): RunIo {
  return {
    out: (b) => { if (process.stdout.writable) process.stdout.write(b); },
    err: (s) => { if (process.stderr.writable) process.stderr.write(s); },
    onOutError: (cb) => onOutputError(process.stdout, cb),
    errIsTty: process.stderr.isTTY === true,
  };
}

/** Wide enough for every hypercall name and count kind ('run started at wake-up'). */
const STATS_NAME_WIDTH = Math.max(...EXIT_KINDS.map((k) => k.length), ...HYPERCALLS.map((h) => h.name.length));

/** What the --stats report reads of a domain. */
export type StatsDomain = Pick<Domain, 'id' | 'name' | 'framesReturned' | 'hypercallCounts' | 'exitCounts' | 'cpuNs'> & { ports: Pick<Domain['ports'], 'counts'>; instructionsRetired?: number };

const seconds = (ns: bigint): string => (Number(ns) / 1e9).toFixed(3);

/**
 * The --stats report of one domain: how long it ran (from the start of the
 * run to its own end), its CPU time, hypercalls by name, exits by kind.
 */
export function formatStats(d: StatsDomain, ranNs: bigint): string {
  const lines = [`paravane: domain ${d.id} (${d.name}) ran ${seconds(ranNs)} s, ${seconds(d.cpuNs)} s of it on the CPU; frames returned to the pool: ${d.framesReturned}`];
  lines.push('  hypercalls:');
  let any = false;
  d.hypercallCounts.forEach((n, nr) => {
    if (!n) return;
    any = true;
    const name = hypercallName(nr);
    lines.push(`    ${name.padEnd(STATS_NAME_WIDTH)} ${String(n).padStart(10)}`);
  });
  if (!any) lines.push('    (none)');
  lines.push('  exits:');
  for (const [kind, n] of d.exitCounts.entries()) lines.push(`    ${kind.padEnd(STATS_NAME_WIDTH)} ${String(n).padStart(10)}`);
  // Emulated in and out (a Linux boot's port probes and PIT calibration), each also an exit counted above.
  lines.push(`  port I/O: ${d.ports.counts.reads} reads, ${d.ports.counts.writes} writes`);
  // Where the engine counts them (the software engine): the same guest retires the same count every run.
  if (d.instructionsRetired !== undefined) lines.push(`  instructions retired: ${d.instructionsRetired}`);
  return lines.join('\n') + '\n';
}

/**
 * A domain's end as `run --json` prints it: who, how it ended, the exit
 * status that end alone gives, how long it ran, and its counts (the
 * --stats figures, by name).
 */
export function endRecord(d: StatsDomain, end: DomainEnd, outcome: Outcome, ranNs: bigint): Record<string, unknown> {
  const hypercalls: Record<string, number> = {};
  d.hypercallCounts.forEach((n, nr) => {
    if (n) hypercalls[hypercallName(nr)] = n;
  });
  return {
    domain: d.id, name: d.name, end, status: statusOf(outcome), ranNs: Number(ranNs), cpuNs: Number(d.cpuNs), framesReturned: d.framesReturned,
    hypercalls, exits: Object.fromEntries(d.exitCounts.entries()), ports: { ...d.ports.counts },
    ...(d.instructionsRetired === undefined ? {} : { instructionsRetired: d.instructionsRetired }),
  };
}

/** Output of one of several sources: whole lines, each after `prefix` (`[name] ` on the console, `(d1) ` in the log). */
export function prefixedLines(prefix: string, out: (b: Uint8Array) => void): { write: (b: Uint8Array) => void; flush: () => void } {
  let partial = '';
  const emit = (line: string) => out(Buffer.from(`${prefix}${line}`, 'latin1'));
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

/** Runs the command; returns the exit status. Writes guest output to `io.out`, messages to `io.err`. */
export async function runCommand(kernelPaths: string[], opts: RunCommandOptions, io: RunIo = processIo()): Promise<number> {
  // The parent as it was at the start: one that goes away while the domains are built counts too.
  // A detached run (run --detach's child) outlives its parent by design.
  const parent = process.env[DETACHED_ENV] === '1' ? null : process.ppid;
  let plan: RunPlan;
  const mode = (opts.mode ?? 'pv') as RunMode;
  try {
    if (!RUN_MODES.includes(mode)) throw new UsageError(`--mode ${opts.mode}: choose ${RUN_MODES.join(', ')}`);
    plan = planRun(kernelPaths, opts);
    if (mode === 'fv-trap') plan = checkFvPlan(plan, opts);
  } catch (e) {
    if (!(e instanceof UsageError)) throw e;
    io.err(`paravane: ${e.message}\n`);
    return EXIT.USAGE;
  }
  if (opts.gdb !== undefined) {
    const port = Number(opts.gdb);
    const problem = !/^\d+$/.test(opts.gdb) || port > 65535 ? `--gdb ${opts.gdb}: a TCP port, 0 to 65535 (0: any free one)`
      : mode === 'fv-trap' ? '--gdb debugs PV domains (not --mode fv-trap)'
        : plan.domains.length !== 1 ? `--gdb debugs one domain, and this run has ${plan.domains.length}` : undefined;
    if (problem) {
      io.err(`paravane: ${problem}\n`);
      return EXIT.USAGE;
    }
  }
  if (opts.trace !== undefined && mode === 'fv-trap') {
    io.err('paravane: --trace records hypercalls, which plain kernels (--mode fv-trap) do not make\n');
    return EXIT.USAGE;
  }
  // The log and trace files are input too: one that cannot be opened is refused before the engine opens.
  let logFd: number | undefined, traceFd: number | undefined;
  try {
    if (opts.log !== undefined) logFd = openOutput('--log', opts.log, 'a');
    if (opts.trace !== undefined) traceFd = openOutput('--trace', opts.trace, 'w');
    return await runWithEngine(plan, opts, io, parent, logFd, traceFd);
  } catch (e) {
    if (!(e instanceof UsageError)) throw e;
    io.err(`paravane: ${e.message}\n`);
    return EXIT.USAGE;
  } finally {
    if (logFd !== undefined) fs.closeSync(logFd);
    if (traceFd !== undefined) fs.closeSync(traceFd);
  }
}

/** A file paravane writes (`flags`: 'a' appends, 'w' truncates), readable by its owner only when new. */
function openOutput(flag: string, file: string, flags: 'a' | 'w'): number {
  try {
    return fs.openSync(file, flags, 0o600);
  } catch (e) {
    throw new UsageError(`${flag} ${file}: ${(e as Error).message}`);
  }
}

async function runWithEngine(plan: RunPlan, opts: RunCommandOptions, io: RunIo, parent: number | null, logFd: number | undefined, traceFd: number | undefined): Promise<number> {
  let engine: Engine;
  const choice = (opts.engine ?? 'auto') as EngineChoice;
  if (!ENGINE_CHOICES.includes(choice)) {
    io.err(`paravane: --engine ${opts.engine}: choose ${ENGINE_CHOICES.join(', ')}\n`);
    return EXIT.USAGE;
  }
  try {
    engine = selectEngine(choice, opts.kvm);
    if (choice === 'auto' && engine.name === 'soft' && io.errIsTty) io.err(`paravane: ${opts.kvm} does not exist: running on the software engine, an interpreter (slow; --engine soft chooses it without this note)\n`);
  } catch (e) {
    if (!(e instanceof EngineUnavailableError)) throw e;
    io.err(`paravane: ${e.message} (see \`paravane doctor\`)\n`);
    return EXIT.ENGINE_UNAVAILABLE;
  }
  try {
    if (opts.mode === 'fv-trap') return await runFvPlan(engine, plan, opts, io, parent);
    return await runPlan(engine, plan, opts, io, parent, logFd, traceFd);
  } finally {
    engine.close();
  }
}

async function runPlan(engine: Engine, plan: RunPlan, opts: RunCommandOptions, io: RunIo, parent: number | null, logFd: number | undefined, traceFd: number | undefined): Promise<number> {
  const hv = new Hypervisor(engine, { memoryBytes: plan.machineBytes });
  const cleanups: Array<() => void> = [];
  let trace: TraceWriter | undefined;
  try {
    if (hv.peekNextDomid() !== FIRST_DOMID) throw new Error(`a new hypervisor's first domain id is ${hv.peekNextDomid()}, not ${FIRST_DOMID}`);
    // Every domain is built before any runs, so that command lines can name the others' ids.
    // Several domains share the terminal: each line after its domain's name (consoles.ts).
    const output = plan.domains.length > 1 ? new ConsoleOutput(io.out) : undefined;
    const consoles: Array<ConsoleSink | undefined> = [];
    const dmesg = new LogBuffer();
    const taps = plan.domains.map(() => new Set<(b: Uint8Array) => void>());
    const ends = plan.domains.map(() => new Set<() => void>());
    const logs: Array<ReturnType<typeof prefixedLines> | undefined> = [];
    const domains: Domain[] = [];
    for (const [i, x] of plan.domains.entries()) {
      const con = output?.source(`[${x.spec.name}] `);
      consoles.push(con);
      // The hypervisor's log: every console_io write, each line after its domain's id, as Xen's log has it
      // (kept for `paravane dmesg`, and appended to --log's file).
      const log = prefixedLines(`(d${x.id}) `, (b) => {
        if (logFd !== undefined) fs.writeSync(logFd, b);
        dmesg.push(b);
      });
      logs.push(log);
      let d: Domain;
      try {
        d = hv.createDomain(x.kernelFile, {
          name: x.spec.name, memoryBytes: x.memoryBytes, cmdline: x.cmdline, initrd: x.initrd, vcpus: x.spec.vcpus, log: log.write,
          // The terminal, and every console attached from another process (`paravane console`).
          console: (b) => {
            (con ? con.write : io.out)(b);
            for (const t of taps[i]!) t(b);
          },
        });
      } catch (e) {
        // What the plan cannot see: bootstrap page tables that do not validate.
        if (e instanceof BuildError || e instanceof GuestElfError) throw new UsageError(`${x.spec.entry ?? x.spec.kernel}: ${e.message}`);
        throw e;
      }
      if (d.id !== x.id) throw new Error(`domain ${x.spec.name} got id ${d.id}, not ${x.id}`);
      domains.push(d);
    }

    // Every hypercall, exit and upcall of every domain, from here on (abi/toolstack/trace.proto).
    if (traceFd !== undefined) {
      const writer = trace = new TraceWriter(traceFd, {
        paravane: PARAVANE_VERSION, engine: engine.name, startHostNs: process.hrtime.bigint(),
        domains: domains.map((d, i) => ({ id: d.id, name: d.name, kernel: plan.domains[i]!.spec.kernel })),
      });
      for (const d of domains) d.trace = writer.sink(d.id, () => hv.clock.now());
    }

    // One stop (signal, parent gone, stdout closed) ends every domain still running.
    // The terminal's own mode comes back at the first stop: a second signal ends paravane at once,
    // with no chance to restore it after.
    let restoreTerminal = (): void => {};
    const stops = new RunStop(parent, io.onOutError, () => restoreTerminal());
    cleanups.push(() => stops.dispose());

    // Host input goes to one domain at a time (its console ring, or console_io reads), the first at
    // the start; Ctrl-] commands move it, print the XenStore tree or stop the run (consoles.ts).
    const stdin = opts.stdin ?? process.stdin;
    const tty = stdin === process.stdin && process.stdin.isTTY === true;
    const input = new ConsoleInput(domains.map((d) => ({
      name: d.name, id: d.id, get running() { return d.running; }, input: (b: Uint8Array) => d.consoleInput(b),
    })), {
      say: (line) => {
        output?.breakLine(); // a prompt open on the terminal is ended first
        io.err(`${line}\n`);
      },
      xenstore: () => hv.xenstore.store.dump('/'),
      stop: () => stops.trigger(CONSOLE_QUIT),
      focused: (i) => output?.setLive(i),
    });
    // The domain typed to shows its text as it comes (a prompt has no newline): on a terminal from
    // the start, otherwise once input arrives.
    if (tty) output?.setLive(0);
    const onInput = (b: Buffer) => {
      output?.setLive(input.focused);
      input.feed(b);
    };
    stdin.on('data', onInput);
    if (tty) {
      // Keystrokes go to the guest as typed (its shell echoes and edits; Ctrl-C is the guest's).
      process.stdin.setRawMode(true);
      restoreTerminal = () => {
        restoreTerminal = () => {};
        process.stdin.setRawMode(false);
      };
      io.err(`paravane: typing goes to domain ${domains[0]!.id} (${domains[0]!.name}); Ctrl-] h lists the console commands, Ctrl-] q stops\n`);
    }
    cleanups.push(() => {
      stdin.off('data', onInput);
      restoreTerminal();
      stdin.pause();
    });

    const t0 = process.hrtime.bigint();
    // The control socket (`paravane list`, pause, destroy, ...): a run that cannot serve one still runs.
    const controlled: ControlledDomain[] = domains.map((d, i) => ({ d, kernel: plan.domains[i]!.spec.kernel, memoryBytes: plan.domains[i]!.memoryBytes, startedNs: t0, taps: taps[i]!, ended: ends[i]! }));
    try {
      const server = await ControlServer.start(controlHandler(hv, controlled, dmesg));
      cleanups.push(() => server.close());
    } catch (e) {
      io.err(`paravane: no control socket for this run (paravane list will not see it): ${(e as Error).message}\n`);
    }
    const deadlineNs = plan.timeoutSeconds === undefined ? undefined : t0 + BigInt(Math.round(plan.timeoutSeconds * 1e9));
    // --gdb: the one domain held before its first instruction until gdb lets it run; its stops are pauses.
    let debug: { dbg: DomainDebugger; server: GdbServer } | undefined;
    if (opts.gdb !== undefined) {
      const dbg = new DomainDebugger(domains[0]!, hv.frames);
      const { server, port } = await GdbServer.listen(Number(opts.gdb), dbg);
      dbg.server = server;
      domains[0]!.debugger = dbg;
      debug = { dbg, server };
      cleanups.push(() => server.close());
      io.err(`paravane: waiting for gdb on 127.0.0.1:${port} (in gdb: target remote :${port}); ${domains[0]!.name} starts when gdb continues\n`);
    }
    const outcomes = await Promise.all(domains.map(async (d, i): Promise<Outcome> => {
      const x = plan.domains[i]!;
      const dbg = i === 0 ? debug?.dbg : undefined;
      const end = await runPausable(hv, d, controlled[i]!, {
        deadlineNs, timeoutS: plan.timeoutSeconds, signal: stops.signal, weight: x.spec.weight, cap: x.spec.cap,
        ...(dbg ? { gate: dbg.started, onPaused: (resume: () => void) => { dbg.resumeRun = resume; dbg.paused(); } } : {}),
      });
      if (dbg) {
        dbg.clear();
        debug!.server.report(end.kind === 'shutdown' ? { kind: 'exited', status: end.reason } : { kind: 'killed', signal: end.kind === 'crashed' ? SIGSEGV : SIGKILL });
      }
      const ranNs = process.hrtime.bigint() - t0;
      for (const e of [...ends[i]!]) e(); // attached consoles close
      // This domain's end, as soon as it happens: its last partial line, its stats, why it ended.
      consoles[i]?.flush();
      logs[i]?.flush();
      const outcome = outcomeOf(end, stops.stop);
      output?.breakLine(); // another domain's open prompt ends before the messages below
      const message = endMessage(d, end, outcome);
      if (opts.json) io.err(JSON.stringify(endRecord(d, end, outcome, ranNs)) + '\n');
      else {
        if (opts.stats) io.err(formatStats(d, ranNs));
        if (message) io.err(`paravane: ${message}\n`);
      }
      if (message) dmesg.push(Buffer.from(`(d${d.id}) paravane: ${message}\n`));
      return outcome;
    }));
    // A stop counts even if every domain had ended by itself meanwhile: the run was interrupted.
    const stop = stops.stop;
    return runStatus(stop ? [...outcomes, { kind: 'stopped', stop }] : outcomes);
  } catch (e) {
    if (e instanceof UsageError) {
      io.err(`paravane: ${e.message}\n`);
      return EXIT.USAGE;
    }
    throw e;
  } finally {
    for (const c of cleanups) c();
    hv.close();
    trace?.close();
  }
}

/**
 * Runs a domain to its end, through pauses: a paused domain waits for
 * `paravane unpause` (or its destruction, the run's stop or its timeout)
 * and runs on. The timeout counts paused time too.
 */
async function runPausable(hv: Hypervisor, d: Domain, c: ControlledDomain,
  o: { deadlineNs?: bigint; timeoutS?: number; signal: AbortSignal; weight?: number; cap?: number; gate?: Promise<void>; onPaused?: (resume: () => void) => void }): Promise<DomainEnd> {
  if (o.gate) {
    // Held until the debugger lets it run (or the run is stopped meanwhile).
    await Promise.race([o.gate, new Promise<void>((res) => { if (o.signal.aborted) res(); else o.signal.addEventListener('abort', () => res(), { once: true }); })]);
    if (o.signal.aborted) d.kill(String(o.signal.reason));
    if (d.end) {
      hv.destroyDomain(d);
      return d.end;
    }
  }
  for (;;) {
    const left = o.deadlineNs === undefined ? undefined : Math.max(0, Number(o.deadlineNs - process.hrtime.bigint()) / 1e6);
    const end = await hv.run(d, { timeoutMs: left, timeoutLabelS: o.timeoutS, signal: o.signal, weight: o.weight, cap: o.cap });
    if (end.kind !== 'paused') return end;
    await new Promise<void>((resolve) => {
      const done = (): void => {
        c.resume = undefined;
        clearTimeout(timer);
        o.signal.removeEventListener('abort', onAbort);
        resolve();
      };
      const onAbort = (): void => {
        d.kill(String(o.signal.reason));
        done();
      };
      const timer = left === undefined ? undefined : setTimeout(() => {
        d.kill(`timed out after ${o.timeoutS} s`);
        done();
      }, left);
      c.resume = done;
      o.onPaused?.(done);
      if (o.signal.aborted) onAbort();
      else o.signal.addEventListener('abort', onAbort);
    });
    if (d.end) {
      // Destroyed, stopped or timed out while paused: it does not run again.
      hv.destroyDomain(d);
      return d.end;
    }
  }
}
