// The domains of `paravane run`, from the kernels and flags or from a config
// file's "domains" list (entries override the flags). Input: untrusted flags
// and config file; every problem is a UsageError naming the flag (--memory)
// or the file and entry (cfg.json: domains[1]: memory).

import * as path from 'node:path';
import { CAP_RANGE, MAX_VCPUS, WEIGHT_RANGE } from '../hv/hypervisor.js';
import { formatSize, readInputFile } from './input-files.js';
import { parseWholeNumber, type NumberRule } from './numbers.js';
import { UsageError } from './usage-error.js';

/** One domain to run, as the user described it. */
export interface DomainSpec {
  /** Path of the kernel file. */
  kernel: string;
  /** Unique among the run's domains. */
  name: string;
  /** The config entry that describes it ("cfg.json: domains[1]"); undefined for the command line. */
  entry?: string;
  memoryMib: number;
  cmdline?: string;
  /** Where the command line came from, for messages: "--cmdline" or "cfg.json: domains[1]: cmdline". */
  cmdlineLabel: string;
  initrd?: string;
  weight?: number;
  cap?: number;
  vcpus?: number;
}

/** The flags a run takes its domains from. */
export interface SpecFlags {
  memory: string;
  weight?: string;
  cap?: string;
  vcpus?: string;
  cmdline?: string;
  initrd?: string;
  config?: string;
}

/** The largest config file read. */
export const MAX_CONFIG_BYTES = 1 << 20;

const KEYS = new Set(['kernel', 'name', 'memory', 'cmdline', 'initrd', 'weight', 'cap', 'vcpus']);

const WEIGHT: NumberRule = { unit: '', ...WEIGHT_RANGE };
const CAP: NumberRule = { unit: ' of percent', ...CAP_RANGE };
const VCPUS: NumberRule = { unit: '', min: 1, max: MAX_VCPUS };

function jsonKind(v: unknown): string {
  if (v === null) return 'null';
  if (Array.isArray(v)) return 'an array';
  return typeof v === 'object' ? 'an object' : `a ${typeof v}`;
}

/**
 * The domains to run: one per kernel on the command line, or the config
 * file's list. `maxMemoryMib` is the most memory one domain may have.
 */
export function domainSpecs(kernels: string[], flags: SpecFlags, maxMemoryMib: number): DomainSpec[] {
  const memory: NumberRule = { unit: ' of MiB', min: 1, max: maxMemoryMib, maxNote: "(this host's memory)" };
  const fromFlags = {
    memoryMib: parseWholeNumber(flags.memory, '--memory', memory),
    weight: flags.weight === undefined ? undefined : parseWholeNumber(flags.weight, '--weight', WEIGHT),
    cap: flags.cap === undefined ? undefined : parseWholeNumber(flags.cap, '--cap', CAP),
    vcpus: flags.vcpus === undefined ? undefined : parseWholeNumber(flags.vcpus, '--vcpus', VCPUS),
    cmdline: flags.cmdline, cmdlineLabel: '--cmdline', initrd: flags.initrd,
  };
  let specs: DomainSpec[];
  if (flags.config !== undefined) {
    if (kernels.length) throw new UsageError('give the kernels either on the command line or in --config, not both');
    specs = configSpecs(flags.config, fromFlags, memory);
  } else {
    if (!kernels.length) throw new UsageError('no kernel given');
    specs = kernels.map((kernel) => ({ kernel, name: '', ...fromFlags }));
  }
  // Names: given, or the kernel's file name; made unique.
  const seen = new Map<string, number>();
  for (const sp of specs) {
    const want = sp.name || path.basename(sp.kernel).replace(/\.elf$/, '');
    const n = (seen.get(want) ?? 0) + 1;
    seen.set(want, n);
    sp.name = n === 1 ? want : `${want}-${n}`;
  }
  return specs;
}

function configSpecs(file: string, fromFlags: Omit<DomainSpec, 'kernel' | 'name'>, memory: NumberRule): DomainSpec[] {
  const text = readInputFile('config file', file, { bytes: MAX_CONFIG_BYTES, why: `a config file may be at most ${formatSize(MAX_CONFIG_BYTES)}` });
  let doc: unknown;
  try {
    doc = JSON.parse(text.toString('utf8'));
  } catch (e) {
    throw new UsageError(`${file}: not valid JSON (${(e as Error).message})`);
  }
  if (typeof doc !== 'object' || doc === null || Array.isArray(doc)) {
    throw new UsageError(`${file}: must hold a JSON object {"domains": [...]}, not ${jsonKind(doc)}`);
  }
  for (const k of Object.keys(doc)) if (k !== 'domains') throw new UsageError(`${file}: unknown key "${k}" (the only one is "domains")`);
  const list = (doc as { domains?: unknown }).domains;
  if (!Array.isArray(list) || list.length === 0) throw new UsageError(`${file}: needs a non-empty "domains" list`);
  // Paths in the file are relative to it.
  const rel = (f: string): string => path.resolve(path.dirname(file), f);
  return list.map((e: unknown, i): DomainSpec => {
    const entry = `${file}: domains[${i}]`;
    if (typeof e !== 'object' || e === null || Array.isArray(e)) throw new UsageError(`${entry} must be an object, not ${jsonKind(e)}`);
    const o = e as Record<string, unknown>;
    for (const k of Object.keys(o)) if (!KEYS.has(k)) throw new UsageError(`${entry}: unknown key "${k}"`);
    const str = (k: string): string | undefined => {
      if (o[k] !== undefined && typeof o[k] !== 'string') throw new UsageError(`${entry}: ${k} must be a string, not ${jsonKind(o[k])}`);
      return o[k] as string | undefined;
    };
    const kernel = str('kernel');
    if (kernel === undefined) throw new UsageError(`${entry}: "kernel" (a path) is required`);
    const initrd = str('initrd');
    const num = (k: string, rule: NumberRule): number | undefined => (o[k] === undefined ? undefined : parseWholeNumber(o[k], `${entry}: ${k}`, rule));
    return {
      kernel: rel(kernel), name: str('name') ?? '', entry,
      memoryMib: num('memory', memory) ?? fromFlags.memoryMib,
      ...(o.cmdline === undefined ? { cmdline: fromFlags.cmdline, cmdlineLabel: fromFlags.cmdlineLabel } : { cmdline: str('cmdline'), cmdlineLabel: `${entry}: cmdline` }),
      initrd: initrd === undefined ? fromFlags.initrd : rel(initrd),
      weight: num('weight', WEIGHT) ?? fromFlags.weight,
      cap: num('cap', CAP) ?? fromFlags.cap,
      vcpus: num('vcpus', VCPUS) ?? fromFlags.vcpus,
    };
  });
}
