// A kernel's symbol table (.symtab and its string table), for naming the
// addresses a trace records: the nearest function or label at or below an
// address, with the offset past it. Input: an ELF file given by the user
// (untrusted): every offset and size is range-checked; a file without a
// symbol table gives none, and a malformed one a clear error.

export interface ElfSymbol {
  name: string;
  address: bigint;
  size: bigint;
}

export class ElfSymbolsError extends Error {}

const SHT_SYMTAB = 2;
const STT_OBJECT = 1, STT_FUNC = 2, STT_NOTYPE = 0;

/** The named code and data symbols of a 64-bit little-endian ELF, sorted by address. */
export function elfSymbols(file: Uint8Array): ElfSymbol[] {
  const v = new DataView(file.buffer, file.byteOffset, file.byteLength);
  if (file.length < 64 || v.getUint32(0, false) !== 0x7f454c46 || file[4] !== 2 || file[5] !== 1) throw new ElfSymbolsError('not a 64-bit little-endian ELF file');
  const shoff = Number(v.getBigUint64(40, true)), shentsize = v.getUint16(58, true), shnum = v.getUint16(60, true);
  if (shnum === 0) return [];
  if (shentsize !== 64 || shoff + shnum * 64 > file.length) throw new ElfSymbolsError('the section headers run past the end of the file');
  const section = (i: number) => {
    const at = shoff + i * 64;
    return { type: v.getUint32(at + 4, true), offset: Number(v.getBigUint64(at + 24, true)), size: Number(v.getBigUint64(at + 32, true)), link: v.getUint32(at + 40, true) };
  };
  const out: ElfSymbol[] = [];
  for (let i = 0; i < shnum; i++) {
    const s = section(i);
    if (s.type !== SHT_SYMTAB) continue;
    if (s.link >= shnum) throw new ElfSymbolsError(`symbol table ${i} names string table ${s.link}, which does not exist`);
    const strs = section(s.link);
    if (s.offset + s.size > file.length || strs.offset + strs.size > file.length) throw new ElfSymbolsError(`symbol table ${i} runs past the end of the file`);
    for (let at = s.offset; at + 24 <= s.offset + s.size; at += 24) {
      const nameAt = v.getUint32(at, true), info = file[at + 4]!, shndx = v.getUint16(at + 6, true);
      const type = info & 0xf;
      if (shndx === 0 || nameAt === 0 || nameAt >= strs.size || (type !== STT_FUNC && type !== STT_NOTYPE && type !== STT_OBJECT)) continue;
      let end = strs.offset + nameAt;
      while (end < strs.offset + strs.size && file[end] !== 0) end++;
      const name = Buffer.from(file.subarray(strs.offset + nameAt, end)).toString('latin1');
      out.push({ name, address: v.getBigUint64(at + 8, true), size: v.getBigUint64(at + 16, true) });
    }
  }
  return out.sort((a, b) => (a.address < b.address ? -1 : a.address > b.address ? 1 : 0));
}

/** `name+0xoff` for the nearest symbol at or below `address` (within 1 MiB), else undefined. */
export function symbolize(symbols: readonly ElfSymbol[], address: bigint): string | undefined {
  let lo = 0, hi = symbols.length - 1, best = -1;
  while (lo <= hi) {
    const mid = (lo + hi) >> 1;
    if (symbols[mid]!.address <= address) { best = mid; lo = mid + 1; } else hi = mid - 1;
  }
  if (best < 0) return undefined;
  const s = symbols[best]!;
  const off = address - s.address;
  if (off >= 1n << 20n) return undefined;
  return off === 0n ? s.name : `${s.name}+0x${off.toString(16)}`;
}
