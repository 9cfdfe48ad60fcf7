// Compiles and runs the generated layout probes for the ABI tests.

import { execFileSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';

export const ROOT = path.resolve(import.meta.dirname, '../..');
export const GUEST_INCLUDE = path.join(ROOT, 'guest-kit/include');
export const PROBE = path.join(ROOT, 'test/abi/generated/layout-probe.c');
/** The Xen interface version whose layouts paravane implements (Xen 4.14+). */
export const XEN_INTERFACE_VERSION = '0x00040e00';

export function tmpDir(prefix: string): string {
  return fs.mkdtempSync(path.join(os.tmpdir(), `paravane-${prefix}-`));
}

/** Compiles `source` with gcc and returns the binary's path; throws with gcc's messages. */
export function compile(source: string, out: string, flags: string[]): string {
  try {
    execFileSync('gcc', ['-std=gnu11', '-O0', '-w', ...flags, '-o', out, source], { stdio: ['ignore', 'pipe', 'pipe'] });
  } catch (e) {
    const err = e as { stderr?: Buffer };
    throw new Error(`gcc failed on ${path.basename(source)} (${flags.join(' ')}):\n${err.stderr?.toString() ?? String(e)}`);
  }
  return out;
}

/** Runs the layout probe built against one set of headers: key -> value lines. */
export function probeLayouts(flags: string[], dir: string, name: string): Map<string, string> {
  const bin = compile(PROBE, path.join(dir, name), flags);
  const out = execFileSync(bin, { encoding: 'utf8' });
  const map = new Map<string, string>();
  for (const line of out.trim().split('\n')) {
    const [kind, key, ...rest] = line.split(' ');
    const k = `${kind} ${key}`;
    if (map.has(k)) throw new Error(`layout probe printed ${k} twice`);
    map.set(k, rest.join(' '));
  }
  return map;
}

/** Every key whose value differs, or that only one side has. */
export function compareProbes(xen: Map<string, string>, ours: Map<string, string>): string[] {
  const diffs: string[] = [];
  for (const [k, v] of xen) {
    if (!ours.has(k)) diffs.push(`${k}: only in Xen's headers (${v})`);
    else if (ours.get(k) !== v) diffs.push(`${k}: Xen ${v}, paravane ${ours.get(k)}`);
  }
  for (const k of ours.keys()) if (!xen.has(k)) diffs.push(`${k}: only in paravane's headers`);
  return diffs;
}

export function xenHeadersPresent(): boolean {
  return fs.existsSync('/usr/include/xen/xen.h') && fs.existsSync('/usr/include/xen/io/xs_wire.h');
}
