// Xen's test framework (XTF) against paravane: its pv64 tests, built from
// the snapshot outside the project, each loaded and built as a domain
// (engine-free: the ELF loader and domain builder meet Xen's own guests),
// and each run to its verdict on KVM, or on the software engine where
// /dev/kvm does not exist, which must be the one src/xtf/verdicts.ts expects (SUCCESS, or SKIP where Xen itself would
// skip, or a named 'todo' that must not yet pass). Without the snapshot
// (a clone with no ../shared) the suite is skipped with the reason.

import { beforeAll, describe, expect, it } from 'vitest';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { buildXtf, defaultTarball, type XtfRun } from '../../src/xtf/build.js';
import { XTF_VERDICTS } from '../../src/xtf/verdicts.js';
import { runXtf } from '../../src/xtf/run.js';
import { parseGuestKernel } from '../../src/hv/domain/elf.js';
import { StartInfo } from '../../src/abi/generated/xen.js';
import { selectEngine } from '../../src/engine/select.js';
import { scriptedMachine } from '../support/scripted.js';
import { GUEST_ENGINE } from '../support/kvm-gate.js';

const ROOT = path.resolve(import.meta.dirname, '../..');
const TARBALL = process.env.XTF_TARBALL ?? defaultTarball(ROOT);
if (!TARBALL) console.warn('SKIP: no XTF snapshot (../shared/real-guests/xtf-*.tar.gz): the XTF tests are skipped');
const MIB = 1 << 20;

describe.skipIf(!TARBALL)('XTF pv64 tests', () => {
  let runs: XtfRun[] = [];
  beforeAll(() => {
    runs = buildXtf(TARBALL!, path.join(ROOT, 'build/xtf'));
  }, 300_000);

  it('builds the 40 pv64 runs, each with a verdict in the table', () => {
    expect(runs.map((r) => r.name).sort()).toEqual(Object.keys(XTF_VERDICTS).sort());
    expect(runs.filter((r) => r.name.startsWith('pv-iopl~')).map((r) => r.cmdline)).toEqual(['hypercall', 'vmassist']);
  });

  it('loads every kernel and builds it as a domain with Xen\'s boot protocol (no engine needed)', () => {
    for (const r of runs) {
      const file = fs.readFileSync(r.kernel);
      const k = parseGuestKernel(file);
      expect(k.notes.hypercallPage, r.name).toBeDefined();
      const { hv } = scriptedMachine(1, undefined, r.memoryMib * MIB);
      try {
        const d = hv.createDomain(file, { memoryBytes: r.memoryMib * MIB, cmdline: r.cmdline });
        const si = StartInfo.over(d.memory.page(d.layout.pfn.startInfo).buffer, d.memory.page(d.layout.pfn.startInfo).byteOffset);
        expect(si.magic, r.name).toBe('xen-3.0-x86_64');
        expect(si.nr_pages, r.name).toBe(BigInt((r.memoryMib * MIB) / 4096));
        expect(si.cmd_line, r.name).toBe(r.cmdline ?? '');
        hv.destroyDomain(d);
      } finally {
        hv.close();
      }
    }
  }, 120_000);

  describe(`on this host's engine (${GUEST_ENGINE})`, () => {
    it('reaches the verdict the table expects in every run', async () => {
      const engine = selectEngine(GUEST_ENGINE);
      const wrong: string[] = [];
      try {
        for (const r of runs) {
          const res = await runXtf(engine, r);
          const want = XTF_VERDICTS[r.name]!;
          const ok = want.expect === 'todo' ? res.verdict !== 'SUCCESS' : res.verdict === want.expect;
          if (!ok) wrong.push(`${r.name}: ${res.verdict} ${res.detail} (expected ${want.expect}); console ends: ${res.console.slice(-300)}`);
        }
      } finally {
        engine.close();
      }
      expect(wrong).toEqual([]);
    }, 1_800_000);
  });
});
