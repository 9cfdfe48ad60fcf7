// Numbers from flags and config files, in one syntax: decimal digits (a
// config value may be a whole JSON number), checked against a range, with an
// error that names the value's source and gives the syntax and the range.
// Input: untrusted strings and JSON values.

import { UsageError } from './usage-error.js';

export interface NumberRule {
  /** What the value counts, after "a whole number": " of MiB", "" ... */
  unit: string;
  min: number;
  max: number;
  /** Said after the range: "(this host's memory)". */
  maxNote?: string;
}

const show = (v: unknown): string => (v === undefined ? 'nothing' : JSON.stringify(v) ?? String(v));

/**
 * A whole number in the rule's range, from a flag (a string of decimal
 * digits) or a config value (the same string, or a whole JSON number).
 * `label` names the value: "--memory", "cfg.json: domains[1]: memory".
 */
export function parseWholeNumber(v: unknown, label: string, rule: NumberRule): number {
  const n = typeof v === 'string' && /^[0-9]+$/.test(v) ? Number(v) : typeof v === 'number' && Number.isInteger(v) ? v : NaN;
  if (!(n >= rule.min && n <= rule.max)) {
    const range = `from ${rule.min} to ${rule.max}${rule.maxNote ? ` ${rule.maxNote}` : ''}`;
    throw new UsageError(`${label} must be a whole number${rule.unit}, in decimal digits, ${range}, not ${show(v)}`);
  }
  return n;
}

/** The shortest and longest --timeout, in seconds. */
export const TIMEOUT_RANGE = { min: 0.001, max: 1_000_000 } as const;

/** A number of seconds: decimal digits with an optional fraction ("30", "0.5"). */
export function parseSeconds(v: string, label: string): number {
  const n = /^[0-9]+(\.[0-9]+)?$/.test(v) ? Number(v) : NaN;
  if (!(n >= TIMEOUT_RANGE.min && n <= TIMEOUT_RANGE.max)) {
    throw new UsageError(`${label} must be a number of seconds, in decimal digits (e.g. 30 or 0.5), from ${TIMEOUT_RANGE.min} to ${TIMEOUT_RANGE.max}, not ${show(v)}`);
  }
  return n;
}
