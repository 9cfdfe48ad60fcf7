// `paravane run` exit statuses and messages: 0 on poweroff, 1 on a crash or
// timeout (reason on stderr), 2 on bad input (a one-line message, never a
// stack trace) for every kernel of the malformed corpus and for bad flags.

import { beforeAll, describe, expect, it } from 'vitest';
import { spawn } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { HAVE_KVM } from '../engine/kvm-gate.js';
import { malformedCorpus } from '../hv/malformed.js';

const ROOT = path.resolve(import.meta.dirname, '../..');
const BIN = path.join(ROOT, 'bin/paravane.js');
const ELF = path.join(ROOT, 'test/guests/build/elf');

function paravane(...args: string[]): Promise<{ code: number | null; out: string; err: string }> {
  return new Promise((resolve, reject) => {
    const p = spawn(process.execPath, [BIN, ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '', err = '';
    p.stdout.on('data', (b: Buffer) => { out += b.toString(); });
    p.stderr.on('data', (b: Buffer) => { err += b.toString(); });
    p.on('error', reject);
    p.on('close', (code) => resolve({ code, out, err }));
  });
}

function expectOneLine(err: string, pattern: RegExp): void {
  expect(err).toMatch(/^paravane: [^\n]+\n$/);
  expect(err).toMatch(pattern);
  expect(err).not.toMatch(/\n\s+at /); // no stack trace
}

describe('paravane run: bad input gets status 2 and one line', () => {
  let dir: string;
  beforeAll(() => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'paravane-corpus-'));
  });

  it('refuses every kernel of the malformed corpus', async () => {
    const good = fs.readFileSync(path.join(ELF, 'minimal.elf'));
    const corpus = malformedCorpus(good);
    const results = await Promise.all(corpus.map(async (m) => {
      const file = path.join(dir, `${m.name}.elf`);
      fs.writeFileSync(file, m.image);
      return { m, file, r: await paravane('run', file) };
    }));
    for (const { m, file, r } of results) {
      expect(r.code, m.name).toBe(2);
      expect(r.out, m.name).toBe('');
      expectOneLine(r.err, m.message);
      expect(r.err).toContain(file);
    }
  });

  it('refuses missing files, bad flags and impossible sizes', async () => {
    const minimal = path.join(ELF, 'minimal.elf');
    const cases: Array<[string[], RegExp]> = [
      [['run', path.join(dir, 'absent.elf')], /cannot read kernel .*absent\.elf: no such file/],
      [['run', dir], /cannot read kernel .*: it is a directory/],
      [['run', minimal, '--initrd', path.join(dir, 'absent.img')], /cannot read initrd/],
      [['run', minimal, '--memory', 'lots'], /--memory must be a whole number of MiB/],
      [['run', minimal, '--memory', '0'], /--memory must be a whole number of MiB, in decimal digits, from 1 to \d+/],
      [['run', minimal, '--memory', '1'], /1 MiB is too small for this kernel/],
      [['run', minimal, '--timeout', '-1'], /--timeout must be a number of seconds, .* from 0\.001 to 1000000/],
      [['run', minimal, '--cmdline', 'x'.repeat(2000)], /--cmdline is 2000 bytes in UTF-8; at most 1023/],
      [['run', minimal, '--frobnicate'], /unknown option '--frobnicate'/],
      [['run'], /no kernel given/],
    ];
    const results = await Promise.all(cases.map(([args]) => paravane(...args)));
    results.forEach((r, i) => {
      expect(r.code, cases[i]![0].join(' ')).toBe(2);
      expectOneLine(r.err, cases[i]![1]);
    });
  });
});

describe.skipIf(!HAVE_KVM)('paravane run: guests that end badly get status 1', () => {
  it('reports a crash with its reason', async () => {
    const r = await paravane('run', path.join(ELF, 'crash.elf'), '--stats');
    expect(r.code).toBe(1);
    expect(r.out).toBe('about to fault\n');
    expect(r.err).toMatch(/^paravane: domain 1 \(crash\) crashed: unhandled #UD invalid opcode \(vector 6\) at rip 0x[0-9a-f]+; no trap handler is registered$/m);
    // --stats: hypercalls by name and exits by kind.
    expect(r.err).toMatch(/^ {4}console_io +1$/m);
    expect(r.err).toMatch(/^ {4}hypercall \(page\) +1$/m);
    expect(r.err).toMatch(/^ {4}exception +1$/m);
  });

  it('kills the guest on SIGINT and says so', async () => {
    const p = spawn(process.execPath, [BIN, 'run', path.join(ELF, 'minimal.elf')], { stdio: ['ignore', 'pipe', 'pipe'] });
    let err = '';
    p.stderr.on('data', (b: Buffer) => { err += b.toString(); });
    setTimeout(() => p.kill('SIGINT'), 400);
    const code = await new Promise<number | null>((resolve) => p.on('close', resolve));
    expect(code).toBe(1);
    expect(err).toBe('paravane: domain 1 (minimal) killed: interrupted by SIGINT\n');
  });

  it('kills a guest that runs past --timeout', async () => {
    const r = await paravane('run', path.join(ELF, 'minimal.elf'), '--timeout', '0.2');
    expect(r.code).toBe(1);
    expect(r.err).toBe('paravane: domain 1 (minimal) killed: timed out after 0.2 s\n');
  });

  it("runs the hello example (the README's main job): its output on stdout, status 0", async () => {
    const r = await paravane('run', path.join(ROOT, 'build/guests/hello.elf'), '--memory', '16', '--cmdline', 'from the test', '--stats');
    expect(r.code).toBe(0);
    expect(r.out).toMatch(/^Hello from paravane!\nstart_info: magic=xen-3\.0-x86_64 nr_pages=4096 cmdline="from the test"\nxen_version: 4\.17-paravane\n/);
    expect(r.err).toMatch(/^ {4}console_io +\d+$/m);
    expect(r.err).toMatch(/^ {4}xen_version +2$/m);
    expect(r.err).toMatch(/^ {4}sched_op +1$/m);
    expect(r.err).not.toMatch(/crashed|killed/);
  });

  it('exits 1 with the reason when the guest shuts down other than by poweroff', async () => {
    const r = await paravane('run', path.join(ELF, 'reboot.elf'));
    expect(r.code).toBe(1);
    expect(r.err).toBe('paravane: domain 1 (reboot) shut down with reason reboot\n');
  });

  it('runs several kernels side by side, each line prefixed with its domain, and names them uniquely', async () => {
    const hello = path.join(ROOT, 'build/guests/hello.elf');
    const r = await paravane('run', hello, hello, '--memory', '16', '--cmdline', 'me=${domid:hello} peer=${domid:hello-2}');
    expect(r.code).toBe(0);
    expect(r.out).toContain('[hello] Hello from paravane!\n');
    expect(r.out).toContain('[hello-2] Hello from paravane!\n');
    expect(r.out).toContain('[hello] start_info: magic=xen-3.0-x86_64 nr_pages=4096 cmdline="me=1 peer=2"\n');
    expect(r.out).toContain('[hello-2] start_info: magic=xen-3.0-x86_64 nr_pages=4096 cmdline="me=1 peer=2"\n');
    expect(r.out.split('\n').filter((l) => l && !/^\[hello(-2)?\] /.test(l))).toEqual([]);
  });

  it('takes the domains from a config file, with per-domain options, and reports each end', async () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'paravane-config-'));
    const config = path.join(dir, 'doms.json');
    fs.writeFileSync(config, JSON.stringify({ domains: [
      { kernel: path.join(ROOT, 'build/guests/hello.elf'), name: 'greeter', memory: 8, weight: 512, cmdline: 'peer=${domid:crasher}' },
      { kernel: path.join(ELF, 'crash.elf'), name: 'crasher', memory: 8, cap: 50 },
    ] }));
    const r = await paravane('run', '--config', config);
    expect(r.code).toBe(1);
    expect(r.out).toContain('[greeter] start_info: magic=xen-3.0-x86_64 nr_pages=2048 cmdline="peer=2"\n');
    expect(r.err).toMatch(/^paravane: domain 2 \(crasher\) crashed: /m);
    expect(r.err).not.toMatch(/greeter/);
    const bad: Array<[unknown, RegExp]> = [
      [{}, /needs a non-empty "domains" list/],
      [{ domains: [{ name: 'x' }] }, /domains\[0\]: "kernel" \(a path\) is required/],
      [{ domains: [{ kernel: 'a.elf', colour: 'red' }] }, /unknown key "colour"/],
      [{ domains: [{ kernel: path.join(ELF, 'minimal.elf'), weight: 0 }] }, /domains\[0\]: weight must be a whole number, in decimal digits, from 1 to 65535, not 0/],
      [{ domains: [{ kernel: path.join(ELF, 'minimal.elf'), cmdline: '${domid:nobody}' }] }, /names domain "nobody", which is not being run/],
    ];
    for (const [doc, msg] of bad) {
      fs.writeFileSync(config, JSON.stringify(doc));
      const b = await paravane('run', '--config', config);
      expect(b.code, JSON.stringify(doc)).toBe(2);
      expectOneLine(b.err, msg);
    }
    fs.writeFileSync(config, '{ not json');
    expectOneLine((await paravane('run', '--config', config)).err, /not valid JSON/);
    expectOneLine((await paravane('run', '--config', config, path.join(ELF, 'minimal.elf'))).err, /either on the command line or in --config/);
    expectOneLine((await paravane('run')).err, /no kernel given/);
  });

  it('passes stdin to the guest\'s console ring', async () => {
    const p = spawn(process.execPath, [BIN, 'run', path.join(ELF, 'ring.elf')], { stdio: ['pipe', 'pipe', 'pipe'] });
    let out = '';
    p.stdout.on('data', (b: Buffer) => { out += b.toString(); });
    p.stdin.end('typed on stdin\n');
    const code = await new Promise<number | null>((resolve) => p.on('close', resolve));
    expect(code).toBe(0);
    expect(out).toBe('hello from the ring\ngot: typed on stdin\n');
  });
});

describe.skipIf(!HAVE_KVM)('paravane run: inputs that used to break, with a real guest', () => {
  // Sizes past the 32-bit wrap, on hosts with room for them.
  const sizes = [[2048, 524288], [4097, 1048832]].filter(([mib]) => mib! * 1.1 * (1 << 20) < os.totalmem());
  it.each(sizes)('gives a %i MiB domain all its memory (nr_pages %i)', async (mib, pages) => {
    const r = await paravane('run', path.join(ROOT, 'build/guests/hello.elf'), '--memory', String(mib));
    expect(r.code, r.err).toBe(0);
    expect(r.out).toContain(`start_info: magic=xen-3.0-x86_64 nr_pages=${pages} cmdline=""\n`);
  });

  it('passes an initrd whose length is not a multiple of the page size', async () => {
    const initrd = path.join(fs.mkdtempSync(path.join(os.tmpdir(), 'paravane-initrd-')), 'odd.img');
    fs.writeFileSync(initrd, new Uint8Array(10000).fill(7));
    const r = await paravane('run', path.join(ROOT, 'build/guests/hello.elf'), '--initrd', initrd);
    expect(r.code, r.err).toBe(0);
    expect(r.out).toMatch(/^module: start=0xffffffff8[0-9a-f]+ len=10000$/m);
  });

  it('passes a command line to the guest as UTF-8', async () => {
    const r = await paravane('run', path.join(ROOT, 'build/guests/hello.elf'), '--cmdline', 'héllo ☃');
    expect(r.code, r.err).toBe(0);
    expect(r.out).toContain('cmdline="héllo ☃"\n');
  });
});
