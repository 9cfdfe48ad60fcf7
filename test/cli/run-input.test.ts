// `paravane run` checks every input before it opens the engine, on any host:
// memory past 2 GiB up to the host's, initrds of any length, UTF-8 command
// lines within Xen's limit, config files of any shape, files not regular or
// too large, one number syntax, messages naming the flag or file and entry.

import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { execFileSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { gzipSync } from 'node:zlib';
import { planRun, machineBytesForRun, checkCmdline, MAX_CMDLINE_BYTES } from '../../src/cli/run-plan.js';
import { UsageError } from '../../src/cli/usage-error.js';
import { parseSeconds, parseWholeNumber } from '../../src/cli/numbers.js';
import { readInputFile } from '../../src/cli/input-files.js';
import { createPlainMemory } from '../../src/engine/plain-memory.js';
import { FrameTable } from '../../src/hv/mm/frames.js';
import { XenSpace } from '../../src/hv/mm/xen-space.js';
import { PageTypes } from '../../src/hv/mm/page-types.js';
import { buildDomain } from '../../src/hv/domain/builder.js';
import { parseGuestKernel } from '../../src/hv/domain/elf.js';
import { GuestMemory } from '../../src/hv/mm/guest-access.js';
import { StartInfo } from '../../src/abi/generated/xen.js';
import { ELF, GUESTS, expectOneLine, paravane } from './spawn.js';

const MIB = 1 << 20;
const GIB = 1 << 30;
const MINIMAL = path.join(ELF, 'minimal.elf');
const HELLO = path.join(GUESTS, 'hello.elf');
/** A host with room for everything the tests ask of planRun. */
const BIG_HOST = { memoryBytes: 64 * GIB };
/** This host's memory in MiB: the largest --memory paravane takes here. */
const HOST_MIB = Math.floor(os.totalmem() / MIB);
/** Past input checking: the engine is what fails (status 1), on any host. */
// --engine kvm: an input that gets this far reaches the engine, which is not there (the test stops there).
const NO_KVM = ['--engine', 'kvm', '--kvm', '/nonexistent/kvm'];

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

describe('memory sizes', () => {
  it.each([2048, 4095, 4096, 4097, 8192, 16384])('gives a %i MiB domain exactly that many bytes (no 32-bit wrap)', (mib) => {
    const plan = planRun([MINIMAL], { memory: String(mib) }, BIG_HOST);
    expect(plan.domains[0]!.memoryBytes).toBe(mib * MIB);
    expect(plan.machineBytes).toBeGreaterThan(mib * MIB);
  });

  it('takes memory up to the host\'s and names that limit beyond it', () => {
    expect(planRun([MINIMAL], { memory: '4096' }, { memoryBytes: 4200 * MIB }).domains[0]!.memoryBytes).toBe(4096 * MIB);
    expect(usage(() => planRun([MINIMAL], { memory: '4097' }, { memoryBytes: 4096 * MIB })))
      .toBe('--memory must be a whole number of MiB, in decimal digits, from 1 to 4096 (this host\'s memory), not "4097"');
  });

  it('refuses domains whose machine memory together exceeds the host\'s', () => {
    expect(usage(() => planRun([MINIMAL, MINIMAL], { memory: '3000' }, { memoryBytes: 4096 * MIB })))
      .toMatch(/^the domains need \d+ MiB of machine memory in all \(with the hypervisor's share\); this host has 4096 MiB$/);
  });

  it('accepts sizes past 2 GiB on the command line and in a config file, up to the engine', async () => {
    const sizes = [2048, 4096, 4097].filter((m) => m < HOST_MIB * 0.9);
    const config = file('big.json', JSON.stringify({ domains: sizes.map((m) => ({ kernel: MINIMAL, memory: m })).slice(0, 1) }));
    const runs = await Promise.all([
      ...sizes.map((m) => paravane('run', MINIMAL, '--memory', String(m), ...NO_KVM)),
      ...(sizes.length ? [paravane('run', '--config', config, ...NO_KVM)] : []),
    ]);
    for (const r of runs) {
      expect(r.code, r.err).toBe(1);
      expectOneLine(r.err, /\/nonexistent\/kvm .*see `paravane doctor`/);
    }
  });

  it('refuses more memory than this host has, saying how much it has', async () => {
    const r = await paravane('run', MINIMAL, '--memory', String(HOST_MIB + 1));
    expect(r.code).toBe(2);
    expectOneLine(r.err, new RegExp(`--memory must be a whole number of MiB, in decimal digits, from 1 to ${HOST_MIB} \\(this host's memory\\), not "${HOST_MIB + 1}"`));
  });

  it('says a memory too small for the kernel is too small, before the engine is opened', async () => {
    const r = await paravane('run', MINIMAL, '--memory', '1', ...NO_KVM);
    expect(r.code).toBe(2);
    expectOneLine(r.err, /minimal\.elf: 1 MiB is too small for this kernel: its boot layout needs \d+ MiB/);
  });
});

describe('bzImage kernels', () => {
  /** A bzImage around `stream` (its payload: the stream, then the size it declares). */
  const bz = (stream: Uint8Array, size: number): Uint8Array => {
    const out = new Uint8Array(4 * 512 + stream.length + 4);
    const v = new DataView(out.buffer);
    out[0x1f1] = 3;
    v.setUint32(0x202, 0x53726448, true);
    v.setUint16(0x206, 0x20f, true);
    v.setUint32(0x248, 0, true);
    v.setUint32(0x24c, stream.length + 4, true);
    out.set(stream, 4 * 512);
    v.setUint32(4 * 512 + stream.length, size, true);
    return out;
  };

  it('runs a bzImage as the ELF it holds, up to the engine, and names the file when its payload is bad', async () => {
    const elf = fs.readFileSync(MINIMAL);
    const good = file('vmlinuz-good', bz(gzipSync(elf), elf.length));
    const bad = file('vmlinuz-bad', bz(gzipSync(elf), elf.length + 5));
    const [ok, refused] = await Promise.all([paravane('run', good, ...NO_KVM), paravane('run', bad, ...NO_KVM)]);
    expect(ok.code, ok.err).toBe(1);
    expectOneLine(ok.err, /\/nonexistent\/kvm .*see `paravane doctor`/);
    expect(refused.code).toBe(2);
    expectOneLine(refused.err, /vmlinuz-bad: the bzImage's gzip payload decompressed to \d+ bytes, not the \d+ it declares/);
  });
});

describe('initrds', () => {
  it('counts an initrd of any length in whole pages of machine memory', () => {
    const initrd = file('odd.img', new Uint8Array(10000).fill(7));
    const plan = planRun([MINIMAL], { memory: '32', initrd }, BIG_HOST);
    expect(plan.domains[0]!.initrd?.length).toBe(10000);
    expect(plan.machineBytes % 4096).toBe(0);
    expect(machineBytesForRun([{ memoryBytes: 32 * MIB, initrdBytes: 10000 }]))
      .toBe(machineBytesForRun([{ memoryBytes: 32 * MIB }]) + 3 * 4096);
  });

  it('refuses an initrd larger than its domain\'s memory without reading it', async () => {
    const huge = sparse('huge.img', 2 * GIB);
    const r = await paravane('run', MINIMAL, '--initrd', huge, ...NO_KVM);
    expect(r.code).toBe(2);
    expectOneLine(r.err, /initrd .*huge\.img is 2048 MiB; it must fit in its domain's memory \(32 MiB\)/);
  });

  it('refuses an initrd that fits the file cap but not the boot layout', () => {
    const big = sparse('big.img', 31 * MIB);
    expect(usage(() => planRun([MINIMAL], { memory: '32', initrd: big }, BIG_HOST))).toMatch(/minimal\.elf: 32 MiB is too small for this kernel/);
  });
});

describe('command lines', () => {
  it('counts the limit in UTF-8 bytes: 1023, Xen\'s MAX_GUEST_CMDLINE less the NUL', () => {
    expect(MAX_CMDLINE_BYTES).toBe(1023);
    expect(() => checkCmdline('☃'.repeat(341), '--cmdline')).not.toThrow(); // 1023 bytes
    expect(usage(() => checkCmdline('☃'.repeat(342), '--cmdline')))
      .toBe("--cmdline is 1026 bytes in UTF-8; at most 1023 fit in start_info (Xen's MAX_GUEST_CMDLINE, 1024 with its NUL)");
  });

  it('refuses a NUL and a lone surrogate, which cannot be passed as a C string in UTF-8', () => {
    expect(usage(() => checkCmdline('a\0b', '--cmdline'))).toMatch(/NUL/);
    expect(usage(() => checkCmdline('a\ud800b', 'cfg.json: domains[0]: cmdline'))).toMatch(/^cfg\.json: domains\[0\]: cmdline is not valid Unicode/);
  });

  it('refuses a command line too long in UTF-8 with one line, before the engine is opened', async () => {
    const r = await paravane('run', MINIMAL, '--cmdline', '☃'.repeat(342), ...NO_KVM);
    expect(r.code).toBe(2);
    expectOneLine(r.err, /--cmdline is 1026 bytes in UTF-8; at most 1023/);
  });

  it('accepts a non-Latin-1 command line (no RangeError), up to the engine', async () => {
    const r = await paravane('run', MINIMAL, '--cmdline', 'héllo ☃', ...NO_KVM);
    expect(r.code).toBe(1);
    expectOneLine(r.err, /see `paravane doctor`/);
  });

  it('lays the command line into start_info as UTF-8 bytes', () => {
    const kernelFile = fs.readFileSync(HELLO);
    const ft = new FrameTable(createPlainMemory(64 * MIB));
    const xen = new XenSpace(ft, true);
    const pd = xen.buildPerDomain(1);
    const pt = new PageTypes(ft, (mfn) => xen.fillReservedL4(mfn, pd));
    const { layout } = buildDomain(pt, 1, parseGuestKernel(kernelFile), kernelFile, { memoryBytes: 16 * MIB, cmdline: 'héllo ☃' });
    const g = new GuestMemory(ft, BigInt(layout.l4Mfn) << 12n);
    const si = g.read(layout.startInfoVa, StartInfo.SIZE);
    const at = StartInfo.OFFSETS.cmd_line;
    const want = Buffer.from('héllo ☃\0', 'utf8');
    expect(Buffer.from(si.subarray(at, at + want.length))).toEqual(want);
  });
});

describe('vCPUs', () => {
  it('gives each domain the vCPUs of --vcpus, or of its config entry', () => {
    expect(planRun([MINIMAL], { memory: '32' }, BIG_HOST).domains[0]!.spec.vcpus).toBeUndefined(); // the hypervisor's default, 1
    expect(planRun([MINIMAL, MINIMAL], { memory: '32', vcpus: '4' }, BIG_HOST).domains.map((d) => d.spec.vcpus)).toEqual([4, 4]);
    const config = file('vcpus.json', JSON.stringify({ domains: [{ kernel: MINIMAL, vcpus: 2 }, { kernel: MINIMAL }] }));
    expect(planRun([], { memory: '32', vcpus: '3', config }, BIG_HOST).domains.map((d) => d.spec.vcpus)).toEqual([2, 3]);
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
      [{ domains: [{ kernel: MINIMAL, vcpus: 17 }] }, /entries\.json: domains\[0\]: vcpus must be a whole number, in decimal digits, from 1 to 16, not 17/],
      [{ domains: [{ kernel: MINIMAL, memory: 1 }] }, /entries\.json: domains\[0\]: 1 MiB is too small for this kernel/],
      [{ domains: [{ kernel: MINIMAL, cmdline: 7 }] }, /entries\.json: domains\[0\]: cmdline must be a string, not a number/],
      [{ domains: [{ kernel: MINIMAL, cmdline: 'x'.repeat(1024) }] }, /entries\.json: domains\[0\]: cmdline is 1024 bytes in UTF-8/],
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

  it('refuses hex on --weight and --cap as on --memory, and vCPUs out of range, from the command line', async () => {
    const cases: Array<[string[], RegExp]> = [
      [['--weight', '0x10'], /--weight must be a whole number, in decimal digits, from 1 to 65535, not "0x10"/],
      [['--cap', '0x10'], /--cap must be a whole number of percent, in decimal digits, from 0 to 100, not "0x10"/],
      [['--vcpus', '0'], /--vcpus must be a whole number, in decimal digits, from 1 to 16, not "0"/],
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
