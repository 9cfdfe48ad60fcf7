// A corpus of malformed PV kernels made from a good one: each entry is one
// defect the loader must refuse, with the message it must give. Shared by
// the loader tests and the `paravane run` exit-status tests.

export interface Malformed {
  name: string;
  image: Uint8Array;
  message: RegExp;
}

const PHOFF = 32;
const phdr = (v: DataView, i: number): number => Number(v.getBigUint64(PHOFF, true)) + 56 * i;

export function malformedCorpus(good: Uint8Array): Malformed[] {
  const mutate = (f: (b: Uint8Array, v: DataView) => void): Uint8Array => {
    const b = new Uint8Array(good);
    f(b, new DataView(b.buffer));
    return b;
  };
  const noteOff = (v: DataView): number => Number(v.getBigUint64(phdr(v, 1) + 8, true));
  const renameOwners = (b: Uint8Array): void => {
    for (let i = 0; i + 3 < b.length; i++) if (b[i] === 0x58 && b[i + 1] === 0x65 && b[i + 2] === 0x6e && b[i + 3] === 0) b[i + 1] = 0x79;
  };
  return [
    { name: 'truncated-header', image: good.subarray(0, 40), message: /too short for an ELF header/ },
    { name: 'truncated-phdrs', image: good.subarray(0, 100), message: /program headers run past the end/ },
    { name: 'truncated-segment', image: good.subarray(0, 0x1800), message: /runs past the end of the .*-byte file/ },
    { name: 'bad-magic', image: mutate((b) => { b[0] = 0; }), message: /bad magic/ },
    { name: 'elfclass32', image: mutate((b) => { b[4] = 1; }), message: /not ELFCLASS64/ },
    { name: 'big-endian', image: mutate((b) => { b[5] = 2; }), message: /not little-endian/ },
    { name: 'relocatable', image: mutate((_, v) => { v.setUint16(16, 1, true); }), message: /not an executable/ },
    { name: 'wrong-machine', image: mutate((_, v) => { v.setUint16(18, 3, true); }), message: /machine 3 is not x86-64/ },
    // The PT_NOTE header turned into a second PT_LOAD over the same addresses.
    { name: 'overlapping-segments', image: mutate((_, v) => { v.setUint32(phdr(v, 1), 1, true); }), message: /overlap/ },
    { name: 'huge-segment', image: mutate((_, v) => { v.setBigUint64(phdr(v, 0) + 40, 1n << 40n, true); }), message: /memory size 0x10000000000 is larger/ },
    { name: 'filesz-over-memsz', image: mutate((_, v) => { v.setBigUint64(phdr(v, 0) + 32, v.getBigUint64(phdr(v, 0) + 40, true) + 8n, true); }), message: /more file bytes/ },
    // A segment goes at p_paddr + VIRT_BASE - PADDR_OFFSET (the test kernel has neither note): p_paddr decides.
    { name: 'non-canonical-segment', image: mutate((_, v) => { v.setBigUint64(phdr(v, 0) + 24, 0x0000800000000000n, true); }), message: /canonical/ },
    { name: 'huge-offset', image: mutate((_, v) => { v.setBigUint64(phdr(v, 0) + 8, 1n << 50n, true); }), message: /file offset 0x4000000000000 is larger/ },
    { name: 'no-xen-notes', image: mutate((b) => renameOwners(b)), message: /no Xen ELF notes/ },
    {
      name: 'xen-2.0', // "xen-3.0" becomes "xen-2.0"
      image: mutate((b, v) => {
        const off = noteOff(v);
        const at = b.subarray(off).findIndex((_, i) => String.fromCharCode(...b.subarray(off + i, off + i + 7)) === 'xen-3.0');
        b[off + at + 4] = 0x32;
      }),
      message: /"xen-3\.0" is required/,
    },
    { name: 'note-past-segment', image: mutate((_, v) => { v.setUint32(noteOff(v) + 4, 0x10000, true); }), message: /runs past its segment/ },
    { name: 'entry-outside', image: mutate((_, v) => { v.setBigUint64(24, 0xdead0000n, true); }), message: /entry point 0xdead0000 lies outside/ },
  ];
}
