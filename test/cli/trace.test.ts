// `paravane run --trace FILE` and `paravane trace FILE` as a user runs
// them: the trace of the hypercalls example counts exactly what --stats
// counts, call sites are named from the kernel's symbols, the Perfetto
// export has a slice per hypercall, and bad files and flags are refused
// before anything runs.

import { beforeAll, afterAll, describe, expect, it } from 'vitest';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { GUESTS, paravane } from './spawn.js';
import { GUEST_ENGINE } from '../support/kvm-gate.js';
import { EXIT } from '../../src/cli/exit-status.js';

const HYPERCALLS = path.join(GUESTS, 'hypercalls.elf');

describe('paravane run --trace, paravane trace', () => {
  let dir: string;
  let stats: string;
  let file: string;
  beforeAll(async () => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'paravane-trace-'));
    file = path.join(dir, 'h.trace');
    const r = await paravane('run', '--engine', GUEST_ENGINE, '--stats', '--trace', file, HYPERCALLS);
    expect(r.code, r.err).toBe(EXIT.POWEROFF);
    stats = r.err;
  }, 120_000);
  afterAll(() => fs.rmSync(dir, { recursive: true, force: true }));

  it('records exactly the hypercalls and exits --stats counts, in a file only its owner can read', async () => {
    expect(fs.statSync(file).mode & 0o777).toBe(0o600);
    const r = await paravane('trace', '--json', file);
    expect(r.code, r.err).toBe(0);
    const t = JSON.parse(r.out) as { domains: Array<{ name: string; hypercalls: Array<{ name: string; count: number }>; exits: Record<string, number> }> };
    expect(t.domains).toHaveLength(1);
    const d = t.domains[0]!;
    expect(d.name).toBe('hypercalls');
    // --stats lists "    name    count" under "hypercalls:" up to "exits:".
    const block = stats.slice(stats.indexOf('  hypercalls:\n') + 14, stats.indexOf('  exits:\n'));
    const counted = Object.fromEntries([...block.matchAll(/^ {4}(\S+)\s+(\d+)$/gm)].map((m) => [m[1]!, Number(m[2])]));
    expect(Object.keys(counted).length).toBeGreaterThan(3);
    expect(Object.fromEntries(d.hypercalls.map((h) => [h.name, h.count]))).toEqual(counted);
    // Every page-transport hypercall is an io exit at the hypercall port.
    expect(d.exits.io).toBe(Number(/^ {4}hypercall \(page\)\s+(\d+)$/m.exec(stats)?.[1]));
  });

  it('names the busiest call sites from the kernel\'s symbols, and exports a Perfetto timeline with a slice per hypercall', async () => {
    const out = path.join(dir, 'h.json');
    const r = await paravane('trace', file, '--elf', HYPERCALLS, '--perfetto', out, '--top', '3');
    expect(r.code, r.err).toBe(0);
    expect(r.out).toMatch(/^domain 1 \(hypercalls\)$/m);
    expect(r.out).toMatch(/^ {2}console_io\s+\d+\s+[\d.]+\s+[\d.]+/m);
    const sites = r.out.slice(r.out.indexOf('call sites'));
    expect(sites.trim().split('\n')).toHaveLength(4); // the heading and --top 3
    expect(sites).toMatch(/0xffffffff[0-9a-f]+\s+\d+\s+put_console\+0x[0-9a-f]+/);
    const json = JSON.parse(fs.readFileSync(out, 'utf8')) as { traceEvents: Array<{ ph: string; name: string; pid: number; dur?: number }> };
    const slices = json.traceEvents.filter((e) => e.ph === 'X');
    const total = [...stats.slice(stats.indexOf('  hypercalls:\n'), stats.indexOf('  exits:\n')).matchAll(/^ {4}\S+\s+(\d+)$/gm)].reduce((a, m) => a + Number(m[1]), 0);
    expect(slices).toHaveLength(total);
    expect(slices.every((e) => e.pid === 1 && e.dur! >= 0)).toBe(true);
    expect(json.traceEvents.find((e) => e.ph === 'M')).toMatchObject({ name: 'process_name', pid: 1 });
  });

  it('refuses a file that is not a trace, a missing one, and a bad --top, with status 2', async () => {
    const bad = await paravane('trace', HYPERCALLS);
    expect(bad.code).toBe(EXIT.USAGE);
    expect(bad.err).toMatch(/^paravane: .*hypercalls\.elf: /);
    const missing = await paravane('trace', path.join(dir, 'nothing.trace'));
    expect(missing.code).toBe(EXIT.USAGE);
    expect(missing.err).toContain('cannot read the trace file');
    const top = await paravane('trace', file, '--top', '0');
    expect(top).toMatchObject({ code: EXIT.USAGE });
    expect(top.err).toContain('--top 0: a whole number from 1 to 1000');
  });

  it('refuses a trace file it cannot write, and tracing plain kernels, before anything runs', async () => {
    const r = await paravane('run', '--engine', GUEST_ENGINE, '--trace', path.join(dir, 'no/such/dir/t.trace'), HYPERCALLS);
    expect(r.code).toBe(EXIT.USAGE);
    expect(r.err).toMatch(/^paravane: --trace .*no\/such\/dir\/t\.trace: ENOENT/);
    const fv = await paravane('run', '--mode', 'fv-trap', '--trace', path.join(dir, 'fv.trace'), path.join(GUESTS, 'nano-native.elf'));
    expect(fv.code).toBe(EXIT.USAGE);
    expect(fv.err).toContain('--trace records hypercalls, which plain kernels (--mode fv-trap) do not make');
  });
});
