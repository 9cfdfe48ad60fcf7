// `paravane run` checks its inputs before it opens the engine, on any host:
// config files of any JSON shape, files that are not regular or too large,
// one number syntax, and messages naming the flag or the config file and
// entry.

import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { execFileSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { UsageError } from '../../src/cli/usage-error.js';
import { parseSeconds, parseWholeNumber } from '../../src/cli/numbers.js';
import { readInputFile } from '../../src/cli/input-files.js';
import { ELF, expectOneLine, paravane } from './spawn.js';

const MIB = 1 << 20;
const GIB = 1 << 30;
const MINIMAL = path.join(ELF, 'minimal.elf');
/** Past input checking: the engine is what fails (status 1), on any host. */
const NO_KVM = ['--kvm', '/nonexistent/kvm'];

let dir: string;
beforeAll(() => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'paravane-input-'));
});
afterAll(() => {
  fs.rmSync(dir, { recursive: true, force: true });
});
const file = (name: string, content: string | Uint8Array): string => {
  const f = path.join(dir, name);
  fs.writeFileSync(f, content);
  return f;
};
/** A file of `bytes` that takes no disk space. */
const sparse = (name: string, bytes: number): string => {
  const f = path.join(dir, name);
  fs.writeFileSync(f, '');
  fs.truncateSync(f, bytes);
  return f;
};
const usage = (f: () => unknown): string => {
  try {
    f();
  } catch (e) {
    expect(e).toBeInstanceOf(UsageError);
    return (e as Error).message;
  }
  throw new Error('no UsageError');
};

describe('initrds', () => {
  it('refuses an initrd larger than its domain\'s memory without reading it', async () => {
    const huge = sparse('huge.img', 2 * GIB);
    const r = await paravane('run', MINIMAL, '--initrd', huge, ...NO_KVM);
    expect(r.code).toBe(2);
    expectOneLine(r.err, /initrd .*huge\.img is 2048 MiB; it must fit in its domain's memory \(32 MiB\)/);
  });
});

describe('config files', () => {
  it.each([
    ['null', 'null'], ['a number', '42'], ['a string', '"domains"'], ['an array', '[]'], ['a boolean', 'true'],
  ])('refuses a config file holding %s with one line naming the file', async (kind, json) => {
    const config = file(`shape-${kind.replace(' ', '-')}.json`, json);
    const r = await paravane('run', '--config', config);
    expect(r.code).toBe(2);
    expectOneLine(r.err, new RegExp(`${config.replace(/[.]/g, '\\.')}: must hold a JSON object \\{"domains": \\[\\.\\.\\.\\]\\}, not ${kind}$`, 'm'));
  });

  it('names the file and the entry in every error about an entry', async () => {
    const config = file('entries.json', '');
    const cases: Array<[unknown, RegExp]> = [
      [{ domains: [{ kernel: MINIMAL }, { kernel: MINIMAL, memory: '0x20' }] }, /entries\.json: domains\[1\]: memory must be a whole number of MiB, in decimal digits, from 1 to \d+ \(this host's memory\), not "0x20"/],
      [{ domains: [{ kernel: MINIMAL, memory: 1.5 }] }, /entries\.json: domains\[0\]: memory must be a whole number of MiB/],
      [{ domains: [{ kernel: MINIMAL, weight: '0x10' }] }, /entries\.json: domains\[0\]: weight must be a whole number, in decimal digits, from 1 to 65535, not "0x10"/],
      [{ domains: [{ kernel: MINIMAL, cap: 101 }] }, /entries\.json: domains\[0\]: cap must be a whole number of percent, in decimal digits, from 0 to 100, not 101/],
      [{ domains: [{ kernel: MINIMAL, cmdline: 7 }] }, /entries\.json: domains\[0\]: cmdline must be a string, not a number/],
      [{ domains: [null] }, /entries\.json: domains\[0\] must be an object, not null/],
      [{ domains: [{ kernel: MINIMAL }], extra: 1 }, /entries\.json: unknown key "extra"/],
    ];
    for (const [doc, msg] of cases) {
      fs.writeFileSync(config, JSON.stringify(doc));
      const r = await paravane('run', '--config', config, ...NO_KVM);
      expect(r.code, JSON.stringify(doc)).toBe(2);
      expectOneLine(r.err, msg);
    }
  });

  it('refuses a config file larger than 1 MiB without reading it', async () => {
    const r = await paravane('run', '--config', sparse('huge.json', 2 * MIB));
    expect(r.code).toBe(2);
    expectOneLine(r.err, /config file .*huge\.json is 2 MiB; a config file may be at most 1 MiB/);
  });
});

describe('files that are not regular', () => {
  it.each([
    [['run', '/dev/zero'], /cannot read kernel \/dev\/zero: it is a character device, not a regular file/],
    [['run', MINIMAL, '--initrd', '/dev/zero'], /cannot read initrd \/dev\/zero: it is a character device, not a regular file/],
    [['run', '--config', '/dev/zero'], /cannot read config file \/dev\/zero: it is a character device, not a regular file/],
  ])('refuses %j with one line instead of reading forever', async (args, msg) => {
    const r = await paravane(...args);
    expect(r.code).toBe(2);
    expectOneLine(r.err, msg);
  });

  it('refuses a FIFO without waiting for a writer', () => {
    const fifo = path.join(dir, 'fifo');
    execFileSync('mkfifo', [fifo]); // Node's fs cannot make one
    expect(usage(() => readInputFile('config file', fifo, { bytes: 100, why: '' }))).toMatch(/it is a FIFO, not a regular file/);
  });

  it('reads at most the cap and one byte more of a file that says it is empty', () => {
    // /proc files report size 0 and may be longer: the cap still holds.
    expect(usage(() => readInputFile('config file', '/proc/self/maps', { bytes: 10, why: 'at most 10 bytes' })))
      .toMatch(/^config file \/proc\/self\/maps is larger than 10 bytes; at most 10 bytes$/);
  });

  it('refuses a kernel file larger than the loader takes without reading it', async () => {
    const r = await paravane('run', sparse('huge.elf', 2 * GIB));
    expect(r.code).toBe(2);
    expectOneLine(r.err, /kernel .*huge\.elf is 2048 MiB; a kernel file may be at most 1024 MiB/);
  });
});

describe('numbers', () => {
  const rule = { unit: '', min: 1, max: 65535 };
  it('takes decimal digits, from a flag or as a whole JSON number', () => {
    expect(parseWholeNumber('0100', '--weight', rule)).toBe(100);
    expect(parseWholeNumber(512, 'cfg: weight', rule)).toBe(512);
  });

  it.each(['0x10', '1e2', '+5', '-5', ' 5', '5 ', '', '1.0', 'Infinity'])('refuses %j on every numeric flag, saying decimal digits are wanted', (v) => {
    expect(usage(() => parseWholeNumber(v, '--weight', rule))).toBe(`--weight must be a whole number, in decimal digits, from 1 to 65535, not ${JSON.stringify(v)}`);
  });

  it('gives the range of --timeout, and takes a fraction there', () => {
    expect(parseSeconds('0.5', '--timeout')).toBe(0.5);
    expect(usage(() => parseSeconds('1000001', '--timeout')))
      .toBe('--timeout must be a number of seconds, in decimal digits (e.g. 30 or 0.5), from 0.001 to 1000000, not "1000001"');
  });

  it('refuses hex on --weight and --cap as on --memory, from the command line', async () => {
    const cases: Array<[string[], RegExp]> = [
      [['--weight', '0x10'], /--weight must be a whole number, in decimal digits, from 1 to 65535, not "0x10"/],
      [['--cap', '0x10'], /--cap must be a whole number of percent, in decimal digits, from 0 to 100, not "0x10"/],
      [['--memory', '0x20'], /--memory must be a whole number of MiB, in decimal digits, from 1 to/],
      [['--timeout', '1000001'], /--timeout must be a number of seconds, in decimal digits \(e\.g\. 30 or 0\.5\), from 0\.001 to 1000000, not "1000001"/],
    ];
    const runs = await Promise.all(cases.map(([flags]) => paravane('run', MINIMAL, ...flags, ...NO_KVM)));
    runs.forEach((r, i) => {
      expect(r.code, cases[i]![0].join(' ')).toBe(2);
      expectOneLine(r.err, cases[i]![1]);
    });
  });
});
