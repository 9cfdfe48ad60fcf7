// The test initramfs: a newc cpio archive Linux can unpack (read back here
// by the format's rules: headers, names and data padded to 4 bytes, the
// trailer), holding /dev/console as a device, busybox and its shell, and
// an /init that says it is up and powers off when the shell ends; built
// around Debian's busybox-static when it has been fetched.

import { describe, expect, it } from 'vitest';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { gunzipSync } from 'node:zlib';
import { buildInitramfs, cpioNewc, INIT_BANNER } from '../../src/linux/initramfs.js';

interface Read { name: string; mode: number; data: Buffer; rdev: [number, number] }

/** Reads a newc archive back, checking its framing. */
function readNewc(b: Buffer): Read[] {
  const out: Read[] = [];
  let at = 0;
  for (;;) {
    expect(b.toString('latin1', at, at + 6)).toBe('070701');
    const f = (i: number) => parseInt(b.toString('latin1', at + 6 + 8 * i, at + 14 + 8 * i), 16);
    const nameSize = f(11), size = f(6);
    const name = b.toString('utf8', at + 110, at + 110 + nameSize - 1);
    expect(b[at + 110 + nameSize - 1]).toBe(0);
    let p = at + 110 + nameSize;
    p += (4 - (p % 4)) % 4;
    if (name === 'TRAILER!!!') {
      expect(p).toBe(b.length);
      return out;
    }
    out.push({ name, mode: f(1), data: b.subarray(p, p + size), rdev: [f(9), f(10)] });
    p += size;
    p += (4 - (p % 4)) % 4;
    at = p;
  }
}

describe('the test initramfs', () => {
  it('is a newc archive with the device, busybox, its shell and an /init that powers off', () => {
    const fake = Buffer.from('\x7fELF not really busybox, 37 bytes..');
    const entries = readNewc(gunzipSync(buildInitramfs(fake)));
    const by = new Map(entries.map((e) => [e.name, e]));
    expect([...by.keys()]).toEqual(['dev', 'dev/console', 'proc', 'sys', 'bin', 'bin/busybox', 'bin/sh', 'init']);
    expect(by.get('dev/console')!.mode).toBe(0o020600);
    expect(by.get('dev/console')!.rdev).toEqual([5, 1]);
    expect(by.get('bin/busybox')!.data).toEqual(fake);
    expect(by.get('bin/busybox')!.mode).toBe(0o100755);
    expect(by.get('bin/sh')!.mode).toBe(0o120777);
    expect(by.get('bin/sh')!.data.toString()).toBe('busybox');
    const init = by.get('init')!.data.toString();
    expect(init.startsWith('#!/bin/busybox sh\n')).toBe(true);
    expect(init).toContain(`echo "${INIT_BANNER}"`);
    expect(init.trimEnd().endsWith('poweroff -f')).toBe(true);
  });

  it('pads names and data of every length to 4 bytes', () => {
    for (let n = 0; n < 8; n++) {
      const data = Buffer.alloc(n, 0x41 + n);
      const [e] = readNewc(Buffer.from(cpioNewc([{ name: 'x'.repeat(n + 1), kind: 'file', data }])));
      expect(e!.data).toEqual(data);
    }
  });

  const busybox = path.resolve(import.meta.dirname, '../../build/linux/busybox');
  it.skipIf(!fs.existsSync(busybox))('holds Debian\'s busybox-static whole', () => {
    const bb = fs.readFileSync(busybox);
    const e = readNewc(gunzipSync(buildInitramfs(bb))).find((x) => x.name === 'bin/busybox')!;
    expect(Buffer.compare(e.data, bb)).toBe(0);
  });
  if (!fs.existsSync(busybox)) console.warn(`SKIP: busybox-static is not fetched (${busybox}: run scripts/fetch-linux.sh; .ci/run does)`);
});
