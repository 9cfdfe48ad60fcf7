// `paravane console NAME` from another process, as `xl console`: a running
// domain's output arrives, keys typed reach it, Ctrl-] detaches and leaves
// it running, and its end closes the console; a name no run has is refused.

import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { BIN, GUESTS } from './spawn.js';
import { GUEST_ENGINE } from '../support/kvm-gate.js';
import { EXIT } from '../../src/cli/exit-status.js';

describe('paravane console', () => {
  let dir: string;
  let run: ChildProcess;
  let runEnded: Promise<number | null>;
  const env = (): NodeJS.ProcessEnv => ({ ...process.env, PARAVANE_RUN_DIR: dir });
  const list = () => JSON.parse(spawnSync(process.execPath, [BIN, 'list', '--json'], { env: env(), encoding: 'utf8' }).stdout) as Array<{ name: string; state: string }>;

  beforeAll(async () => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'paravane-console-'));
    run = spawn(process.execPath, [BIN, 'run', '--engine', GUEST_ENGINE, path.join(GUESTS, 'echo.elf')], { env: env(), stdio: ['ignore', 'ignore', 'ignore'] });
    runEnded = new Promise((res) => run.on('close', res));
    for (let i = 0; i < 600 && list().length === 0; i++) await new Promise((r) => setTimeout(r, 100));
    expect(list()).toMatchObject([{ name: 'echo', state: 'running' }]);
  }, 120_000);
  afterAll(() => {
    run.kill('SIGKILL');
    fs.rmSync(dir, { recursive: true, force: true });
  });

  /** Attaches; resolves with the console's output and stderr once it exits. */
  function attach(send: (stdin: NodeJS.WritableStream, out: () => string) => Promise<void>) {
    const p = spawn(process.execPath, [BIN, 'console', 'echo'], { env: env(), stdio: ['pipe', 'pipe', 'pipe'] });
    let out = '', err = '';
    p.stdout!.on('data', (b: Buffer) => { out += b.toString(); });
    p.stderr!.on('data', (b: Buffer) => { err += b.toString(); });
    const ended = new Promise<number | null>((res) => p.on('close', res));
    return (async () => {
      await send(p.stdin!, () => out);
      return { code: await ended, out, err };
    })();
  }
  const until = async (cond: () => boolean) => {
    for (let i = 0; i < 600 && !cond(); i++) await new Promise((r) => setTimeout(r, 50));
    expect(cond()).toBe(true);
  };

  it('shows what the domain prints for the keys typed, and detaches at Ctrl-], the domain running on', async () => {
    const r = await attach(async (stdin, out) => {
      stdin.write('hello there\n');
      await until(() => out().includes('echo: hello there\n'));
      stdin.write(Buffer.from([0x1d]));
    });
    expect(r.code).toBe(0);
    expect(r.out).toBe('echo: hello there\n');
    expect(r.err).toMatch(/^paravane: attached to echo \(run \d+\); Ctrl-\] detaches\n\nparavane: detached from echo\n$/);
    expect(list()).toMatchObject([{ name: 'echo', state: 'running' }]);
  }, 60_000);

  it('closes when the domain ends, and its run exits with the domain\'s status', async () => {
    const r = await attach(async (stdin) => {
      stdin.write('quit\n');
    });
    expect(r.code).toBe(0);
    expect(r.out).toBe('echo: bye\n');
    expect(r.err).toContain("paravane: echo's console closed (the domain has ended)");
    expect(await runEnded).toBe(EXIT.POWEROFF);
  }, 60_000);

  it('refuses a name no run has', () => {
    const r = spawnSync(process.execPath, [BIN, 'console', 'nosuch'], { env: env(), encoding: 'utf8' });
    expect(r.status).toBe(EXIT.USAGE);
    expect(r.stderr).toContain('no running domain is named "nosuch"');
  });
});
