// The initramfs the Linux guest tests and `npm run bench -- linux` boot: a
// gzip'd cpio archive (the "newc" format Linux unpacks) holding a static
// busybox, its shell and an /init that mounts /proc and /sys, says it is up
// on the console, runs an interactive shell there, and powers off when the
// shell ends. The archive is written here rather than with cpio(1) so that
// /dev/console, which the kernel opens before /init, can be a device entry
// without root's mknod. Usage: node dist/linux/initramfs.js BUSYBOX OUT.

import * as fs from 'node:fs';
import { gzipSync } from 'node:zlib';
import { fileURLToPath } from 'node:url';

/** What /init prints when it is up (the tests wait for it). */
export const INIT_BANNER = 'paravane-init: up';

export const INIT_SCRIPT = `#!/bin/busybox sh
/bin/busybox --install -s /bin
mount -t proc proc /proc
mount -t sysfs sysfs /sys
echo "${INIT_BANNER}"
setsid cttyhack sh
poweroff -f
`;

/** One archive entry: a directory, a regular file, a symbolic link or a character device. */
export type Entry =
  | { name: string; kind: 'dir'; mode?: number }
  | { name: string; kind: 'file'; data: Uint8Array; mode?: number }
  | { name: string; kind: 'symlink'; target: string }
  | { name: string; kind: 'char'; major: number; minor: number; mode?: number };

const S_IFDIR = 0o040000, S_IFREG = 0o100000, S_IFLNK = 0o120000, S_IFCHR = 0o020000;
const pad4 = (n: number): number => (4 - (n % 4)) % 4;

/** The entries as a newc cpio archive (uncompressed), with its trailer. */
export function cpioNewc(entries: readonly Entry[]): Uint8Array {
  const chunks: Buffer[] = [];
  const add = (ino: number, name: string, mode: number, data: Uint8Array, rdev: [number, number] = [0, 0]): void => {
    const fields = [ino, mode, 0, 0, mode & S_IFDIR ? 2 : 1, 0, data.length, 0, 0, rdev[0], rdev[1], name.length + 1, 0];
    const header = '070701' + fields.map((f) => f.toString(16).padStart(8, '0')).join('');
    const nameBytes = Buffer.from(`${name}\0`, 'utf8');
    chunks.push(Buffer.from(header, 'latin1'), nameBytes, Buffer.alloc(pad4(110 + nameBytes.length)), Buffer.from(data), Buffer.alloc(pad4(data.length)));
  };
  entries.forEach((e, i) => {
    const ino = i + 1;
    if (e.kind === 'dir') add(ino, e.name, S_IFDIR | (e.mode ?? 0o755), new Uint8Array(0));
    else if (e.kind === 'file') add(ino, e.name, S_IFREG | (e.mode ?? 0o644), e.data);
    else if (e.kind === 'symlink') add(ino, e.name, S_IFLNK | 0o777, Buffer.from(e.target, 'utf8'));
    else add(ino, e.name, S_IFCHR | (e.mode ?? 0o600), new Uint8Array(0), [e.major, e.minor]);
  });
  add(0, 'TRAILER!!!', 0, new Uint8Array(0));
  return Buffer.concat(chunks);
}

/** The test initramfs around a static busybox binary, gzip'd. */
export function buildInitramfs(busybox: Uint8Array): Uint8Array {
  return gzipSync(cpioNewc([
    { name: 'dev', kind: 'dir' },
    { name: 'dev/console', kind: 'char', major: 5, minor: 1 },
    { name: 'proc', kind: 'dir' },
    { name: 'sys', kind: 'dir' },
    { name: 'bin', kind: 'dir' },
    { name: 'bin/busybox', kind: 'file', data: busybox, mode: 0o755 },
    { name: 'bin/sh', kind: 'symlink', target: 'busybox' },
    { name: 'init', kind: 'file', data: Buffer.from(INIT_SCRIPT), mode: 0o755 },
  ]));
}

if (process.argv[1] && fileURLToPath(import.meta.url) === fs.realpathSync(process.argv[1])) {
  const [busybox, out] = process.argv.slice(2);
  if (!busybox || !out) {
    process.stderr.write('usage: node dist/linux/initramfs.js BUSYBOX OUT\n');
    process.exit(2);
  }
  fs.writeFileSync(out, buildInitramfs(fs.readFileSync(busybox)));
}
