// Xen's test framework (XTF), built from a snapshot tarball outside the
// project's sources: the 64-bit PV tests (39 of them, 40 runs with
// pv-iopl's two variants), each with its xl-style config (memory, vCPUs,
// command line). XTF is never part of the project; a build is cached in a
// folder of the caller's choice and rebuilt when the snapshot changes.
// Inputs: the snapshot (trusted: Xen's published sources) and the configs
// it builds (parsed here).

import { execFileSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';

/** One XTF run: a pv64 test kernel with its config (a variant's cmdline for pv-iopl). */
export interface XtfRun {
  /** The test's name, with its variant: "example", "pv-iopl~hypercall". */
  name: string;
  kernel: string;
  memoryMib: number;
  vcpus: number;
  cmdline?: string;
}

/** Where a project run looks for the snapshot by default: the shared folder beside the project. */
export function defaultTarball(projectRoot: string): string | undefined {
  const dir = path.resolve(projectRoot, '../shared/real-guests');
  if (!fs.existsSync(dir)) return undefined;
  const f = fs.readdirSync(dir).find((n) => /^xtf-.*\.tar\.gz$/.test(n));
  return f ? path.join(dir, f) : undefined;
}

/**
 * Builds the pv64 tests of `tarball` under `outDir` (gcc, make, python3;
 * ~25-45 s on two cores) unless a build of the same tarball is there, and
 * returns the runs, sorted by name.
 */
export function buildXtf(tarball: string, outDir: string): XtfRun[] {
  const stamp = path.join(outDir, '.built-from');
  const id = `${path.basename(tarball)} ${fs.statSync(tarball).size}`;
  const root = path.join(outDir, 'xtf');
  if (!fs.existsSync(stamp) || fs.readFileSync(stamp, 'utf8') !== id) {
    fs.rmSync(outDir, { recursive: true, force: true });
    fs.mkdirSync(outDir, { recursive: true });
    execFileSync('tar', ['-xzf', tarball, '-C', outDir]);
    const tests = fs.readdirSync(path.join(root, 'tests')).filter((t) => {
      const mk = path.join(root, 'tests', t, 'Makefile');
      if (!fs.existsSync(mk)) return false;
      const envs = fs.readFileSync(mk, 'utf8').split('\n').find((l) => l.startsWith('TEST-ENVS')) ?? '';
      return /pv64|\$\((ALL|PV)_ENVIRONMENTS\)/.test(envs);
    });
    execFileSync('make', ['-j2', `TESTS=${tests.map((t) => path.join(root, 'tests', t)).join(' ')}`, 'TEST-ENVS=pv64'], { cwd: root, stdio: 'ignore' });
    fs.writeFileSync(stamp, id);
  }
  return xtfRuns(root);
}

/** The runs of a built tree, from its test-pv64-*.cfg files. */
export function xtfRuns(root: string): XtfRun[] {
  const runs: XtfRun[] = [];
  for (const t of fs.readdirSync(path.join(root, 'tests'))) {
    const dir = path.join(root, 'tests', t);
    for (const cfg of fs.readdirSync(dir).filter((f) => /^test-pv64-.*\.cfg$/.test(f))) {
      const kv = parseCfg(fs.readFileSync(path.join(dir, cfg), 'utf8'));
      const variant = /~(.*)\.cfg$/.exec(cfg)?.[1];
      runs.push({
        name: variant ? `${t}~${variant}` : t,
        kernel: path.join(dir, `test-pv64-${t}`),
        memoryMib: Number(kv.memory ?? '128'),
        vcpus: Number(kv.vcpus ?? '1'),
        cmdline: kv.cmdline,
      });
    }
  }
  return runs.sort((a, b) => a.name.localeCompare(b.name));
}

/** key=value and key="value" lines of an xl config (comments dropped). */
function parseCfg(text: string): Record<string, string> {
  const out: Record<string, string> = {};
  for (const line of text.split('\n')) {
    const m = /^\s*([A-Za-z_]+)\s*=\s*("([^"]*)"|(\S+))/.exec(line.replace(/#.*$/, ''));
    if (m) out[m[1]!] = m[3] ?? m[4]!;
  }
  return out;
}
