// `npm run abi` (dist/abi/generate.js): a schema it refuses is one line that
// names the file, `abi/t.proto: ...`, and status 2; bad arguments likewise;
// only a bug in the generator shows a stack trace.

import { beforeAll, describe, expect, it } from 'vitest';
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { formatSchemaError, runGenerator } from '../../src/abi/generate.js';
import { AbiSchemaError } from '../../src/abi/schema.js';
import { ROOT } from './spawn.js';

const GENERATE = path.join(ROOT, 'dist/abi/generate.js');
const HEADER = 'syntax = "proto2";\npackage t;\nimport "options.proto";\n';

let project: string;
beforeAll(() => {
  project = fs.mkdtempSync(path.join(os.tmpdir(), 'paravane-abi-'));
  fs.mkdirSync(path.join(project, 'abi'));
  fs.copyFileSync(path.join(ROOT, 'abi/options.proto'), path.join(project, 'abi/options.proto'));
});

/** Runs the generator (--check: it writes nothing) on a schema directory holding t.proto = `text`. */
function generate(text: string, ...args: string[]) {
  fs.writeFileSync(path.join(project, 'abi/t.proto'), text);
  const r = spawnSync(process.execPath, [GENERATE, '--check', '--abi-dir', 'abi', ...args], { cwd: project, encoding: 'utf8' });
  return { code: r.status, out: r.stdout, err: r.stderr };
}

describe('npm run abi', () => {
  it('refuses a declared offset C would not give with one line naming the file, status 2', () => {
    const r = generate(`${HEADER}option (paravane.c_header) = "t.h";\nmessage s {\n  option (paravane.size) = 16;\n` +
      '  optional uint32 a = 1 [(paravane.c_type) = "uint8_t", (paravane.offset) = 0];\n' +
      '  optional uint64 b = 2 [(paravane.c_type) = "uint64_t", (paravane.offset) = 4];\n}\n');
    expect(r).toEqual({ code: 2, out: '', err: 'abi/t.proto: t.s.b: declared offset 4 but the C layout gives 8\n' });
  });

  it('names the file once when the message already starts with it', () => {
    const r = generate(`${HEADER}message s { option (paravane.size) = 4; }\n`);
    expect(r).toEqual({ code: 2, out: '', err: 'abi/t.proto: missing option (paravane.c_header)\n' });
  });

  it('names the file that does not parse', () => {
    const r = generate(`${HEADER}option (paravane.c_header) = "t.h";\nmessage s {{\n`);
    expect(r.code).toBe(2);
    expect(r.err).toMatch(/^abi\/t\.proto: cannot parse the ABI schemas: [^\n]+\n$/);
  });

  it('refuses unknown arguments and a directory without schemas with one line, status 2', () => {
    const bogus = spawnSync(process.execPath, [GENERATE, '--bogus'], { encoding: 'utf8' });
    expect({ code: bogus.status, err: bogus.stderr }).toEqual({ code: 2, err: 'generate: unknown argument "--bogus" (usage: generate [--check] [--abi-dir DIR])\n' });
    const empty = spawnSync(process.execPath, [GENERATE, '--abi-dir', os.tmpdir()], { encoding: 'utf8' });
    expect(empty.status).toBe(2);
    expect(empty.stderr).toMatch(/^generate: .* holds no options\.proto: not a schema directory\n$/);
  });

  it('lets any other error through with its stack: that is a bug', () => {
    const bug = new TypeError('cannot read properties of undefined');
    expect(() => runGenerator(['--check'], { out: () => {}, err: () => {}, generate: () => { throw bug; } })).toThrow(bug);
  });

  it('shows the schema directory relative to where it runs, or whole when outside it', () => {
    const e = new AbiSchemaError('xen.s: recursive layout', 'xen.proto');
    expect(formatSchemaError(e, '/p/abi', '/p')).toBe('abi/xen.proto: xen.s: recursive layout');
    expect(formatSchemaError(e, '/p/abi', '/elsewhere')).toBe('/p/abi/xen.proto: xen.s: recursive layout');
    expect(formatSchemaError(new AbiSchemaError('hypercall number 70 is used by both a and b'), '/p/abi', '/p')).toBe('abi: hypercall number 70 is used by both a and b');
  });

  it('still checks the real schemas: the committed output is up to date', () => {
    const r = spawnSync(process.execPath, [GENERATE, '--check'], { cwd: ROOT, encoding: 'utf8' });
    expect({ code: r.status, err: r.stderr }).toEqual({ code: 0, err: '' });
  });
});
