// `paravane top`'s rates: a domain's CPU share and hypercall rate between
// two samples (since it started, at the first), matched by run and id;
// and its arguments checked.

import { describe, expect, it } from 'vitest';
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { topRows } from '../../src/cli/control-commands.js';
import type { DomainInfo } from '../../src/toolstack/control.js';
import { BIN } from './spawn.js';

const S = 1e9;
const dom = (id: number, pid: number, uptimeNs: number, cpuNs: number, hypercalls: number): DomainInfo & { pid: number; socket: string } => ({
  id, name: `d${id}`, state: 'running', vcpus: 1, memoryBytes: 1 << 25, cpuNs, uptimeNs, kernel: 'k', end: '', hypercalls, pid, socket: '',
});

describe('paravane top', () => {
  it('gives each domain its CPU share and hypercall rate since the last sample, or since it started', () => {
    const first = [dom(1, 10, 2 * S, 1 * S, 400), dom(1, 11, 4 * S, 0, 0)];
    expect(topRows(first, new Map())).toMatchObject([
      { name: 'd1', pid: 10, cpuPercent: 50, hypercallsPerSecond: 200 },
      { name: 'd1', pid: 11, cpuPercent: 0, hypercallsPerSecond: 0 },
    ]);
    const before = new Map(first.map((d) => [`${d.pid}:${d.id}`, d]));
    const later = [dom(1, 10, 3 * S, 1.25 * S, 1400), dom(1, 11, 5 * S, 0.9 * S, 50)];
    expect(topRows(later, before)).toMatchObject([
      { pid: 10, cpuPercent: 25, hypercallsPerSecond: 1000, hypercalls: 1400 },
      { pid: 11, cpuPercent: 90, hypercallsPerSecond: 50 },
    ]);
  });

  it('prints a JSON array per refresh, and refuses bad iterations and delays', () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'paravane-top-'));
    try {
      const run = (...a: string[]) => spawnSync(process.execPath, [BIN, 'top', ...a], { env: { ...process.env, PARAVANE_RUN_DIR: dir }, encoding: 'utf8' });
      const r = run('--iterations', '2', '--delay', '0.1', '--json');
      expect(r.status).toBe(0);
      expect(r.stdout).toBe('[]\n[]\n');
      expect(run('--iterations', '0')).toMatchObject({ status: 2, stderr: 'paravane: --iterations 0: a whole number, at least 1\n' });
      expect(run('--delay', 'soon')).toMatchObject({ status: 2, stderr: 'paravane: --delay soon: seconds, from 0.1 to 3600\n' });
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });
});
