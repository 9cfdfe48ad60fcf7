// `paravane run` exit statuses and messages: 2 and one line for bad input
// (the malformed corpus, bad flags), 1 without an engine; with real guests
// (KVM only): 0, 3 crash, 4 reboot, 6 timeout, 128+n signals, 129 parent
// gone, 141 stdout closed, each domain's end reported as it happens.

import { beforeAll, describe, expect, it } from 'vitest';
import { spawn } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { HAVE_KVM } from '../support/kvm-gate.js';
import { malformedCorpus } from '../support/malformed.js';
import { BIN, ELF, GUESTS, expectOneLine, paravane, start } from './spawn.js';

const MINIMAL = path.join(ELF, 'minimal.elf');
const HELLO = path.join(GUESTS, 'hello.elf');
/** Prints "hello from the ring", then waits for a line of host input: a guest that runs until stopped. */
const RING = path.join(ELF, 'ring.elf');

describe('paravane run: bad input gets status 2 and one line', () => {
  let dir: string;
  beforeAll(() => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'paravane-corpus-'));
  });

  it('refuses every kernel of the malformed corpus', async () => {
    const good = fs.readFileSync(MINIMAL);
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
    const cases: Array<[string[], RegExp]> = [
      [['run', path.join(dir, 'absent.elf')], /cannot read kernel .*absent\.elf: no such file/],
      [['run', dir], /cannot read kernel .*: it is a directory/],
      [['run', MINIMAL, '--initrd', path.join(dir, 'absent.img')], /cannot read initrd/],
      [['run', MINIMAL, '--memory', 'lots'], /--memory must be a whole number of MiB/],
      [['run', MINIMAL, '--memory', '0'], /--memory must be a whole number of MiB, in decimal digits, from 1 to \d+/],
      [['run', MINIMAL, '--memory', '1'], /1 MiB is too small for this kernel/],
      [['run', MINIMAL, '--timeout', '-1'], /--timeout must be a number of seconds, .* from 0\.001 to 1000000/],
      [['run', MINIMAL, '--cmdline', 'x'.repeat(2000)], /--cmdline is 2000 bytes in UTF-8; at most 1023/],
      [['run', MINIMAL, '--frobnicate'], /unknown option '--frobnicate'/],
      [['run', MINIMAL, '--log', path.join(dir, 'absent-dir', 'hv.log')], /--log .*absent-dir.*: ENOENT: no such file or directory/],
      [['run', MINIMAL, '--log', dir], /--log .*: EISDIR/],
      [['run'], /no kernel given/],
    ];
    const results = await Promise.all(cases.map(([args]) => paravane(...args)));
    results.forEach((r, i) => {
      expect(r.code, cases[i]![0].join(' ')).toBe(2);
      expectOneLine(r.err, cases[i]![1]);
    });
  });

  it('refuses config files that are wrong, naming the file and entry', async () => {
    const config = path.join(dir, 'doms.json');
    const bad: Array<[unknown, RegExp]> = [
      [{}, /doms\.json: needs a non-empty "domains" list/],
      [{ domains: [{ name: 'x' }] }, /doms\.json: domains\[0\]: "kernel" \(a path\) is required/],
      [{ domains: [{ kernel: 'a.elf', colour: 'red' }] }, /doms\.json: domains\[0\]: unknown key "colour"/],
      [{ domains: [{ kernel: MINIMAL, weight: 0 }] }, /doms\.json: domains\[0\]: weight must be a whole number, in decimal digits, from 1 to 65535, not 0/],
      [{ domains: [{ kernel: MINIMAL, cmdline: '${domid:nobody}' }] }, /names domain "nobody", which is not being run/],
    ];
    for (const [doc, msg] of bad) {
      fs.writeFileSync(config, JSON.stringify(doc));
      const b = await paravane('run', '--config', config);
      expect(b.code, JSON.stringify(doc)).toBe(2);
      expectOneLine(b.err, msg);
    }
    fs.writeFileSync(config, '{ not json');
    expectOneLine((await paravane('run', '--config', config)).err, /doms\.json: not valid JSON/);
    expectOneLine((await paravane('run', '--config', config, MINIMAL)).err, /either on the command line or in --config/);
  });

  it('exits 1, its own status, with one line when the engine asked for is unavailable', async () => {
    const r = await paravane('run', MINIMAL, '--engine', 'kvm', '--kvm', '/nonexistent/kvm');
    expect(r.code).toBe(1);
    expectOneLine(r.err, /\/nonexistent\/kvm .*\(see `paravane doctor`\)$/m);
    // A log file that can be opened is good input: the engine is still what fails.
    const log = path.join(dir, 'hv.log');
    const l = await paravane('run', MINIMAL, '--log', log, '--engine', 'kvm', '--kvm', '/nonexistent/kvm');
    expect(l.code).toBe(1);
    expect(fs.readFileSync(log, 'latin1')).toBe('');
  });
});

describe('paravane run: how guests end decides the status', () => {
  it('exits 3 for a crash, with its reason', async () => {
    const log = path.join(fs.mkdtempSync(path.join(os.tmpdir(), 'paravane-log-')), 'hv.log');
    const r = await paravane('run', path.join(ELF, 'crash.elf'), '--stats', '--log', log);
    expect(r.code).toBe(3);
    expect(r.out).toBe('about to fault\n');
    // The guest has no ring: its console_io line is its console, and the log has it after its id.
    expect(fs.readFileSync(log, 'latin1')).toBe('(d1) about to fault\n');
    expect(r.err).toMatch(/^paravane: domain 1 \(crash\) crashed: unhandled #UD invalid opcode \(vector 6\) at rip 0x[0-9a-f]+; no trap handler is registered$/m);
    // --stats: its run and CPU time, hypercalls by name and exits by kind.
    expect(r.err).toMatch(/^paravane: domain 1 \(crash\) ran \d+\.\d{3} s, \d+\.\d{3} s of it on the CPU; frames returned to the pool: \d+$/m);
    expect(r.err).toMatch(/^ {4}console_io +1$/m);
    expect(r.err).toMatch(/^ {4}hypercall \(page\) +1$/m);
    expect(r.err).toMatch(/^ {4}exception +1$/m);
  });

  it('exits 4 when the guest asks to reboot', async () => {
    const r = await paravane('run', path.join(ELF, 'reboot.elf'));
    expect(r.code).toBe(4);
    expect(r.err).toBe('paravane: domain 1 (reboot) shut down with reason reboot\n');
  });

  it('exits 6 for a guest that runs past --timeout', async () => {
    const r = await paravane('run', MINIMAL, '--timeout', '0.2');
    expect(r.code).toBe(6);
    expect(r.err).toBe('paravane: domain 1 (minimal) killed: timed out after 0.2 s\n');
  });

  it.each([['SIGINT', 130], ['SIGTERM', 143], ['SIGHUP', 129]] as const)('ends the guests on %s and exits %i', async (sig, status) => {
    const run = start(['run', RING], { stdio: ['pipe', 'pipe', 'pipe'] });
    await run.waitFor(/hello from the ring\n/, 'out');
    run.p.kill(sig);
    const r = await run.ended;
    expect(r).toMatchObject({ code: status, signal: null, err: `paravane: domain 1 (ring) killed: interrupted by ${sig}\n` });
  });

  it('ends the guests when its parent process goes away, as a killed npx wrapper does', async () => {
    // The shell runs paravane in the background and waits for a line on stdin (a background job's
    // stdin is /dev/null: the line is the shell's); killed, it leaves paravane reparented.
    const sh = spawn('sh', ['-c', `"${process.execPath}" "${BIN}" run "${RING}" & read line`], { stdio: ['pipe', 'pipe', 'pipe'], timeout: 120_000 });
    let out = '', err = '';
    sh.stdout.on('data', (b: Buffer) => {
      out += b.toString();
      if (out === 'hello from the ring\n') sh.kill('SIGKILL');
    });
    sh.stderr.on('data', (b: Buffer) => { err += b.toString(); });
    // paravane holds both pipes until it exits.
    await Promise.all([new Promise((r) => sh.stdout.on('close', r)), new Promise((r) => sh.stderr.on('close', r))]);
    expect(err).toBe('paravane: domain 1 (ring) killed: the parent process went away\n');
  });

  it('ends quietly with status 141 when its stdout is closed', async () => {
    const r = await start(['run', RING], { stdio: ['pipe', 'pipe', 'pipe'], closeStdout: true }).ended;
    expect(r).toMatchObject({ code: 141, signal: null, err: '' });
  });

  it("runs the hello example (the README's main job): its output on stdout, status 0", async () => {
    const r = await paravane('run', HELLO, '--memory', '16', '--cmdline', 'from the test', '--stats');
    expect(r.code).toBe(0);
    expect(r.out).toMatch(/^Hello from paravane!\nstart_info: magic=xen-3\.0-x86_64 nr_pages=4096 cmdline="from the test"\nxen_version: 4\.17-paravane\n/);
    expect(r.err).toMatch(/^ {4}console_io +\d+$/m);
    expect(r.err).toMatch(/^ {4}xen_version +2$/m);
    expect(r.err).toMatch(/^ {4}sched_op +1$/m);
    expect(r.err).not.toMatch(/crashed|killed/);
  });

  it('runs several kernels side by side, each line prefixed with its domain, and names them uniquely', async () => {
    const r = await paravane('run', HELLO, HELLO, '--memory', '16', '--cmdline', 'me=${domid:hello} peer=${domid:hello-2}');
    expect(r.code).toBe(0);
    expect(r.out).toContain('[hello] Hello from paravane!\n');
    expect(r.out).toContain('[hello-2] Hello from paravane!\n');
    expect(r.out).toContain('[hello] start_info: magic=xen-3.0-x86_64 nr_pages=4096 cmdline="me=1 peer=2"\n');
    expect(r.out).toContain('[hello-2] start_info: magic=xen-3.0-x86_64 nr_pages=4096 cmdline="me=1 peer=2"\n');
    expect(r.out.split('\n').filter((l) => l && !/^\[hello(-2)?\] /.test(l))).toEqual([]);
  });

  it('takes the domains from a config file, with per-domain options, and exits with the most severe end', async () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'paravane-config-'));
    const config = path.join(dir, 'doms.json');
    fs.writeFileSync(config, JSON.stringify({ domains: [
      { kernel: HELLO, name: 'greeter', memory: 8, weight: 512, cmdline: 'peer=${domid:crasher}' },
      { kernel: path.join(ELF, 'crash.elf'), name: 'crasher', memory: 8, cap: 50 },
    ] }));
    const r = await paravane('run', '--config', config);
    expect(r.code).toBe(3);
    expect(r.out).toContain('[greeter] start_info: magic=xen-3.0-x86_64 nr_pages=2048 cmdline="peer=2"\n');
    expect(r.err).toMatch(/^paravane: domain 2 \(crasher\) crashed: /m);
    expect(r.err).not.toMatch(/greeter/);
  });

  it('reports a domain that ends while others run at once, with its own run and CPU time', async () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'paravane-ends-'));
    const config = path.join(dir, 'doms.json');
    fs.writeFileSync(config, JSON.stringify({ domains: [
      { kernel: path.join(ELF, 'crash.elf'), name: 'crasher' },
      { kernel: RING, name: 'waiter' },
    ] }));
    const run = start(['run', '--config', config, '--stats'], { stdio: ['pipe', 'pipe', 'pipe'] });
    // The crash is reported while the waiter still runs: only then is the run stopped.
    await run.waitFor(/^paravane: domain 1 \(crasher\) crashed: .*\n/m);
    await run.waitFor(/^\[waiter\] hello from the ring\n/m, 'out');
    expect(run.err()).not.toMatch(/waiter/);
    run.p.kill('SIGINT');
    const r = await run.ended;
    expect(r.code).toBe(130); // a signal is more severe than a crash
    expect(r.err).toMatch(/^paravane: domain 2 \(waiter\) killed: interrupted by SIGINT$/m);
    const times = (name: string): [number, number] => {
      const m = new RegExp(`^paravane: domain \\d \\(${name}\\) ran (\\d+\\.\\d+) s, (\\d+\\.\\d+) s of it on the CPU;`, 'm').exec(r.err);
      expect(m, name).not.toBeNull();
      return [Number(m![1]), Number(m![2])];
    };
    const [crasherRan, crasherCpu] = times('crasher');
    const [waiterRan, waiterCpu] = times('waiter');
    // The crasher ended before the signal that ended the waiter was sent.
    expect(crasherRan).toBeLessThan(waiterRan);
    expect(crasherCpu).toBeLessThanOrEqual(crasherRan);
    expect(waiterCpu).toBeLessThanOrEqual(waiterRan);
  });

  it("passes stdin to the guest's console ring", async () => {
    const p = spawn(process.execPath, [BIN, 'run', RING], { stdio: ['pipe', 'pipe', 'pipe'] });
    let out = '';
    p.stdout.on('data', (b: Buffer) => { out += b.toString(); });
    p.stdin.end('typed on stdin\n');
    const code = await new Promise<number | null>((resolve) => p.on('close', resolve));
    expect(code).toBe(0);
    expect(out).toBe('hello from the ring\ngot: typed on stdin\n');
  });
});

describe('paravane run: inputs that used to break, with a real guest', () => {
  // Sizes past the 32-bit wrap, on hosts with room for them.
  const sizes = [[2048, 524288], [4097, 1048832]].filter(([mib]) => mib! * 1.1 * (1 << 20) < os.totalmem());
  it.each(sizes)('gives a %i MiB domain all its memory (nr_pages %i)', async (mib, pages) => {
    const r = await paravane('run', HELLO, '--memory', String(mib));
    expect(r.code, r.err).toBe(0);
    expect(r.out).toContain(`start_info: magic=xen-3.0-x86_64 nr_pages=${pages} cmdline=""\n`);
  });

  it('passes an initrd whose length is not a multiple of the page size', async () => {
    const initrd = path.join(fs.mkdtempSync(path.join(os.tmpdir(), 'paravane-initrd-')), 'odd.img');
    fs.writeFileSync(initrd, new Uint8Array(10000).fill(7));
    const r = await paravane('run', HELLO, '--initrd', initrd);
    expect(r.code, r.err).toBe(0);
    // mod_len is the length of the pages it fills, as Xen's toolstack gives it (the rest is zero).
    expect(r.out).toMatch(/^module: start=0xffffffff8[0-9a-f]+ len=12288$/m);
  });

  it('passes a command line to the guest as UTF-8', async () => {
    const r = await paravane('run', HELLO, '--cmdline', 'héllo ☃');
    expect(r.code, r.err).toBe(0);
    expect(r.out).toContain('cmdline="héllo ☃"\n');
  });
});
