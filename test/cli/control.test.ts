// Driving running domains from another process, as a user of xl would:
// `paravane list`, `info`, `pause`, `unpause`, `shutdown --wait`,
// `destroy` and `dmesg` against two `paravane run`s at once, through
// their control sockets; a name in no run or in two, a stale socket left
// by a run that died, and a peer of another user refused by the socket's
// permissions. The guests are the echo example, which waits for console
// input for ever: only these commands end them.

import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { BIN, GUESTS } from './spawn.js';
import { GUEST_ENGINE } from '../support/kvm-gate.js';
import { EXIT } from '../../src/cli/exit-status.js';

const ECHO = path.join(GUESTS, 'echo.elf');

describe('the control API: commands on the domains of running `paravane run`s', () => {
  let dir: string;
  const env = (): NodeJS.ProcessEnv => ({ ...process.env, PARAVANE_RUN_DIR: dir });
  const cli = (...args: string[]) => {
    const r = spawnSync(process.execPath, [BIN, ...args], { env: env(), encoding: 'utf8', timeout: 60_000 });
    return { code: r.status, out: r.stdout, err: r.stderr };
  };
  const runs: Array<{ p: ChildProcess; ended: Promise<{ code: number | null; err: string }> }> = [];
  function startRun(...kernels: string[]) {
    const p = spawn(process.execPath, [BIN, 'run', '--engine', GUEST_ENGINE, ...kernels], { env: env(), stdio: ['ignore', 'pipe', 'pipe'] });
    let err = '';
    p.stderr!.on('data', (b: Buffer) => { err += b.toString(); });
    p.stdout!.resume();
    const ended = new Promise<{ code: number | null; err: string }>((res) => p.on('close', (code) => res({ code, err })));
    runs.push({ p, ended });
    return { p, ended };
  }
  async function until(what: () => boolean): Promise<void> {
    for (let i = 0; i < 600 && !what(); i++) await new Promise((r) => setTimeout(r, 100));
    expect(what()).toBe(true);
  }
  const listed = () => JSON.parse(cli('list', '--json').out) as Array<{ name: string; id: number; pid: number; state: string; vcpus: number; memoryBytes: number }>;

  beforeAll(async () => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'paravane-control-'));
    fs.rmSync(dir, { recursive: true }); // the run makes it, 0700
    startRun(ECHO, ECHO);
    await until(() => fs.existsSync(dir) && listed().filter((d) => d.state === 'running').length === 2);
    startRun(ECHO);
    await until(() => listed().length === 3);
  }, 120_000);

  afterAll(() => {
    for (const r of runs) r.p.kill('SIGKILL');
    fs.rmSync(dir, { recursive: true, force: true });
  });

  it('lists every domain of both runs, each under its run\'s pid, in a directory and sockets only their owner can use', () => {
    const all = listed();
    expect(all.map((d) => [d.name, d.id, d.pid])).toEqual([['echo', 1, runs[0]!.p.pid], ['echo-2', 2, runs[0]!.p.pid], ['echo', 1, runs[1]!.p.pid]]);
    expect(all.every((d) => d.vcpus === 1 && d.memoryBytes === 32 << 20 && d.state === 'running')).toBe(true);
    const table = cli('list');
    expect(table.out).toMatch(/^NAME +ID +PID +STATE +VCPUS +MEM\(MiB\) +CPU\(s\) +UP\(s\)$/m);
    expect(table.out).toMatch(new RegExp(`^echo-2 +2 +${runs[0]!.p.pid} +running +1 +32 `, 'm'));
    expect(fs.statSync(dir).mode & 0o777).toBe(0o700);
    for (const r of runs) expect(fs.statSync(path.join(dir, `${r.p.pid}.sock`)).mode & 0o777).toBe(0o600);
  });

  it('pauses and unpauses a domain, and describes it', () => {
    expect(cli('pause', 'echo-2')).toMatchObject({ code: 0, out: 'echo-2: paused\n' });
    expect(listed().find((d) => d.name === 'echo-2')!.state).toBe('paused');
    expect(cli('pause', 'echo-2')).toMatchObject({ code: EXIT.USAGE, err: 'paravane: echo-2 is already paused\n' });
    expect(cli('unpause', 'echo-2')).toMatchObject({ code: 0, out: 'echo-2: running\n' });
    const info = JSON.parse(cli('info', 'echo-2', '--json').out) as Record<string, unknown>;
    expect(info).toMatchObject({ name: 'echo-2', id: 2, pid: runs[0]!.p.pid, state: 'running', kernel: ECHO, vcpus: 1 });
    expect(cli('unpause', 'echo-2')).toMatchObject({ code: EXIT.USAGE, err: 'paravane: echo-2 is not paused\n' });
  });

  it('refuses a name no run has, and one two runs have', () => {
    const none = cli('pause', 'web');
    expect(none.code).toBe(EXIT.USAGE);
    expect(none.err).toContain('no running domain is named "web"');
    const two = cli('destroy', 'echo');
    expect(two.code).toBe(EXIT.USAGE);
    expect(two.err).toContain(`2 runs have a domain named "echo" (pids ${runs[0]!.p.pid}, ${runs[1]!.p.pid})`);
  });

  it('passes over a socket its run left behind when it died, and removes it', () => {
    const stale = path.join(dir, '999999999.sock');
    fs.writeFileSync(stale, '');
    expect(listed()).toHaveLength(3);
    expect(fs.existsSync(stale)).toBe(false);
  });

  it.skipIf(process.getuid?.() !== 0 || spawnSync('sh', ['-c', 'command -v runuser']).status !== 0)('refuses a peer of another user', () => {
    const r = spawnSync('runuser', ['-u', 'nobody', '--', process.execPath, BIN, 'list'], { env: env(), encoding: 'utf8', timeout: 60_000 });
    expect(r.status).toBe(EXIT.USAGE);
    expect(r.stderr).toMatch(/EACCES|permission denied/i);
  });

  it('destroys a domain, its end in dmesg, and then refuses what needs it running', () => {
    expect(cli('destroy', 'echo-2')).toMatchObject({ code: 0, out: 'echo-2: dead\n' });
    const dmesg = cli('dmesg');
    expect(dmesg.out).toContain('(d2) paravane: domain 2 (echo-2) killed: destroyed by `paravane destroy`');
    expect(dmesg.out).toContain('(d1) echo: type a line; quit ends');
    expect(cli('shutdown', 'echo-2')).toMatchObject({ code: EXIT.USAGE, err: 'paravane: echo-2 has ended\n' });
  });

  it('shutdown --wait waits while the guest goes on, and returns once it has ended; the run exits 7 for a destroyed domain', async () => {
    // The first run stopped by a signal: one "echo" is left, in the second run.
    runs[0]!.p.kill('SIGTERM');
    expect((await runs[0]!.ended).code).toBe(143);
    await until(() => listed().length === 1);
    const waiting = spawn(process.execPath, [BIN, 'shutdown', '--wait', 'echo'], { env: env(), stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    waiting.stdout!.on('data', (b: Buffer) => { out += b.toString(); });
    const waited = new Promise<number | null>((res) => waiting.on('close', res));
    // The echo guest does not watch control/shutdown: it goes on, and the wait with it.
    await new Promise((r) => setTimeout(r, 1500));
    expect(waiting.exitCode).toBeNull();
    expect(listed()[0]!.state).toBe('running');
    expect(cli('destroy', 'echo')).toMatchObject({ code: 0 });
    expect(await waited).toBe(0);
    // Its run exits with its last domain, so the wait may see the end or only the run gone.
    expect(out).toMatch(/^echo: ended: (killed: destroyed by `paravane destroy`|its run has exited)\n$/);
    const end = await runs[1]!.ended;
    expect(end.code, end.err).toBe(EXIT.DESTROYED);
    expect(end.err).toContain('domain 1 (echo) killed: destroyed by `paravane destroy`');
  }, 120_000);
});
