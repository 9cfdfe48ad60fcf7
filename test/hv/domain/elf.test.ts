// The PV kernel loader accepts a well-formed Xen PV kernel and refuses each
// kind of malformed image with a clear GuestElfError, never a crash.

import { beforeAll, describe, expect, it } from 'vitest';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { GuestElfError, parseGuestKernel } from '../../../src/hv/domain/elf.js';
import { malformedCorpus } from '../../support/malformed.js';

const MINIMAL = path.resolve(import.meta.dirname, '../../guests/build/elf/minimal.elf');

let good: Uint8Array;
beforeAll(() => {
  if (!fs.existsSync(MINIMAL)) throw new Error(`${MINIMAL} is missing: run \`npm run build\``);
  good = new Uint8Array(fs.readFileSync(MINIMAL));
});

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

  it('refuses every kernel of the malformed corpus with its own message', () => {
    const corpus = malformedCorpus(good);
    expect(corpus.length).toBeGreaterThanOrEqual(17);
    for (const m of corpus) expectRefused(m.image, m.message);
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
