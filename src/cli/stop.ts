// What ends a run from outside: SIGINT, SIGTERM or SIGHUP; the parent
// process going away (a killed `npx` wrapper leaves paravane reparented
// rather than signalled); standard output closed (`paravane run ... | head`).
// Each becomes one Stop for the run. Inputs: process events (trusted).

import type { EventEmitter } from 'node:events';
import type { Stop } from './exit-status.js';

/** The signals a run handles; a second one of them gets the default action (the process ends at once). */
export const STOP_SIGNALS = ['SIGINT', 'SIGTERM', 'SIGHUP'] as const;

/** How often the parent process is checked. */
export const PARENT_POLL_MS = 500;

/** For `paravane run --help` (README.md says the same). */
export const STOP_HELP = `
Signals: SIGINT, SIGTERM or SIGHUP ends every domain (a second one ends
paravane at once); so does the parent process going away, or stdout closing.

Console: typing goes to the first domain. Ctrl-] then 1-9 types to another,
x prints the XenStore tree, q stops the run, h lists these. On a terminal
keys go to the guest as typed (Ctrl-C is the guest's: use Ctrl-] q).
`;

/** Ctrl-] q on the console: as Ctrl-C would be, were the terminal's Ctrl-C not the guest's. */
export const CONSOLE_QUIT: Stop = { signal: 'SIGINT', message: 'stopped from the console (Ctrl-] q)' };
export const PARENT_GONE: Stop = { signal: 'SIGHUP', message: 'the parent process went away' };
export const STDOUT_CLOSED: Stop = { signal: 'SIGPIPE', message: 'standard output was closed', quiet: true };

export interface StopSources {
  /** Emits the signals (default: process). */
  signals?: Pick<EventEmitter, 'on' | 'off'>;
  /** The parent's pid now (default: process.ppid, which follows reparenting). */
  ppid?: () => number;
  /** The parent's pid when the command started (default: ppid() now); null: the parent is not watched (a detached run). */
  parent?: number | null;
  pollMs?: number;
}

/**
 * Calls `onStop` once, at the first signal or when the parent process
 * changes; returns the function that stops watching. The parent is checked
 * on a timer that does not keep the process alive.
 */
export function watchStops(onStop: (s: Stop) => void, src: StopSources = {}): () => void {
  const emitter = src.signals ?? process;
  const ppid = src.ppid ?? (() => process.ppid);
  const parent = src.parent === undefined ? ppid() : src.parent;
  let done = false;
  const detach = (): void => {
    for (const sig of STOP_SIGNALS) emitter.off(sig, onSignal);
    clearInterval(timer);
  };
  const fire = (s: Stop): void => {
    if (done) return;
    done = true;
    detach();
    onStop(s);
  };
  function onSignal(sig: NodeJS.Signals): void {
    fire({ signal: sig, message: `interrupted by ${sig}` });
  }
  for (const sig of STOP_SIGNALS) emitter.on(sig, onSignal);
  const timer = parent === null ? undefined : setInterval(() => {
    if (ppid() !== parent) fire(PARENT_GONE);
  }, src.pollMs ?? PARENT_POLL_MS);
  timer?.unref();
  return () => {
    done = true;
    detach();
  };
}

/**
 * The Stop for a failed write to standard output: EPIPE (the reader went
 * away) ends the run quietly, as SIGPIPE ends `cat`; another error (a full
 * disk) ends it the same way but says why.
 */
export function outputStop(e: NodeJS.ErrnoException): Stop {
  return e.code === 'EPIPE' ? STDOUT_CLOSED : { signal: 'SIGPIPE', message: `cannot write to standard output (${e.code ?? e.message})` };
}

/** Calls `onError` at the first write error of `stream`; returns the function that stops listening. */
export function onOutputError(stream: Pick<EventEmitter, 'on' | 'off'>, onError: (e: NodeJS.ErrnoException) => void): () => void {
  let done = false;
  const listener = (e: NodeJS.ErrnoException): void => {
    if (done) return;
    done = true;
    onError(e);
  };
  stream.on('error', listener);
  return () => {
    stream.off('error', listener);
  };
}

/**
 * A run's one stop: the first signal, its parent going (unless `parent` is
 * null) or its standard output failing ends every domain still running,
 * through `signal` (aborted with the stop's message). `before` runs first
 * (a run puts the terminal back there). `stop` is the Stop once it came.
 */
export class RunStop {
  private readonly abort = new AbortController();
  stop: Stop | undefined;
  private readonly unwatch: Array<() => void>;

  constructor(parent: number | null, onOutError: (cb: (e: NodeJS.ErrnoException) => void) => () => void, private readonly before: () => void = () => {}) {
    this.unwatch = [watchStops((s) => this.trigger(s), { parent }), onOutError((e) => this.trigger(outputStop(e)))];
  }

  get signal(): AbortSignal {
    return this.abort.signal;
  }

  trigger(s: Stop): void {
    if (this.stop) return;
    this.stop = s;
    this.before();
    this.abort.abort(s.message);
  }

  dispose(): void {
    for (const u of this.unwatch) u();
  }
}
