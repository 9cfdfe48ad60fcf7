// `npm run xtf [-- FILTER]`: builds Xen's test framework from the snapshot
// (outside the sources, cached in build/xtf), runs each pv64 test whose
// name contains FILTER, prints one line per test (its verdict and what the
// table expects) and a total. Runs on KVM, or on the software engine where
// /dev/kvm does not exist (PARAVANE_ENGINE=kvm|soft chooses).

import * as path from 'node:path';
import { selectEngine } from '../engine/select.js';
import { EngineUnavailableError } from '../engine/errors.js';
import type { Engine } from '../engine/types.js';
import { buildXtf, defaultTarball } from './build.js';
import { runXtf } from './run.js';
import { XTF_VERDICTS } from './verdicts.js';

const ROOT = path.resolve(import.meta.dirname, '../..');
const filter = process.argv[2] ?? '';
const tarball = process.env.XTF_TARBALL ?? defaultTarball(ROOT);
if (!tarball) {
  console.error('paravane xtf: no XTF snapshot (set XTF_TARBALL, or put xtf-*.tar.gz in ../shared/real-guests)');
  process.exit(2);
}
const runs = buildXtf(tarball, path.join(ROOT, 'build/xtf')).filter((r) => r.name.includes(filter));
let engine: Engine;
try {
  engine = selectEngine(process.env.PARAVANE_ENGINE === 'soft' || process.env.PARAVANE_ENGINE === 'kvm' ? process.env.PARAVANE_ENGINE : 'auto');
} catch (e) {
  if (!(e instanceof EngineUnavailableError)) throw e;
  console.error(`paravane xtf: ${runs.length} runs built; they cannot be run here: ${e.message}`);
  process.exit(1);
}
let success = 0, asExpected = 0;
try {
  for (const r of runs) {
    const res = await runXtf(engine, r);
    const want = XTF_VERDICTS[r.name];
    const ok = want ? (want.expect === 'todo' ? res.verdict !== 'SUCCESS' : res.verdict === want.expect) : false;
    if (res.verdict === 'SUCCESS') success++;
    if (ok) asExpected++;
    const why = want?.expect === 'todo' ? ` (todo: ${want.missing})` : want?.expect === 'SKIP' ? ` (${want.why})` : '';
    console.log(`${ok ? 'ok  ' : 'FAIL'} ${r.name.padEnd(24)} ${res.verdict.padEnd(8)} expected ${want?.expect ?? '?'}${why}${res.detail ? `: ${res.detail}` : ''}`);
  }
} finally {
  engine.close();
}
console.log(`${success} of ${runs.length} SUCCESS; ${asExpected} of ${runs.length} as the table expects`);
process.exitCode = asExpected === runs.length ? 0 : 1;
