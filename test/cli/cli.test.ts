// The `paravane` command: help, version, the hypercall table, and clear
// errors for bad arguments.

import { describe, expect, it } from 'vitest';
import { spawnSync } from 'node:child_process';
import * as path from 'node:path';
import { readFileSync } from 'node:fs';

const ROOT = path.resolve(import.meta.dirname, '../..');
const BIN = path.join(ROOT, 'bin/paravane.js');

function paravane(...args: string[]) {
  const r = spawnSync(process.execPath, [BIN, ...args], { encoding: 'utf8' });
  return { code: r.status, out: r.stdout, err: r.stderr };
}

describe('paravane CLI', () => {
  it('prints its version and help', () => {
    const pkg = JSON.parse(readFileSync(path.join(ROOT, 'package.json'), 'utf8')) as { version: string };
    expect(paravane('--version')).toMatchObject({ code: 0, out: pkg.version + '\n' });
    const help = paravane('--help');
    expect(help.code).toBe(0);
    expect(help.out).toContain('Usage: paravane');
    expect(help.out).toContain('abi');
  });

  it('prints the hypercall table from the schemas', () => {
    const r = paravane('abi');
    expect(r.code).toBe(0);
    expect(r.out).toMatch(/^\s+1\s+mmu_update\s+mmu_update_t \*req, unsigned int count/m);
    expect(r.out).toMatch(/^\s+29\s+sched_op\s+int cmd, void \*arg/m);
    expect(r.out).toMatch(/^\s+64\s+pvbench_op\*/m);
    expect(r.out).not.toMatch(/^\s+11\s/m);
  });

  it('prints the table as JSON, and only the experimental range on request', () => {
    const all = JSON.parse(paravane('abi', '--json').out) as Array<{ nr: number; name: string; experimental: boolean }>;
    expect(all.find((h) => h.nr === 26)?.name).toBe('mmuext_op');
    const exp = JSON.parse(paravane('abi', '--json', '--experimental').out) as typeof all;
    // Exactly the table's entries in paravane's range (64-127), whatever experimental hypercalls a user has added.
    expect(exp.map((h) => h.name)).toContain('pvbench_op');
    expect(exp).toEqual(all.filter((h) => h.nr >= 64 && h.nr <= 127));
    expect(exp.every((h) => h.experimental)).toBe(true);
  });

  it('rejects an unknown command or option with a non-zero status', () => {
    const r = paravane('frobnicate');
    expect(r.code).not.toBe(0);
    expect(r.err).toContain("unknown command 'frobnicate'");
    expect(paravane('abi', '--bogus').err).toContain("unknown option '--bogus'");
  });
});
