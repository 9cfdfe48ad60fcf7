// Runs the `paravane` command (bin/paravane.js) as a user would, for the CLI
// tests: its status, signal, stdout and stderr, and a way to wait for a
// line it prints while it runs. Inputs: the tests' own arguments (trusted).

import { spawn, type ChildProcess, type SpawnOptions } from 'node:child_process';
import * as path from 'node:path';
import { expect } from 'vitest';

export const ROOT = path.resolve(import.meta.dirname, '../..');
export const BIN = path.join(ROOT, 'bin/paravane.js');
export const ELF = path.join(ROOT, 'test/guests/build/elf');
export const GUESTS = path.join(ROOT, 'build/guests');

export interface Ended {
  code: number | null;
  signal: NodeJS.Signals | null;
  out: string;
  err: string;
}

/** A running `paravane`: its process, what it printed so far, and its end. */
export interface Running {
  p: ChildProcess;
  out: () => string;
  err: () => string;
  /** Resolves once stderr (or stdout, with `stream`) has matched `re`. */
  waitFor: (re: RegExp, stream?: 'out' | 'err') => Promise<void>;
  ended: Promise<Ended>;
}

/**
 * Starts `paravane ...args`. A safety timeout kills a process that never
 * ends (a regression), so that it cannot outlive the test run; no test
 * result depends on it.
 */
export function start(args: string[], opts: SpawnOptions & { closeStdout?: boolean } = {}): Running {
  const p = spawn(process.execPath, [BIN, ...args], { stdio: ['ignore', 'pipe', 'pipe'], timeout: 120_000, ...opts });
  const outBufs: Buffer[] = [];
  const errBufs: Buffer[] = [];
  const waiters: Array<() => void> = [];
  const poke = () => { for (const w of waiters.splice(0)) w(); };
  if (opts.closeStdout) p.stdout!.destroy();
  else p.stdout!.on('data', (b: Buffer) => { outBufs.push(b); poke(); });
  p.stderr!.on('data', (b: Buffer) => { errBufs.push(b); poke(); });
  const out = () => Buffer.concat(outBufs).toString('utf8');
  const err = () => Buffer.concat(errBufs).toString('utf8');
  let closed = false;
  const ended = new Promise<Ended>((resolve, reject) => {
    p.on('error', (e) => { closed = true; poke(); reject(e); });
    p.on('close', (code, signal) => { closed = true; poke(); resolve({ code, signal, out: out(), err: err() }); });
  });
  const waitFor = async (re: RegExp, stream: 'out' | 'err' = 'err'): Promise<void> => {
    while (!re.test(stream === 'out' ? out() : err())) {
      if (closed) throw new Error(`paravane ended before printing ${re}: stderr ${JSON.stringify(err())}`);
      await new Promise<void>((resolve) => waiters.push(resolve));
    }
  };
  return { p, out, err, waitFor, ended };
}

/** Runs `paravane ...args` to its end. */
export function paravane(...args: string[]): Promise<Ended> {
  return start(args).ended;
}

/** Bad input: one line on stderr, `paravane: ...`, matching `pattern`, and no stack trace. */
export function expectOneLine(err: string, pattern: RegExp): void {
  expect(err).toMatch(/^paravane: [^\n]+\n$/);
  expect(err).toMatch(pattern);
  expect(err).not.toMatch(/\n\s+at /);
}
