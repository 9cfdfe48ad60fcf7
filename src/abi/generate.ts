// `npm run abi`: regenerates every file derived from abi/*.proto (C headers,
// TypeScript accessors, docs/abi.md, layout-test probes). With --check it
// writes nothing and exits 1 if any committed file is stale. A schema it
// refuses is one line naming the file and status 2; only a bug has a trace.

import * as fs from 'node:fs';
import * as path from 'node:path';
import { generateCHeader, generateUmbrella } from './gen-c.js';
import { generateDocs } from './gen-docs.js';
import { generateLayoutProbe, generateRoundtripProgram, leafCases } from './gen-probes.js';
import { generateTsHypercalls, generateTsIndex, generateTsModule, tsModuleName } from './gen-ts.js';
import { AbiSchemaError, defaultAbiDir, loadAbi } from './schema.js';

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

/** A refused schema as one line: `abi/xen.proto: ...`, the file shown relative to `cwd`. */
export function formatSchemaError(e: AbiSchemaError, abiDir: string, cwd: string = process.cwd()): string {
  const rel = path.relative(cwd, abiDir);
  const dir = rel === '' ? '.' : rel.startsWith('..') ? abiDir : rel;
  if (e.file === undefined) return `${dir}: ${e.message}`;
  const message = e.message.startsWith(`${e.file}: `) ? e.message.slice(e.file.length + 2) : e.message;
  return `${path.join(dir, e.file)}: ${message}`;
}

/** Bad arguments to the generator. */
class GeneratorUsageError extends Error {}

function parseArgs(argv: string[]): { check: boolean; abiDir: string } {
  let check = false;
  let abiDir: string | undefined;
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]!;
    if (a === '--check') check = true;
    else if (a === '--abi-dir') {
      abiDir = argv[++i];
      if (abiDir === undefined) throw new GeneratorUsageError('--abi-dir needs a directory');
    } else throw new GeneratorUsageError(`unknown argument "${a}" (usage: generate [--check] [--abi-dir DIR])`);
  }
  if (abiDir === undefined) return { check, abiDir: defaultAbiDir() };
  abiDir = path.resolve(abiDir);
  if (!fs.existsSync(path.join(abiDir, 'options.proto'))) throw new GeneratorUsageError(`${abiDir} holds no options.proto: not a schema directory`);
  return { check, abiDir };
}

export interface GeneratorIo {
  out: (s: string) => void;
  err: (s: string) => void;
  /** Default: generateAll. */
  generate?: (abiDir: string) => Map<string, string>;
}

/**
 * The generator's command line (`--check`, `--abi-dir DIR`: the schemas,
 * whose parent directory receives the output); returns the exit status.
 * Refused schemas and bad arguments are one line and status 2; anything
 * else thrown is a bug, and propagates with its stack.
 */
export function runGenerator(argv: string[], io: GeneratorIo): number {
  let abiDir: string | undefined;
  try {
    const args = parseArgs(argv);
    abiDir = args.abiDir;
    const root = path.dirname(abiDir);
    const files = (io.generate ?? generateAll)(abiDir);
    if (args.check) {
      const stale = staleFiles(root, files);
      if (stale.length) {
        io.err('stale generated files (run `npm run abi`):\n  ' + stale.join('\n  ') + '\n');
        return 1;
      }
      io.out(`${files.size} generated files are up to date\n`);
      return 0;
    }
    for (const dir of ['src/abi/generated', 'test/abi/generated']) fs.rmSync(path.join(root, dir), { recursive: true, force: true });
    for (const [rel, text] of files) {
      const p = path.join(root, rel);
      fs.mkdirSync(path.dirname(p), { recursive: true });
      fs.writeFileSync(p, text);
    }
    io.out(`wrote ${files.size} files from ${path.relative(root, abiDir)}/\n`);
    return 0;
  } catch (e) {
    if (e instanceof GeneratorUsageError) {
      io.err(`generate: ${e.message}\n`);
      return 2;
    }
    if (e instanceof AbiSchemaError) {
      io.err(formatSchemaError(e, abiDir ?? defaultAbiDir()) + '\n');
      return 2;
    }
    throw e;
  }
}

if (import.meta.url === `file://${process.argv[1]}`) {
  process.exitCode = runGenerator(process.argv.slice(2), { out: (s) => process.stdout.write(s), err: (s) => process.stderr.write(s) });
}
