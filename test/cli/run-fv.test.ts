// `paravane run --mode fv-trap` as a user runs it: a plain kernel's serial
// console on stdout, its end as the exit status, `--stats` saying where
// its exits went, several domains side by side, a timeout, and clear
// refusals for a kernel of the other kind and the PV-only options. The
// software engine runs it on any host.

import { describe, expect, it } from 'vitest';
import * as path from 'node:path';
import { ELF, GUESTS, paravane as run } from './spawn.js';
import { CONIO_LINE, TICKS_LINE } from '../support/workloads.js';
import { EXIT } from '../../src/cli/exit-status.js';

const native = (name: string) => path.join(GUESTS, `${name}-native.elf`);
const FV = ['run', '--engine', 'soft', '--mode', 'fv-trap'];

describe('paravane run --mode fv-trap', () => {
  it('runs a plain kernel: its serial output on stdout, status 0 at its poweroff, and --stats on stderr', async () => {
    const r = await run(...[...FV, '--stats', native('conio')]);
    expect(r.code, r.err).toBe(EXIT.POWEROFF);
    expect(r.out.split('\r\n').filter((l) => l === CONIO_LINE)).toHaveLength(64);
    expect(r.err).toMatch(/domain 1 \(conio-native\) ran [\d.]+ s in fv-trap mode/);
    // Two port accesses per character, each trapped and emulated.
    const out = Number(/^\s+out\s+(\d+)$/m.exec(r.err)?.[1]);
    expect(out).toBeGreaterThanOrEqual(64 * 64);
    expect(r.err).toMatch(/instructions retired: \d+/);
  }, 120_000);

  it('runs several side by side, their lines after their names', async () => {
    const r = await run(...[...FV, '--timeout', '60', native('ticks'), native('spin'), native('spin')]);
    expect(r.out).toMatch(/^\[ticks-native\] ticks: \d+ of \d+ ticks/m);
    expect(TICKS_LINE.test(r.out)).toBe(true);
    expect(r.out).toMatch(/^\[spin-native\] spin: /m);
    expect(r.out).toMatch(/^\[spin-native-2\] spin: /m);
    expect(r.code, r.err).toBe(EXIT.POWEROFF);
  }, 120_000);

  it('kills the domains the timeout finds running', async () => {
    // spin computes for 1500 ms of its clock, which is the host's: a 1 s timeout always comes first.
    const r = await run(...[...FV, '--timeout', '1', native('spin')]);
    expect(r.code, r.err).toBe(EXIT.TIMEOUT);
    expect(r.err).toContain('domain 1 (spin-native) killed: the run timed out');
  }, 60_000);

  it('ends a hostile plain kernel alone with the reason and status 3', async () => {
    const r = await run(...[...FV, path.join(ELF, 'plain-outside.elf')]);
    expect(r.code).toBe(EXIT.CRASH);
    expect(r.err).toContain("domain 1 (plain-outside) crashed: 0x20000000 maps guest-physical 0x20000000, outside the domain's 32 MiB");
  }, 60_000);

  it('refuses a kernel of the other kind, saying which mode runs it', async () => {
    const pv = await run(...[...FV, path.join(GUESTS, 'nano.elf')]);
    expect(pv.code).toBe(EXIT.USAGE);
    expect(pv.err).toContain('this is a Xen PV kernel (it has a XEN_VERSION note), not a plain one: run it in PV mode');
    const plain = await run(...['run', '--engine', 'soft', native('nano')]);
    expect(plain.code).toBe(EXIT.USAGE);
    expect(plain.err).toContain('(a plain kernel with a PVH entry: run it with --mode fv-trap)');
  }, 60_000);

  it('refuses an unknown mode and the options only PV kernels take', async () => {
    const bogus = await run(...['run', '--mode', 'fv-magic', native('nano')]);
    expect(bogus).toMatchObject({ code: EXIT.USAGE, err: 'paravane: --mode fv-magic: choose pv, fv-trap\n' });
    for (const [flag, value, says] of [
      ['--cmdline', 'x', 'no start_info to carry a command line'],
      ['--vcpus', '2', 'runs one vCPU per domain'],
      ['--weight', '512', '--weight and --cap are for PV domains'],
    ] as const) {
      const r = await run(...FV, flag, value, native('nano'));
      expect(r.code, flag).toBe(EXIT.USAGE);
      expect(r.err, flag).toContain(says);
    }
  }, 60_000);
});
