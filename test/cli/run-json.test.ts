// `paravane run --json`: each domain's end as one JSON line on stderr, for
// scripts: how it ended, the status that end gives, and its counts.

import { describe, expect, it } from 'vitest';
import * as path from 'node:path';
import { ELF, GUESTS, paravane } from './spawn.js';
import { EXIT } from '../../src/cli/exit-status.js';

describe('paravane run --json', () => {
  it('gives each domain\'s end as a JSON line: a poweroff and a crash side by side', async () => {
    const r = await paravane('run', '--json', path.join(GUESTS, 'hello.elf'), path.join(ELF, 'crash.elf'));
    expect(r.code).toBe(EXIT.CRASH);
    const lines = r.err.trim().split('\n').map((l) => JSON.parse(l) as Record<string, any>); // eslint-disable-line @typescript-eslint/no-explicit-any
    expect(lines).toHaveLength(2);
    const hello = lines.find((l) => l.name === 'hello')!;
    expect(hello).toMatchObject({ domain: 1, end: { kind: 'shutdown', reason: 0, reasonName: 'poweroff' }, status: EXIT.POWEROFF });
    expect(hello.hypercalls.console_io).toBeGreaterThan(0);
    expect(hello.ranNs).toBeGreaterThan(0);
    expect(hello.framesReturned).toBeGreaterThan(0);
    const crash = lines.find((l) => l.name === 'crash')!;
    expect(crash).toMatchObject({ domain: 2, end: { kind: 'crashed', reason: expect.stringContaining('unhandled #UD') }, status: EXIT.CRASH });
  }, 120_000);
});
