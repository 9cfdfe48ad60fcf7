// How `paravane run` ends, without a guest: the exit status of each kind of
// domain end and of several together, the messages and --stats report of a
// domain, and the help that documents them.

import { describe, expect, it } from 'vitest';
import { EXIT, outcomeOf, runStatus, signalStatus, statusOf, type Outcome, type Stop } from '../../src/cli/exit-status.js';
import { endMessage, formatStats, type StatsDomain } from '../../src/cli/run.js';
import { PARENT_GONE, STDOUT_CLOSED } from '../../src/cli/stop.js';
import { ShutdownReason } from '../../src/abi/generated/sched.js';
import { ExitCounts, EXIT_KINDS } from '../../src/hv/cpu/exit-counts.js';
import type { DomainEnd } from '../../src/hv/domain/domain.js';
import { HYPERCALLS } from '../../src/abi/generated/hypercalls.js';
import { paravane } from './spawn.js';

const SIGINT: Stop = { signal: 'SIGINT', message: 'interrupted by SIGINT' };
const shutdown = (reason: number, reasonName: string): DomainEnd => ({ kind: 'shutdown', reason, reasonName });

describe('exit status of one domain end', () => {
  it.each<[string, DomainEnd, Stop | undefined, number]>([
    ['a poweroff is 0', shutdown(ShutdownReason.SHUTDOWN_poweroff, 'poweroff'), undefined, 0],
    ['a crash is 3', { kind: 'crashed', reason: 'unhandled #UD' }, undefined, 3],
    ['a shutdown with reason crash is 3, as a crash', shutdown(ShutdownReason.SHUTDOWN_crash, 'crash'), undefined, 3],
    ['a reboot request is 4', shutdown(ShutdownReason.SHUTDOWN_reboot, 'reboot'), undefined, 4],
    ['a suspend is 5', shutdown(ShutdownReason.SHUTDOWN_suspend, 'suspend'), undefined, 5],
    ['a watchdog shutdown is 5', shutdown(ShutdownReason.SHUTDOWN_watchdog, 'watchdog'), undefined, 5],
    ['a kill at the timeout is 6', { kind: 'killed', reason: 'timed out after 0.2 s' }, undefined, 6],
    ['a kill at the timeout while a stop is under way is still 6', { kind: 'killed', reason: 'timed out after 0.2 s' }, SIGINT, 6],
    ['SIGINT is 130', { kind: 'killed', reason: 'interrupted by SIGINT' }, SIGINT, 130],
    ['SIGTERM is 143', { kind: 'killed', reason: 'interrupted by SIGTERM' }, { signal: 'SIGTERM', message: 'interrupted by SIGTERM' }, 143],
    ['SIGHUP is 129', { kind: 'killed', reason: 'interrupted by SIGHUP' }, { signal: 'SIGHUP', message: 'interrupted by SIGHUP' }, 129],
    ['the parent going away is 129, as SIGHUP', { kind: 'killed', reason: PARENT_GONE.message }, PARENT_GONE, 129],
    ['a closed stdout is 141, as SIGPIPE', { kind: 'killed', reason: STDOUT_CLOSED.message }, STDOUT_CLOSED, 141],
  ])('%s', (_, end, stop, status) => {
    expect(statusOf(outcomeOf(end, stop))).toBe(status);
  });

  it('keeps every status distinct from bad input (2), an unusable engine (1) and a bug (70)', () => {
    const statuses = [0, 3, 4, 5, 6, 129, 130, 141, 143];
    for (const s of [EXIT.USAGE, EXIT.ENGINE_UNAVAILABLE, EXIT.INTERNAL]) expect(statuses).not.toContain(s);
    expect(new Set([EXIT.POWEROFF, EXIT.ENGINE_UNAVAILABLE, EXIT.USAGE, EXIT.CRASH, EXIT.REBOOT, EXIT.OTHER_SHUTDOWN, EXIT.TIMEOUT, EXIT.INTERNAL]).size).toBe(8);
    expect(signalStatus('SIGINT')).toBe(130);
  });
});

describe('exit status of several domains', () => {
  const o = (kind: Exclude<Outcome['kind'], 'stopped'>): Outcome => ({ kind }) as Outcome;
  const stopped: Outcome = { kind: 'stopped', stop: SIGINT };

  it('is 0 only when every domain powered off', () => {
    expect(runStatus([o('poweroff'), o('poweroff')])).toBe(0);
    expect(runStatus([o('poweroff'), o('reboot')])).toBe(4);
  });

  it('is that of the most severe end: signal, crash, timeout, other shutdown, reboot, poweroff', () => {
    const order: Outcome[] = [o('poweroff'), o('reboot'), o('other-shutdown'), o('timeout'), o('crash'), stopped];
    for (let i = 0; i < order.length; i++) {
      for (let j = 0; j <= i; j++) {
        expect(runStatus([order[j]!, order[i]!])).toBe(statusOf(order[i]!));
        expect(runStatus([order[i]!, order[j]!])).toBe(statusOf(order[i]!));
      }
    }
  });
});

describe('what is said when a domain ends', () => {
  const d = { id: 2, name: 'crasher' };
  it('says nothing of a poweroff, or of a domain a closed stdout ended', () => {
    expect(endMessage(d, shutdown(0, 'poweroff'), { kind: 'poweroff' })).toBeUndefined();
    const end: DomainEnd = { kind: 'killed', reason: STDOUT_CLOSED.message };
    expect(endMessage(d, end, outcomeOf(end, STDOUT_CLOSED))).toBeUndefined();
  });

  it('names the domain and the reason of every other end', () => {
    const crash: DomainEnd = { kind: 'crashed', reason: 'unhandled #UD' };
    expect(endMessage(d, crash, outcomeOf(crash, undefined))).toBe('domain 2 (crasher) crashed: unhandled #UD');
    const kill: DomainEnd = { kind: 'killed', reason: 'interrupted by SIGINT' };
    expect(endMessage(d, kill, outcomeOf(kill, SIGINT))).toBe('domain 2 (crasher) killed: interrupted by SIGINT');
    const gone: DomainEnd = { kind: 'killed', reason: PARENT_GONE.message };
    expect(endMessage(d, gone, outcomeOf(gone, PARENT_GONE))).toBe('domain 2 (crasher) killed: the parent process went away');
  });
});

describe('--stats', () => {
  it("reports the domain's own run time and its CPU time, then hypercalls, exits and port I/O", () => {
    const exitCounts = new ExitCounts();
    exitCounts.n[EXIT_KINDS.indexOf('exception')] = 1;
    const hypercallCounts = new Float64Array(64);
    const consoleIo = HYPERCALLS.find((h) => h.name === 'console_io')!;
    hypercallCounts[consoleIo.nr] = 3;
    const d: StatsDomain = { id: 1, name: 'crash', framesReturned: 42, hypercallCounts, exitCounts, cpuNs: 250_000_000n, ports: { counts: { reads: 7, writes: 2 } } };
    const text = formatStats(d, 1_500_000_000n);
    expect(text.split('\n')[0]).toBe('paravane: domain 1 (crash) ran 1.500 s, 0.250 s of it on the CPU; frames returned to the pool: 42');
    expect(text).toMatch(/^ {4}console_io +3$/m);
    expect(text).toMatch(/^ {4}exception +1$/m);
    expect(text).toMatch(/^ {2}port I\/O: 7 reads, 2 writes$/m);
    expect(text).not.toMatch(/instructions retired/); // KVM counts none
    expect(formatStats({ ...d, instructionsRetired: 123456 }, 1n)).toMatch(/^ {2}instructions retired: 123456$/m);
  });
});

describe('paravane run --help', () => {
  it('gives the table of exit statuses, the rule for several domains, the limits and the signals', async () => {
    const r = await paravane('run', '--help');
    expect(r.code).toBe(0);
    for (const line of [
      /^ {2}0 +every domain powered off$/m, /^ {2}1 +the engine cannot run guests here/m, /^ {2}2 +bad input/m,
      /^ {2}3 +a domain crashed/m, /^ {2}4 +a domain asked to reboot$/m, /^ {2}5 +a domain shut down for another reason/m,
      /^ {2}6 +a domain was still running at --timeout/m, /^ {2}70 +internal error/m,
      /^ {2}128\+n +ended by signal n: 129 SIGHUP, 130 SIGINT, 143 SIGTERM$/m,
      /^ {2}129 +also when the parent process goes away$/m, /^ {2}141 +also when stdout is closed/m,
      /^signal > crash > timeout > other shutdown > reboot > poweroff\.$/m,
      /^Limits: --memory at most this host's memory/m, /^Signals: SIGINT, SIGTERM or SIGHUP ends every domain/m,
    ]) expect(r.out).toMatch(line);
  });
});
