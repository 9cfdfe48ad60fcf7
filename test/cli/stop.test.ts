// What ends a run from outside, without a guest: SIGINT, SIGTERM and SIGHUP,
// the parent process going away (a killed `npx` wrapper), and a closed
// stdout, which ends any command quietly with status 141 as `cat` would.

import { afterEach, describe, expect, it, vi } from 'vitest';
import { spawn } from 'node:child_process';
import { EventEmitter } from 'node:events';
import * as path from 'node:path';
import type { Stop } from '../../src/cli/exit-status.js';
import { onOutputError, outputStop, PARENT_GONE, STDOUT_CLOSED, STOP_SIGNALS, watchStops } from '../../src/cli/stop.js';
import { ROOT, start } from './spawn.js';

const STOP_JS = path.join(ROOT, 'dist/cli/stop.js');

/** A node process that watches for stops as a run does, says "ready", then prints the stop it got and exits 0. */
const WATCHER = `import(${JSON.stringify(STOP_JS)}).then((m) => {
  const keep = setTimeout(() => process.exit(9), 100000); // alive until stopped (and not forever)
  m.watchStops((s) => { process.stdout.write(s.signal + ': ' + s.message + '\\n'); clearTimeout(keep); }, { pollMs: 20 });
  process.stdout.write('ready\\n');
});`;

afterEach(() => {
  vi.useRealTimers();
});

describe('watchStops', () => {
  it.each(STOP_SIGNALS)('turns %s into one stop with that signal', (sig) => {
    const emitter = new EventEmitter();
    const stops: Stop[] = [];
    const unwatch = watchStops((s) => stops.push(s), { signals: emitter, ppid: () => 7 });
    emitter.emit(sig, sig);
    emitter.emit(sig, sig);
    expect(stops).toEqual([{ signal: sig, message: `interrupted by ${sig}` }]);
    unwatch();
  });

  it('lets a second signal take its default action (its listener is gone)', () => {
    const emitter = new EventEmitter();
    const unwatch = watchStops(() => {}, { signals: emitter, ppid: () => 7 });
    for (const sig of STOP_SIGNALS) expect(emitter.listenerCount(sig)).toBe(1);
    emitter.emit('SIGTERM', 'SIGTERM');
    for (const sig of STOP_SIGNALS) expect(emitter.listenerCount(sig)).toBe(0);
    unwatch();
  });

  it('stops the run when the parent process changes (the wrapper died), checked on a timer', () => {
    vi.useFakeTimers();
    let ppid = 1234;
    const stops: Stop[] = [];
    const unwatch = watchStops((s) => stops.push(s), { signals: new EventEmitter(), ppid: () => ppid, pollMs: 100 });
    vi.advanceTimersByTime(1000);
    expect(stops).toEqual([]);
    ppid = 1;
    vi.advanceTimersByTime(100);
    expect(stops).toEqual([PARENT_GONE]);
    expect(PARENT_GONE.signal).toBe('SIGHUP');
    unwatch();
  });

  it('counts a parent that went away before the watch began, from the pid the command started with', () => {
    vi.useFakeTimers();
    const stops: Stop[] = [];
    const unwatch = watchStops((s) => stops.push(s), { signals: new EventEmitter(), ppid: () => 1, parent: 1234, pollMs: 100 });
    vi.advanceTimersByTime(100);
    expect(stops).toEqual([PARENT_GONE]);
    unwatch();
  });

  it('checks the parent on a timer that does not keep the process alive', () => {
    const spy = vi.spyOn(globalThis, 'setInterval');
    const unwatch = watchStops(() => {}, { signals: new EventEmitter(), ppid: () => 7 });
    const timer = spy.mock.results[0]!.value as NodeJS.Timeout;
    spy.mockRestore();
    expect(timer.hasRef()).toBe(false);
    unwatch();
  });

  it('watches nothing once unwatched', () => {
    const emitter = new EventEmitter();
    const stops: Stop[] = [];
    watchStops((s) => stops.push(s), { signals: emitter, ppid: () => 7 })();
    emitter.emit('SIGINT', 'SIGINT');
    expect(stops).toEqual([]);
    for (const sig of STOP_SIGNALS) expect(emitter.listenerCount(sig)).toBe(0);
  });

  it.each(['SIGHUP', 'SIGTERM', 'SIGINT'] as const)('catches a real %s sent to the process', async (sig) => {
    const p = spawn(process.execPath, ['--input-type=module', '-e', WATCHER], { stdio: ['ignore', 'pipe', 'pipe'], timeout: 60_000 });
    let out = '';
    p.stdout.on('data', (b: Buffer) => {
      out += b.toString();
      if (out === 'ready\n') p.kill(sig);
    });
    const [code, signal] = await new Promise<[number | null, NodeJS.Signals | null]>((resolve) => p.on('close', (c, s) => resolve([c, s])));
    expect({ code, signal, out }).toEqual({ code: 0, signal: null, out: `ready\n${sig}: interrupted by ${sig}\n` });
  });

  it('notices for real that its parent shell was killed', async () => {
    // The shell starts the watcher in the background and waits for a line on stdin (a background job's
    // stdin is /dev/null, so the line is the shell's); killed, it leaves the watcher reparented.
    const sh = spawn('sh', ['-c', `"${process.execPath}" --input-type=module -e '${WATCHER.replaceAll("'", "'\\''")}' & read line`], { stdio: ['pipe', 'pipe', 'pipe'], timeout: 60_000 });
    let out = '';
    const closed = new Promise<void>((resolve) => sh.stdout.on('close', resolve));
    sh.stdout.on('data', (b: Buffer) => {
      out += b.toString();
      if (out === 'ready\n') sh.kill('SIGKILL');
    });
    await closed; // the watcher holds the pipe until it exits
    expect(out).toBe('ready\nSIGHUP: the parent process went away\n');
  });
});

describe('a closed stdout', () => {
  it('is a quiet stop for EPIPE, and a stop that says why for another write error', () => {
    expect(outputStop(Object.assign(new Error('write EPIPE'), { code: 'EPIPE' }))).toBe(STDOUT_CLOSED);
    expect(STDOUT_CLOSED).toMatchObject({ signal: 'SIGPIPE', quiet: true });
    expect(outputStop(Object.assign(new Error('no space'), { code: 'ENOSPC' }))).toEqual({ signal: 'SIGPIPE', message: 'cannot write to standard output (ENOSPC)' });
  });

  it('is reported once, at the first write error', () => {
    const stream = new EventEmitter();
    const seen: string[] = [];
    const off = onOutputError(stream, (e) => seen.push(e.code!));
    stream.emit('error', Object.assign(new Error('x'), { code: 'EPIPE' }));
    stream.emit('error', Object.assign(new Error('x'), { code: 'ERR_STREAM_DESTROYED' }));
    expect(seen).toEqual(['EPIPE']);
    off();
    expect(stream.listenerCount('error')).toBe(0);
  });

  it.each([[['help', 'run']], [['run', '--help']], [['abi']], [['--help']]])('ends `paravane %j` quietly with status 141', async (args) => {
    const r = await start(args, { closeStdout: true }).ended;
    expect(r).toMatchObject({ code: 141, signal: null, err: '' });
  });
});
