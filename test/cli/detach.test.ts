// `paravane run --detach`: the run goes on in the background after the
// command returns, its domains visible to `paravane list` at once and
// driven by the other commands; its output and end are in its log file;
// a run that cannot start gives its error and status instead.

import { afterAll, describe, expect, it } from 'vitest';
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { BIN, GUESTS } from './spawn.js';
import { GUEST_ENGINE } from '../support/kvm-gate.js';
import { EXIT } from '../../src/cli/exit-status.js';

describe('paravane run --detach', () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'paravane-detach-'));
  const cli = (...args: string[]) => {
    const r = spawnSync(process.execPath, [BIN, ...args], { env: { ...process.env, PARAVANE_RUN_DIR: dir }, encoding: 'utf8', timeout: 120_000 });
    return { code: r.status, out: r.stdout, err: r.stderr };
  };
  afterAll(() => {
    for (const f of fs.readdirSync(dir)) {
      const m = /^(\d+)\.sock$/.exec(f);
      if (m) try { process.kill(Number(m[1]), 'SIGKILL'); } catch { /* gone */ }
    }
    fs.rmSync(dir, { recursive: true, force: true });
  });

  it('returns once the domains are up, and they run on in the background until destroyed', async () => {
    const r = cli('run', '--detach', '--engine', GUEST_ENGINE, path.join(GUESTS, 'echo.elf'));
    expect(r.code, r.err).toBe(0);
    const m = /^paravane: running in the background as process (\d+); its output goes to (\S+)$/m.exec(r.out);
    expect(m, r.out).not.toBeNull();
    const [pid, log] = [Number(m![1]), m![2]!];
    const listed = JSON.parse(cli('list', '--json').out) as Array<{ name: string; pid: number; state: string }>;
    expect(listed).toEqual([expect.objectContaining({ name: 'echo', pid, state: 'running' })]);
    expect(fs.statSync(log).mode & 0o777).toBe(0o600);
    expect(cli('destroy', 'echo').code).toBe(0);
    for (let i = 0; i < 200 && fs.existsSync(path.join(dir, `${pid}.sock`)); i++) await new Promise((res) => setTimeout(res, 50));
    expect(fs.existsSync(path.join(dir, `${pid}.sock`))).toBe(false);
    const text = fs.readFileSync(log, 'latin1');
    expect(text).toContain('echo: type a line; quit ends');
    expect(text).toContain('paravane: domain 1 (echo) killed: destroyed by `paravane destroy`');
  }, 120_000);

  it('gives a run that cannot start its error and status', () => {
    const r = cli('run', '--detach', '--memory', '0', path.join(GUESTS, 'echo.elf'));
    expect(r.code).toBe(EXIT.USAGE);
    expect(r.err).toContain('paravane: --memory must be a whole number of MiB');
  });
});
