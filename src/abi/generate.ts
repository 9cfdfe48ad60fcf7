// `npm run abi`: regenerates every file derived from abi/*.proto (C headers,
// TypeScript accessors, docs/abi.md, layout-test probes). With --check it
// writes nothing and exits 1 if any committed file is stale.

import * as fs from 'node:fs';
import * as path from 'node:path';
import { generateCHeader, generateUmbrella } from './gen-c.js';
import { generateDocs } from './gen-docs.js';
import { generateLayoutProbe, generateRoundtripProgram, leafCases } from './gen-probes.js';
import { generateTsHypercalls, generateTsIndex, generateTsModule, tsModuleName } from './gen-ts.js';
import { defaultAbiDir, loadAbi } from './schema.js';

/** Every generated file, keyed by its path relative to the project root. */
export function generateAll(abiDir: string = defaultAbiDir()): Map<string, string> {
  const model = loadAbi(abiDir);
  const files = new Map<string, string>();
  for (const f of model.files) {
    files.set(path.join('guest-kit/include', f.cHeader), generateCHeader(f));
    files.set(`src/abi/generated/${tsModuleName(f)}.ts`, generateTsModule(f));
  }
  files.set('guest-kit/include/paravane/abi.h', generateUmbrella(model));
  files.set('src/abi/generated/hypercalls.ts', generateTsHypercalls(model));
  files.set('src/abi/generated/index.ts', generateTsIndex(model));
  files.set('docs/abi.md', generateDocs(model));
  files.set('test/abi/generated/layout-probe.c', generateLayoutProbe(model));
  files.set('test/abi/generated/layout-roundtrip.c', generateRoundtripProgram(model));
  files.set('test/abi/generated/layout-leaves.json', JSON.stringify(leafCases(model)) + '\n');
  return files;
}

/** Generated files that differ from (or are missing in) the tree, and stale extra files. */
export function staleFiles(root: string, files: Map<string, string>): string[] {
  const stale: string[] = [];
  for (const [rel, text] of files) {
    const p = path.join(root, rel);
    if (!fs.existsSync(p) || fs.readFileSync(p, 'utf8') !== text) stale.push(rel);
  }
  for (const dir of ['src/abi/generated', 'test/abi/generated']) {
    const abs = path.join(root, dir);
    if (!fs.existsSync(abs)) continue;
    for (const name of fs.readdirSync(abs)) {
      const rel = path.join(dir, name);
      if (!files.has(rel)) stale.push(rel + ' (no longer generated)');
    }
  }
  return stale;
}

function main(): void {
  const abiDir = defaultAbiDir();
  const root = path.dirname(abiDir);
  const files = generateAll(abiDir);
  if (process.argv.includes('--check')) {
    const stale = staleFiles(root, files);
    if (stale.length) {
      console.error('stale generated files (run `npm run abi`):\n  ' + stale.join('\n  '));
      process.exit(1);
    }
    console.log(`${files.size} generated files are up to date`);
    return;
  }
  for (const dir of ['src/abi/generated', 'test/abi/generated']) fs.rmSync(path.join(root, dir), { recursive: true, force: true });
  for (const [rel, text] of files) {
    const p = path.join(root, rel);
    fs.mkdirSync(path.dirname(p), { recursive: true });
    fs.writeFileSync(p, text);
  }
  console.log(`wrote ${files.size} files from ${path.relative(root, abiDir)}/`);
}

if (import.meta.url === `file://${process.argv[1]}`) main();
