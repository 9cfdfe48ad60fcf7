// `paravane run --gdb PORT` driven by real gdb in batch mode (Debian's
// gdb): a breakpoint at a symbol of the hello example, a variable read
// through the guest's page tables, a single step, and a continue to its
// poweroff; a crashing guest stopped for inspection instead of torn down;
// gdb's interrupt and a bad address over the raw protocol; bad flags.

import { describe, expect, it } from 'vitest';
import { spawn, spawnSync } from 'node:child_process';
import * as net from 'node:net';
import * as path from 'node:path';
import { BIN, ELF, GUESTS } from './spawn.js';
import { GUEST_ENGINE } from '../support/kvm-gate.js';
import { EXIT } from '../../src/cli/exit-status.js';

const GDB = spawnSync('sh', ['-c', 'command -v gdb']).status === 0;
if (!GDB) {
  const msg = 'gdb is not installed (Debian: gdb): the gdb stub is not driven by gdb';
  if (process.env.CI) throw new Error(`${msg} (CI must install it: see .ci/run)`);
  console.warn(`SKIP: ${msg}`);
}

/** Starts `paravane run --gdb 0 KERNEL`; resolves with the port it serves and the run's end. */
async function debugRun(kernel: string) {
  const p = spawn(process.execPath, [BIN, 'run', '--engine', GUEST_ENGINE, '--gdb', '0', kernel], { stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '', err = '';
  p.stdout!.on('data', (b: Buffer) => { out += b.toString(); });
  const port = await new Promise<number>((resolve, reject) => {
    p.stderr!.on('data', (b: Buffer) => {
      err += b.toString();
      const m = /waiting for gdb on 127\.0\.0\.1:(\d+)/.exec(err);
      if (m) resolve(Number(m[1]));
    });
    p.on('close', () => reject(new Error(`the run ended first: ${err}`)));
  });
  const ended = new Promise<{ code: number | null; out: string; err: string }>((res) => p.on('close', (code) => res({ code, out, err })));
  return { port, ended, p };
}

function gdb(port: number, elf: string, commands: string[]) {
  const args = ['-batch', '-nx', '-ex', 'set pagination off', '-ex', `target remote 127.0.0.1:${port}`, ...commands.flatMap((c) => ['-ex', c]), elf];
  return spawnSync('gdb', args, { encoding: 'utf8', timeout: 120_000 });
}

describe.skipIf(!GDB)('paravane run --gdb', () => {
  it('stops at a breakpoint on a symbol, reads a variable, steps, and continues to the poweroff', async () => {
    const hello = path.join(GUESTS, 'hello.elf');
    const { port, ended } = await debugRun(hello);
    const g = gdb(port, hello, ['break main', 'continue', 'print start_info->magic', 'stepi', 'info registers rip', 'continue']);
    expect(g.stdout).toMatch(/^Breakpoint 1, main \(si=0x[0-9a-f]+\) at hello\.c:\d+$/m);
    expect(g.stdout).toContain('$1 = "xen-3.0-x86_64"');
    expect(g.stdout).toMatch(/^rip +0x[0-9a-f]+ +0x[0-9a-f]+ <main\+\d+>$/m);
    expect(g.stdout).toContain('[Inferior 1 (Remote target) exited normally]');
    const end = await ended;
    expect(end.code, end.err).toBe(EXIT.POWEROFF);
    expect(end.out).toContain('Hello from paravane!');
  }, 180_000);

  it('stops a crashing domain for inspection instead of tearing it down, then lets the crash happen', async () => {
    const crash = path.join(ELF, 'crash.elf');
    const { port, ended } = await debugRun(crash);
    const g = gdb(port, crash, ['continue', 'x/2bx $pc', 'continue']);
    expect(g.stdout).toContain('Program received signal SIGSEGV');
    expect(g.stdout).toMatch(/<fault>:\s+0x0f\s+0x0b/); // stopped at the ud2 that had no handler
    expect(g.stdout).toContain('Program terminated with signal SIGSEGV');
    const end = await ended;
    expect(end.code).toBe(EXIT.CRASH);
    expect(end.err).toContain('domain 1 (crash) crashed: unhandled #UD');
  }, 180_000);

  it('stops a running domain at gdb\'s interrupt, and answers a read of unmapped memory with an error', async () => {
    const { port, ended, p } = await debugRun(path.join(GUESTS, 'echo.elf'));
    const sock = net.createConnection(port, '127.0.0.1');
    let got = '';
    sock.setEncoding('latin1');
    sock.on('data', (d: string) => { got += d; });
    const reply = async (packet: string | null, re: RegExp): Promise<string> => {
      if (packet !== null) {
        let sum = 0;
        for (const ch of packet) sum = (sum + ch.charCodeAt(0)) & 0xff;
        sock.write(`$${packet}#${sum.toString(16).padStart(2, '0')}`);
      }
      for (let i = 0; i < 600 && !re.test(got); i++) await new Promise((r) => setTimeout(r, 50));
      const m = re.exec(got);
      expect(m, got).not.toBeNull();
      got = got.slice(m!.index + m![0].length);
      return m![1] ?? '';
    };
    expect(await reply('?', /\$(S05)#/)).toBe('S05');
    expect(await reply('m1000,8', /\$(E14)#/)).toBe('E14'); // nothing mapped at 0x1000
    sock.write('$c#63');
    await new Promise((r) => setTimeout(r, 1000));
    sock.write('\x03');
    expect(await reply(null, /\$(S02)#/)).toBe('S02');
    expect((await reply('g', /\$([0-9a-f]+)#/)).length).toBe(2 * (16 * 8 + 8 + 7 * 4));
    sock.write('$k#6b');
    const end = await ended;
    expect(end.err).toContain('killed by the debugger');
    sock.destroy();
    p.kill();
  }, 180_000);

  it('refuses a port that is not one, several domains, and plain kernels', () => {
    const run = (...a: string[]) => spawnSync(process.execPath, [BIN, 'run', ...a], { encoding: 'utf8', timeout: 60_000 });
    const hello = path.join(GUESTS, 'hello.elf');
    expect(run('--gdb', 'x', hello)).toMatchObject({ status: EXIT.USAGE, stderr: 'paravane: --gdb x: a TCP port, 0 to 65535 (0: any free one)\n' });
    expect(run('--gdb', '0', hello, hello)).toMatchObject({ status: EXIT.USAGE, stderr: 'paravane: --gdb debugs one domain, and this run has 2\n' });
    expect(run('--gdb', '0', '--mode', 'fv-trap', path.join(GUESTS, 'nano-native.elf'))).toMatchObject({ status: EXIT.USAGE, stderr: 'paravane: --gdb debugs PV domains (not --mode fv-trap)\n' });
  });
});
