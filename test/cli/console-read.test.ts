// Console input the guest kit's way: the echo example reads what is typed
// to `paravane run` with console_read() (console_io(CONSOLEIO_read)),
// waits on VIRQ_CONSOLE between lines, answers each, and powers off at
// "quit". It binds the VIRQ without calling evtchn_init() itself: binding
// initialises the events.

import { describe, expect, it } from 'vitest';
import { spawnSync } from 'node:child_process';
import * as path from 'node:path';
import { BIN, GUESTS } from './spawn.js';
import { GUEST_ENGINE } from '../support/kvm-gate.js';

describe('console input in a guest-kit guest', () => {
  it('echoes each line typed to it and ends at quit', () => {
    const r = spawnSync(process.execPath, [BIN, 'run', '--engine', GUEST_ENGINE, path.join(GUESTS, 'echo.elf')], {
      input: 'hello there\n\nsecond line\r\nquit\nnot read\n', encoding: 'utf8', timeout: 120_000,
    });
    expect(r.status, r.stderr).toBe(0);
    expect(r.stdout).toBe('echo: type a line; quit ends\necho: hello there\necho: second line\necho: bye\n');
  }, 130_000);
});
