// The PV kernel loader accepts a well-formed Xen PV kernel and refuses each
// kind of malformed image with a clear GuestElfError, never a crash.

import { beforeAll, describe, expect, it } from 'vitest';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { GuestElfError, parseGuestKernel } from '../../src/hv/elf.js';

const MINIMAL = path.resolve(import.meta.dirname, '../guests/build/elf/minimal.elf');

let good: Uint8Array;
beforeAll(() => {
  if (!fs.existsSync(MINIMAL)) throw new Error(`${MINIMAL} is missing: run \`npm run build\``);
  good = new Uint8Array(fs.readFileSync(MINIMAL));
});

/** A copy of the good image with some bytes changed. */
function mutate(f: (b: Uint8Array, v: DataView) => void): Uint8Array {
  const b = new Uint8Array(good);
  f(b, new DataView(b.buffer));
  return b;
}

const PHOFF = 32;
const phdr = (v: DataView, i: number) => Number(v.getBigUint64(PHOFF, true)) + 56 * i;

function expectRefused(image: Uint8Array, message: RegExp | string): void {
  let err: unknown;
  try { parseGuestKernel(image); } catch (e) { err = e; }
  expect(err).toBeInstanceOf(GuestElfError);
  expect((err as GuestElfError).code).toBe('ERR_GUEST_ELF_INVALID');
  expect((err as Error).message).toMatch(message);
}

describe('PV kernel ELF loader', () => {
  it('reads the segments and Xen notes of a well-formed kernel', () => {
    const k = parseGuestKernel(good);
    expect(k.entry).toBe(0x100000n);
    expect(k.virtBase).toBe(0n);
    expect(k.imageStart).toBe(0x100000n);
    expect(k.segments).toHaveLength(1);
    expect(k.notes.guestOs).toBe('paravane-test');
    expect(k.notes.loader).toBe('generic');
    expect(k.notes.xenVersion).toBe('xen-3.0');
    expect(k.notes.hypercallPage).toBe(0x101000n);
    expect(k.notes.features).toEqual(['!writable_page_tables', 'pae_pgdir_above_4gb']);
  });

  it('refuses truncated images', () => {
    expectRefused(good.subarray(0, 40), /too short for an ELF header/);
    expectRefused(good.subarray(0, 100), /program headers run past the end/);
    expectRefused(good.subarray(0, 0x1800), /runs past the end of the .*-byte file/);
  });

  it('refuses the wrong class, byte order, type or machine', () => {
    expectRefused(mutate((b) => { b[0] = 0; }), /bad magic/);
    expectRefused(mutate((b) => { b[4] = 1; }), /not ELFCLASS64/);
    expectRefused(mutate((b) => { b[5] = 2; }), /not little-endian/);
    expectRefused(mutate((_, v) => { v.setUint16(16, 1, true); }), /not an executable/);
    expectRefused(mutate((_, v) => { v.setUint16(18, 3, true); }), /machine 3 is not x86-64/);
  });

  it('refuses overlapping, huge, inconsistent or non-canonical segments', () => {
    // Turn the PT_NOTE header into a second PT_LOAD over the same addresses.
    expectRefused(mutate((_, v) => { v.setUint32(phdr(v, 1), 1, true); }), /overlap/);
    expectRefused(mutate((_, v) => { v.setBigUint64(phdr(v, 0) + 40, 1n << 40n, true); }), /memory size 0x10000000000 is larger/);
    expectRefused(mutate((_, v) => { v.setBigUint64(phdr(v, 0) + 32, v.getBigUint64(phdr(v, 0) + 40, true) + 8n, true); }), /more file bytes/);
    expectRefused(mutate((_, v) => { v.setBigUint64(phdr(v, 0) + 16, 0x0000800000000000n, true); }), /canonical/);
    expectRefused(mutate((_, v) => { v.setBigUint64(phdr(v, 0) + 8, 1n << 50n, true); }), /file offset 0x4000000000000 is larger/);
  });

  it('refuses an image without Xen notes or with the wrong ones', () => {
    const noteOff = (v: DataView) => Number(v.getBigUint64(phdr(v, 1) + 8, true));
    const renameOwners = (b: Uint8Array) => {
      for (let i = 0; i + 3 < b.length; i++) if (b[i] === 0x58 && b[i + 1] === 0x65 && b[i + 2] === 0x6e && b[i + 3] === 0) b[i + 1] = 0x79;
    };
    expectRefused(mutate((b) => renameOwners(b)), /no Xen ELF notes/);
    // "xen-3.0" becomes "xen-2.0".
    expectRefused(mutate((b, v) => {
      const off = noteOff(v);
      const at = b.subarray(off).findIndex((_, i) => String.fromCharCode(...b.subarray(off + i, off + i + 7)) === 'xen-3.0');
      b[off + at + 4] = 0x32;
    }), /"xen-3\.0" is required/);
    expectRefused(mutate((_, v) => { v.setUint32(noteOff(v) + 4, 0x10000, true); }), /runs past its segment/);
  });

  it('refuses an entry point outside the image', () => {
    expectRefused(mutate((_, v) => { v.setBigUint64(24, 0xdead0000n, true); }), /entry point 0xdead0000 lies outside/);
  });

  it('never throws anything but GuestElfError on random corruption', () => {
    let seed = 12345;
    const rand = () => (seed = (seed * 1103515245 + 12345) & 0x7fffffff);
    for (let n = 0; n < 500; n++) {
      const b = new Uint8Array(good.subarray(0, 0x6000));
      for (let k = 0; k < 8; k++) b[rand() % 0x200 < 0x100 ? rand() % 0x100 : rand() % b.length] = rand() & 0xff;
      try { parseGuestKernel(b); } catch (e) { expect(e).toBeInstanceOf(GuestElfError); }
    }
  });
});
