// `paravane run --detach ...`: the same run started in the background, as
// `xl create` without -c leaves a domain running: a child process with
// the same arguments, out of this one's process group, its standard
// output and error going to a log file in the run directory (0600), that
// does not stop when this process exits. This process waits until the
// child serves its control socket (so that `paravane list` sees its
// domains at once) and returns 0; a child that ends first (bad input, a
// guest that ends at once) has its log shown and its status returned.

import { spawn } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { ensureRunDir, runDir } from '../toolstack/control.js';
import { DETACHED_ENV } from './run.js';

/** How long the background run may take to build its domains and open its socket. */
const START_LIMIT_MS = 120_000;

export async function detachRun(script: string, args: readonly string[], io: { err: (s: string) => void; out: (s: string) => void }): Promise<number> {
  const dir = runDir();
  ensureRunDir(dir);
  const log = path.join(dir, `run-${new Date().toISOString().replace(/[:.]/g, '-')}-${process.pid}.log`);
  const fd = fs.openSync(log, 'a', 0o600);
  const child = spawn(process.execPath, [script, 'run', ...args], {
    detached: true, stdio: ['ignore', fd, fd], env: { ...process.env, [DETACHED_ENV]: '1' },
  });
  fs.closeSync(fd);
  const exited = new Promise<number>((resolve) => child.on('exit', (code, signal) => resolve(code ?? (signal ? 128 : 1))));
  const socket = path.join(dir, `${child.pid}.sock`);
  const started = Date.now();
  let status: number | undefined;
  void exited.then((s) => { status = s; });
  while (status === undefined && !fs.existsSync(socket) && Date.now() - started < START_LIMIT_MS) await new Promise((r) => setTimeout(r, 50));
  if (status !== undefined || !fs.existsSync(socket)) {
    const code = status ?? (child.kill('SIGTERM'), await exited);
    const text = fs.readFileSync(log, 'latin1');
    io.err(text);
    if (status === undefined) io.err(`paravane: the background run did not start within ${START_LIMIT_MS / 1000} s and was stopped (its log: ${log})\n`);
    return code;
  }
  child.unref();
  io.out(`paravane: running in the background as process ${child.pid}; its output goes to ${log}\n`
    + 'paravane: `paravane list` shows its domains, `paravane console NAME` attaches to one, `paravane destroy NAME` ends one\n');
  return 0;
}
