// A kernel file as users have it: an ELF vmlinux, or a bzImage (what
// /boot/vmlinuz-* is), whose compressed payload is the vmlinux ELF. As
// Xen's toolstack (xc_dom_bzimageloader), the bzImage's setup header
// (Linux's boot protocol 2.08 or later) says where the payload is; its
// magic says how it is compressed; it is decompressed with a maintained
// library (gzip: node:zlib; xz, with the x86 BCJ filter the kernel uses:
// liblzma through node-liblzma; zstd: fzstd), bounded by the size the
// payload declares and by MAX_IMAGE_BYTES. Input: an untrusted file.

import { gunzipSync } from 'node:zlib';
import { decompress as unzstd } from 'fzstd';
import { parseFileIndex, unxzSync } from 'node-liblzma';
import { GuestElfError, MAX_IMAGE_BYTES } from './elf.js';

/** The setup header fields read (offsets from the file's start; Linux's Documentation/arch/x86/boot.rst). */
const HDR = { setupSects: 0x1f1, magic: 0x202, version: 0x206, loadflags: 0x211, payloadOffset: 0x248, payloadLength: 0x24c } as const;
const HDRS = 0x53726448; // "HdrS"
/** payload_offset and payload_length exist from boot protocol 2.08. */
const MIN_VERSION = 0x208;
const SECTOR = 512;

/** Compressed formats by magic, as the kernel's decompressors recognise them. */
const FORMATS: ReadonlyArray<{ name: string; magic: readonly number[] }> = [
  { name: 'gzip', magic: [0x1f, 0x8b] },
  { name: 'xz', magic: [0xfd, 0x37, 0x7a, 0x58, 0x5a, 0x00] },
  { name: 'zstd', magic: [0x28, 0xb5, 0x2f, 0xfd] },
  { name: 'bzip2', magic: [0x42, 0x5a, 0x68] },
  { name: 'lz4', magic: [0x02, 0x21, 0x4c, 0x18] },
  { name: 'lzo', magic: [0x89, 0x4c, 0x5a, 0x4f] },
  { name: 'lzma', magic: [0x5d, 0x00, 0x00] },
];

/** What kind of file the kernel was, for messages and `paravane run --stats`. */
export interface KernelImage {
  /** The ELF image to load. */
  elf: Uint8Array;
  /** 'elf', or 'bzImage (xz)' and the like. */
  format: string;
}

function fail(message: string): never {
  throw new GuestElfError(message);
}

const isElf = (f: Uint8Array): boolean => f.length >= 4 && f[0] === 0x7f && f[1] === 0x45 && f[2] === 0x4c && f[3] === 0x46;

/** Whether `file` carries a Linux setup header ("HdrS" at 0x202). */
export function isBzImage(file: Uint8Array): boolean {
  return file.length >= HDR.payloadLength + 4 && new DataView(file.buffer, file.byteOffset, file.byteLength).getUint32(HDR.magic, true) === HDRS;
}

/** The ELF a kernel file holds: the file itself, or a bzImage's decompressed payload. */
export function kernelImage(file: Uint8Array): KernelImage {
  if (isElf(file) || !isBzImage(file)) return { elf: file, format: 'elf' };
  const v = new DataView(file.buffer, file.byteOffset, file.byteLength);
  const version = v.getUint16(HDR.version, true);
  if (version < MIN_VERSION) fail(`a bzImage of boot protocol ${version >> 8}.${(version & 0xff).toString().padStart(2, '0')}: 2.08 or later is needed (it says where the payload is)`);
  const setupSects = file[HDR.setupSects] || 4;
  const payloadAt = (setupSects + 1) * SECTOR + v.getUint32(HDR.payloadOffset, true);
  const length = v.getUint32(HDR.payloadLength, true);
  if (length < 8 || payloadAt + length > file.length) fail(`the bzImage's payload (${length} bytes at ${payloadAt}) runs past the end of the ${file.length}-byte file`);
  const payload = file.subarray(payloadAt, payloadAt + length);
  const format = FORMATS.find((f) => f.magic.every((b, i) => payload[i] === b));
  if (!format) fail(`the bzImage's payload is in no compressed format known here (it starts ${Buffer.from(payload.subarray(0, 6)).toString('hex')})`);
  // The kernel's build appends the decompressed size to the payload (its last 4 bytes, little-endian).
  const size = v.getUint32(payloadAt + length - 4, true);
  if (size > MAX_IMAGE_BYTES) fail(`the bzImage's payload would decompress to ${size} bytes, more than ${MAX_IMAGE_BYTES}`);
  const elf = decompress(format.name, payload, size);
  if (elf.length !== size) fail(`the bzImage's ${format.name} payload decompressed to ${elf.length} bytes, not the ${size} it declares`);
  if (!isElf(elf)) fail(`the bzImage's ${format.name} payload is not an ELF vmlinux`);
  return { elf, format: `bzImage (${format.name})` };
}

/** Decompresses a payload (its stream, then the 4 size bytes the build appended) to at most `size` bytes. */
function decompress(name: string, payload: Uint8Array, size: number): Uint8Array {
  const stream = Buffer.from(payload.buffer, payload.byteOffset, payload.byteLength - 4);
  try {
    switch (name) {
      case 'gzip':
        return gunzipSync(stream, { maxOutputLength: Math.max(size, 1) });
      case 'xz': {
        // The stream's index says how much it holds (liblzma checks the index against the data).
        const declared = parseFileIndex(stream).uncompressedSize;
        if (declared !== size) fail(`the bzImage's xz payload holds ${declared} bytes, not the ${size} it declares`);
        return unxzSync(stream);
      }
      case 'zstd':
        return unzstd(stream, new Uint8Array(size));
      default:
        return fail(`the bzImage's payload is ${name}-compressed; paravane reads gzip, xz and zstd (a kernel built with CONFIG_KERNEL_XZ, _GZIP or _ZSTD, or its vmlinux ELF)`);
    }
  } catch (e) {
    if (e instanceof GuestElfError) throw e;
    return fail(`the bzImage's ${name} payload cannot be decompressed: ${(e as Error).message}`);
  }
}
