// docs/first-hour.md is executed as written: every ```sh block, in order,
// each line a command run by bash from the project's root (with its own
// run directory and a scratch directory for the files it writes), and
// every command must succeed. A few outputs the page promises are checked.

import { describe, expect, it } from 'vitest';
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';

const ROOT = path.resolve(import.meta.dirname, '../..');

describe('docs/first-hour.md', () => {
  it('runs as written, every command succeeding', () => {
    const page = fs.readFileSync(path.join(ROOT, 'docs/first-hour.md'), 'utf8');
    const commands = [...page.matchAll(/```sh\n([\s\S]*?)```/g)].flatMap((m) => m[1]!.split('\n').filter((l) => l.trim() !== ''));
    expect(commands.length).toBeGreaterThan(10);
    const scratch = fs.mkdtempSync(path.join(os.tmpdir(), 'paravane-first-hour-'));
    const env = { ...process.env, PARAVANE_RUN_DIR: path.join(scratch, 'runs') };
    const outputs: string[] = [];
    try {
      // From the root (npx finds paravane there); the file the page writes (hypercalls.trace) goes to the scratch directory.
      for (const c of commands) {
        const line = c.replace(/\bhypercalls\.trace\b/g, path.join(scratch, 'hypercalls.trace'));
        const r = spawnSync('bash', ['-c', `set -o pipefail; ${line}`], { cwd: ROOT, env, encoding: 'utf8', timeout: 180_000 });
        expect(r.status, `${c}\n${r.stdout}\n${r.stderr}`).toBe(0);
        outputs.push(r.stdout + r.stderr);
      }
      const out = (c: string) => outputs[commands.indexOf(c)]!;
      expect(out('npx paravane run build/guests/hello.elf')).toContain('Hello from paravane!');
      expect(out('npx paravane list')).toMatch(/^echo +1 +\d+ +running /m);
      expect(out('npx paravane info echo')).toMatch(/^state +paused$/m);
      expect(out("printf 'hello, guest\\n\\035' | npx paravane console echo")).toContain('echo: hello, guest');
      expect(out('npx paravane trace hypercalls.trace --elf build/guests/hypercalls.elf --top 3')).toMatch(/put_console\+0x/);
      expect(out('npx paravane destroy echo')).toBe('echo: dead\n');
      expect(outputs[commands.findIndex((c) => c.startsWith('gdb -batch'))]).toContain('$1 = "xen-3.0-x86_64"');
    } finally {
      for (const f of fs.existsSync(env.PARAVANE_RUN_DIR) ? fs.readdirSync(env.PARAVANE_RUN_DIR) : []) {
        const m = /^(\d+)\.sock$/.exec(f);
        if (m) try { process.kill(Number(m[1]), 'SIGKILL'); } catch { /* gone */ }
      }
      fs.rmSync(scratch, { recursive: true, force: true });
    }
  }, 300_000);
});
