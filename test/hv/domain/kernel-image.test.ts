// Kernels as users have them (no KVM): a bzImage's payload found through
// its setup header and decompressed (gzip, xz with the x86 BCJ filter as
// the kernel's build uses it, zstd), each giving back the vmlinux ELF it
// wraps and a domain built from it; the bad cases refused with one clear
// message; and ELF segments placed as Xen places them, by p_paddr +
// VIRT_BASE - PADDR_OFFSET, whatever p_vaddr says (Linux's per-CPU
// segment has p_vaddr 0). Debian's own kernel, when fetched
// (scripts/fetch-linux.sh), is read and laid out too.

import { afterEach, describe, expect, it } from 'vitest';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { gzipSync } from 'node:zlib';
import { execFileSync } from 'node:child_process';
import { check as xzCheck, filter as xzFilter, xzSync } from 'node-liblzma';
import { kernelImage } from '../../../src/hv/domain/kernel-image.js';
import { GuestElfError, parseGuestKernel } from '../../../src/hv/domain/elf.js';
import { planBootLayout } from '../../../src/hv/domain/builder.js';
import { scriptedMachine } from '../../support/scripted.js';
import type { Hypervisor } from '../../../src/hv/hypervisor.js';
import { StartInfo, StartInfoFlags } from '../../../src/abi/generated/xen.js';

const ROOT = path.resolve(import.meta.dirname, '../../..');
const HELLO = fs.readFileSync(path.join(ROOT, 'build/guests/hello.elf'));
let hv: Hypervisor | undefined;
afterEach(() => { hv?.close(); hv = undefined; });

/** A bzImage as the kernel's build lays it out: setup sectors with the header, then the protected-mode code holding the payload (the stream, then its decompressed size). */
function bzImage(stream: Uint8Array, size: number, o: { version?: number; setupSects?: number } = {}): Uint8Array {
  const setupSects = o.setupSects ?? 3;
  const pm = (setupSects + 1) * 512;
  const head = 0x180; // the decompressor's code before the payload
  const out = new Uint8Array(pm + head + stream.length + 4 + 0x40);
  const v = new DataView(out.buffer);
  out[0x1f1] = setupSects;
  v.setUint32(0x202, 0x53726448, true);
  v.setUint16(0x206, o.version ?? 0x20f, true);
  v.setUint32(0x248, head, true);
  v.setUint32(0x24c, stream.length + 4, true);
  out.set(stream, pm + head);
  v.setUint32(pm + head + stream.length, size, true);
  return out;
}

const gz = (b: Uint8Array) => gzipSync(b);
const xz = (b: Uint8Array) => xzSync(Buffer.from(b), { check: xzCheck.CRC32, filters: [xzFilter.X86, xzFilter.LZMA2] });
const zstd = (b: Uint8Array) => execFileSync('zstd', ['-q', '-19', '-c'], { input: b, maxBuffer: 1 << 26 });

const refused = (file: Uint8Array): string => {
  try {
    kernelImage(file);
  } catch (e) {
    expect(e).toBeInstanceOf(GuestElfError);
    return (e as Error).message;
  }
  throw new Error('not refused');
};

describe('bzImage kernels', () => {
  it.each([['gzip', gz], ['xz', xz], ['zstd', zstd]] as const)('unwraps a %s bzImage to the ELF it holds, and builds a domain from it as from the ELF', (name, compress) => {
    const img = bzImage(compress(HELLO), HELLO.length);
    const k = kernelImage(img);
    expect(k.format).toBe(`bzImage (${name})`);
    expect(Buffer.compare(Buffer.from(k.elf), HELLO)).toBe(0);
    const m = scriptedMachine(2);
    hv = m.hv;
    const a = hv.createDomain(img, { memoryBytes: 4 << 20 });
    const b = hv.createDomain(HELLO, { memoryBytes: 4 << 20 });
    // The same layout but for the machine frames, and the same kernel bytes.
    const { l4Mfn: _a, sharedInfoMfn: _b, ...la } = a.layout;
    const { l4Mfn: _c, sharedInfoMfn: _d, ...lb } = b.layout;
    expect(la).toEqual(lb);
    const k0 = parseGuestKernel(HELLO);
    const end = Number((k0.imageEnd - k0.virtBase + 4095n) / 4096n);
    for (let pfn = a.layout.pfn.kernel; pfn < end; pfn++) expect(Buffer.compare(a.memory.page(pfn), b.memory.page(pfn)), `pfn ${pfn}`).toBe(0);
  });

  it('takes an ELF as it is, and the xz stream\'s BCJ filter is the kernel build\'s (x86)', () => {
    expect(kernelImage(HELLO)).toEqual({ elf: HELLO, format: 'elf' });
    // Without the BCJ filter's decoding the bytes would differ: the filter changed call targets in the stream.
    const plain = xzSync(Buffer.from(HELLO), { check: xzCheck.CRC32, filters: [xzFilter.LZMA2] });
    expect(Buffer.compare(xz(HELLO), plain)).not.toBe(0);
  });

  it('refuses what it cannot read, each with one message', () => {
    const good = xz(HELLO);
    expect(refused(bzImage(good, HELLO.length, { version: 0x207 }))).toMatch(/boot protocol 2\.07: 2\.08 or later is needed/);
    const cut = bzImage(good, HELLO.length).subarray(0, 3000);
    expect(refused(cut)).toMatch(/payload \(\d+ bytes at \d+\) runs past the end of the 3000-byte file/);
    expect(refused(bzImage(Uint8Array.from([0x42, 0x5a, 0x68, 0x39, 1, 2, 3]), 100))).toMatch(/bzip2-compressed; paravane reads gzip, xz and zstd/);
    expect(refused(bzImage(Uint8Array.from([9, 9, 9, 9, 9, 9, 9]), 100))).toMatch(/no compressed format known here \(it starts 090909090909\)/);
    expect(refused(bzImage(good, HELLO.length + 1))).toMatch(/xz payload holds \d+ bytes, not the \d+ it declares/);
    expect(refused(bzImage(gz(HELLO), HELLO.length - 1))).toMatch(/gzip payload cannot be decompressed/);
    expect(refused(bzImage(gz(HELLO), 2 ** 31))).toMatch(/would decompress to 2147483648 bytes, more than/);
    const corrupt = Uint8Array.from(good);
    corrupt[corrupt.length >> 1]! ^= 0xff;
    expect(refused(bzImage(corrupt, HELLO.length))).toMatch(/xz payload cannot be decompressed/);
    const notElf = new Uint8Array(5000).fill(1);
    expect(refused(bzImage(zstd(notElf), notElf.length))).toMatch(/zstd payload is not an ELF vmlinux/);
  });
});

/** A copy of `elf` with segment `i`'s p_vaddr and p_paddr set. */
function withSegment(elf: Uint8Array, i: number, vaddr: bigint, paddr: bigint): Uint8Array {
  const b = Uint8Array.from(elf);
  const v = new DataView(b.buffer);
  let seen = -1;
  const phoff = Number(v.getBigUint64(32, true));
  for (let n = 0; n < v.getUint16(56, true); n++) {
    const at = phoff + 56 * n;
    if (v.getUint32(at, true) !== 1 || ++seen !== i) continue;
    v.setBigUint64(at + 16, vaddr, true);
    v.setBigUint64(at + 24, paddr, true);
  }
  return b;
}

describe('ELF placement', () => {
  it('places each segment at p_paddr + VIRT_BASE - PADDR_OFFSET, not at p_vaddr', () => {
    const k = parseGuestKernel(HELLO);
    const vb = k.virtBase;
    expect(vb).toBe(0xffffffff80000000n);
    for (const s of k.segments) expect(s.vaddr).toBe(s.paddr + vb);
    // A segment whose p_vaddr is 0 (as Linux's per-CPU one) still goes where its p_paddr says.
    const last = k.segments.length - 1;
    const moved = parseGuestKernel(withSegment(HELLO, last, 0n, k.segments[last]!.paddr));
    expect(moved.segments.map((s) => s.vaddr)).toEqual(k.segments.map((s) => s.vaddr));
    expect(moved.imageEnd - moved.imageStart).toBe(k.imageEnd - k.imageStart);
  });
});

const DEBIAN = path.join(ROOT, 'build/linux');
const debianKernel = fs.existsSync(DEBIAN) ? fs.readdirSync(DEBIAN).find((f) => f.startsWith('vmlinuz-')) : undefined;
if (!debianKernel) console.warn(`SKIP: Debian's kernel is not fetched (${DEBIAN}: run scripts/fetch-linux.sh; .ci/run does)`);

describe.skipIf(!debianKernel)('Debian\'s stock kernel', () => {
  it('reads its xz bzImage and lays it out as Xen would: the image from 0xffffffff81000000, its per-CPU segment by p_paddr', () => {
    const k = kernelImage(fs.readFileSync(path.join(DEBIAN, debianKernel!)));
    expect(k.format).toBe('bzImage (xz)');
    const kernel = parseGuestKernel(k.elf);
    expect(kernel.virtBase).toBe(0xffffffff80000000n);
    expect(kernel.imageStart).toBe(0xffffffff81000000n);
    expect(kernel.segments.every((s) => s.vaddr === s.paddr + kernel.virtBase)).toBe(true);
    expect(kernel.notes.modStartPfn).toBe(true);
    const layout = planBootLayout(kernel, 256 << 20, 1_000_001);
    expect(layout.kernelPfn).toBe(0x1000);
    expect(layout.initrdUnmapped).toBe(true);
  });

  it('builds a domain of it with an initrd of any size, passed by PFN, and returns every frame', () => {
    const m = scriptedMachine(1, undefined, 256 << 20);
    hv = m.hv;
    const free = hv.frames.free;
    const initrd = Uint8Array.from({ length: 1_000_001 }, (_, i) => (i * 7) & 0xff);
    const d = hv.createDomain(fs.readFileSync(path.join(DEBIAN, debianKernel!)), { memoryBytes: 256 << 20, initrd, cmdline: 'console=hvc0' });
    const si = StartInfo.over(d.memory.page(d.layout.pfn.startInfo).slice().buffer);
    expect(si.flags & StartInfoFlags.SIF_MOD_START_PFN).toBe(StartInfoFlags.SIF_MOD_START_PFN);
    expect(si.mod_start).toBe(BigInt(d.layout.pfn.initrd));
    expect(si.mod_len).toBe(BigInt(Math.ceil(initrd.length / 4096) * 4096));
    const last = d.layout.pfn.initrd + Math.floor(initrd.length / 4096);
    expect(d.memory.page(last).subarray(0, initrd.length % 4096)).toEqual(initrd.subarray(initrd.length - (initrd.length % 4096)));
    expect(d.layout.entry).toBe(parseGuestKernel(kernelImage(fs.readFileSync(path.join(DEBIAN, debianKernel!))).elf).notes.entry);
    const n = hv.destroyDomain(d);
    expect(hv.frames.free).toBe(free);
    expect(n).toBeGreaterThan(65536);
  });
});
