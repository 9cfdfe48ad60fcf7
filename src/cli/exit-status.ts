// The exit statuses of `paravane run`: how each domain's end is classified,
// and how the ends of several domains become one status. Pure functions;
// their inputs are the hypervisor's own domain ends and what the command
// itself knows about why it stopped the domains (trusted).

import { constants } from 'node:os';
import { ShutdownReason } from '../abi/generated/sched.js';
import type { DomainEnd } from '../hv/domain/domain.js';

/** The statuses other than 128+n (ended by signal n). */
export const EXIT = {
  /** Every domain powered off. */
  POWEROFF: 0,
  /** The engine cannot run guests on this host (no usable /dev/kvm). */
  ENGINE_UNAVAILABLE: 1,
  /** Bad input: arguments, flags, config file, kernel or initrd. */
  USAGE: 2,
  /** A domain crashed (or shut down with reason crash). */
  CRASH: 3,
  /** A domain asked to be rebooted. */
  REBOOT: 4,
  /** A domain shut down for another reason: suspend, watchdog, soft_reset. */
  OTHER_SHUTDOWN: 5,
  /** A domain was still running at --timeout and was killed. */
  TIMEOUT: 6,
  /** A domain was destroyed by `paravane destroy`. */
  DESTROYED: 7,
  /** A paravane bug: the stack trace is on stderr. */
  INTERNAL: 70,
} as const;

/**
 * Why the command stopped every domain still running: a signal, its
 * standard output closed, or its parent process gone. `signal` decides the
 * status (128 + its number); `message` is the kill reason the domains get.
 */
export interface Stop {
  signal: NodeJS.Signals;
  message: string;
  /** Say nothing about the domains it ended (a closed stdout ends the run as quietly as `cat`). */
  quiet?: boolean;
}

/** How one domain ended, in the terms of the exit status. */
export type Outcome =
  | { kind: 'poweroff' }
  | { kind: 'reboot' }
  | { kind: 'other-shutdown' }
  | { kind: 'crash' }
  | { kind: 'timeout' }
  | { kind: 'destroyed' }
  | { kind: 'stopped'; stop: Stop };

/** The kill reason of a domain `paravane destroy` ended. */
export const DESTROY_REASON = 'destroyed by `paravane destroy`';

/**
 * Classifies a domain's end. `stop` is the Stop the command aborted the run
 * with, if any: hypervisor.run kills a domain only for its timeout or for
 * that abort, whose reason it passes on unchanged, so a kill with the
 * stop's message is the stop and any other is the timeout.
 */
export function outcomeOf(end: DomainEnd, stop: Stop | undefined): Outcome {
  switch (end.kind) {
    case 'shutdown':
      if (end.reason === ShutdownReason.SHUTDOWN_poweroff) return { kind: 'poweroff' };
      if (end.reason === ShutdownReason.SHUTDOWN_reboot) return { kind: 'reboot' };
      if (end.reason === ShutdownReason.SHUTDOWN_crash) return { kind: 'crash' };
      return { kind: 'other-shutdown' };
    case 'crashed':
      return { kind: 'crash' };
    case 'killed':
      if (end.reason === DESTROY_REASON) return { kind: 'destroyed' };
      return stop !== undefined && end.reason === stop.message ? { kind: 'stopped', stop } : { kind: 'timeout' };
  }
}

/** The line saying how a domain ended; none for a poweroff, or for a quiet stop. */
export function endMessage(d: { id: number; name: string }, end: DomainEnd, outcome: Outcome): string | undefined {
  const who = `domain ${d.id} (${d.name})`;
  switch (end.kind) {
    case 'shutdown':
      return outcome.kind === 'poweroff' ? undefined : `${who} shut down with reason ${end.reasonName}`;
    case 'crashed':
      return `${who} crashed: ${end.reason}`;
    case 'killed':
      return outcome.kind === 'stopped' && outcome.stop.quiet ? undefined : `${who} killed: ${end.reason}`;
  }
}

/** The status of one outcome. */
export function statusOf(o: Outcome): number {
  switch (o.kind) {
    case 'poweroff': return EXIT.POWEROFF;
    case 'reboot': return EXIT.REBOOT;
    case 'other-shutdown': return EXIT.OTHER_SHUTDOWN;
    case 'crash': return EXIT.CRASH;
    case 'timeout': return EXIT.TIMEOUT;
    case 'destroyed': return EXIT.DESTROYED;
    case 'stopped': return signalStatus(o.stop.signal);
  }
}

/** 128 + the signal's number, as a shell reports a command a signal ended. */
export function signalStatus(signal: NodeJS.Signals): number {
  const n = constants.signals[signal];
  if (n === undefined) throw new Error(`unknown signal ${signal}`);
  return 128 + n;
}

/** From least to most severe: with several domains, the most severe end gives the status. */
const SEVERITY: ReadonlyArray<Outcome['kind']> = ['poweroff', 'reboot', 'other-shutdown', 'timeout', 'destroyed', 'crash', 'stopped'];

/** The exit status of a run whose domains ended so: that of the most severe end (0 for none). */
export function runStatus(outcomes: readonly Outcome[]): number {
  let worst: Outcome = { kind: 'poweroff' };
  for (const o of outcomes) if (SEVERITY.indexOf(o.kind) > SEVERITY.indexOf(worst.kind)) worst = o;
  return statusOf(worst);
}

/** The table for `paravane run --help` (README.md holds the same). */
export const EXIT_STATUS_HELP = `
Exit status:
  0      every domain powered off
  1      the engine cannot run guests here (no usable /dev/kvm; see \`paravane doctor\`)
  2      bad input: arguments, flags, config file, kernel or initrd (one line on stderr)
  3      a domain crashed (or shut down with reason crash)
  4      a domain asked to reboot
  5      a domain shut down for another reason (suspend, watchdog, soft_reset)
  6      a domain was still running at --timeout and was killed
  7      a domain was destroyed (\`paravane destroy\`)
  70     internal error (a paravane bug; a stack trace follows)
  128+n  ended by signal n: 129 SIGHUP, 130 SIGINT, 143 SIGTERM
  129    also when the parent process goes away
  141    also when stdout is closed (as SIGPIPE ends \`cat\`; nothing is said)
With several domains, the most severe end decides, in this order:
signal > crash > timeout > other shutdown > reboot > poweroff.

`;
