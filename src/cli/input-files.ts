// Reads a command's files (kernels, initrds, config files) with a size cap:
// regular files only (a device or FIFO may be endless or block), never more
// than cap + 1 bytes. Input: untrusted paths; every failure is a UsageError
// naming the file.

import { closeSync, constants, fstatSync, openSync, readSync, type Stats } from 'node:fs';
import { UsageError } from './usage-error.js';

const MIB = 1 << 20;

/** A size for messages: bytes below 1 MiB, else MiB (one decimal when not whole). */
export function formatSize(bytes: number): string {
  if (bytes < MIB) return `${bytes} bytes`;
  const mib = bytes / MIB;
  return `${Number.isInteger(mib) ? mib : mib.toFixed(1)} MiB`;
}

function errnoText(e: NodeJS.ErrnoException): string {
  switch (e.code) {
    case 'ENOENT': return 'no such file';
    case 'EACCES': return 'permission denied';
    case 'EISDIR': return 'it is a directory';
    case 'ENOTDIR': return 'a component of the path is not a directory';
    case 'ELOOP': return 'too many symbolic links';
    default: return e.message;
  }
}

function kindOf(st: Stats): string {
  if (st.isCharacterDevice()) return 'a character device';
  if (st.isBlockDevice()) return 'a block device';
  if (st.isFIFO()) return 'a FIFO';
  if (st.isSocket()) return 'a socket';
  return 'not a regular file';
}

export interface Cap {
  bytes: number;
  /** Completes "is N MiB; ": "a kernel file may be at most 1024 MiB". */
  why: string;
}

/**
 * The contents of `file`, a regular file of at most `cap.bytes`. `what`
 * names it in messages ("kernel", "initrd", "config file").
 */
export function readInputFile(what: string, file: string, cap: Cap): Buffer {
  let fd: number;
  try {
    // O_NONBLOCK: opening a FIFO must not wait for a writer before it is refused.
    fd = openSync(file, constants.O_RDONLY | constants.O_NONBLOCK);
  } catch (e) {
    throw new UsageError(`cannot read ${what} ${file}: ${errnoText(e as NodeJS.ErrnoException)}`);
  }
  try {
    const st = fstatSync(fd);
    if (st.isDirectory()) throw new UsageError(`cannot read ${what} ${file}: it is a directory`);
    if (!st.isFile()) throw new UsageError(`cannot read ${what} ${file}: it is ${kindOf(st)}, not a regular file`);
    if (st.size > cap.bytes) throw new UsageError(`${what} ${file} is ${formatSize(st.size)}; ${cap.why}`);
    const chunks: Buffer[] = [];
    let total = 0;
    for (;;) {
      // The stated size and one byte more at first (to see the end), then small steps.
      const want = Math.min(cap.bytes + 1 - total, total === 0 ? st.size + 1 : 1 << 16);
      const buf = Buffer.allocUnsafe(want);
      let n: number;
      try {
        n = readSync(fd, buf, 0, want, null);
      } catch (e) {
        throw new UsageError(`cannot read ${what} ${file}: ${errnoText(e as NodeJS.ErrnoException)}`);
      }
      if (n === 0) break;
      chunks.push(buf.subarray(0, n));
      total += n;
      if (total > cap.bytes) throw new UsageError(`${what} ${file} is larger than ${formatSize(cap.bytes)}; ${cap.why}`);
    }
    return Buffer.concat(chunks, total);
  } finally {
    closeSync(fd);
  }
}
