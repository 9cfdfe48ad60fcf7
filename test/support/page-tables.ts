// Test helper: builds guest page tables in machine memory.

import type { FrameTable } from '../../src/hv/mm/frames.js';

/** Builds a page-table hierarchy in machine memory and maps pages into it. */
export class TableBuilder {
  readonly l4: number;
  constructor(readonly ft: FrameTable) {
    this.l4 = ft.allocate(1, 1)[0]!;
  }
  private entry(mfn: number, i: number): DataView {
    const p = this.ft.bytes(mfn);
    return new DataView(p.buffer, p.byteOffset + i * 8, 8);
  }
  map(va: bigint, mfn: number, flags: bigint, upper = 7n): void {
    let table = this.l4;
    for (let level = 4; level > 1; level--) {
      const e = this.entry(table, Number((va >> BigInt(12 + 9 * (level - 1))) & 0x1ffn));
      let next = e.getBigUint64(0, true);
      if (!(next & 1n)) {
        next = (BigInt(this.ft.allocate(1, 1)[0]!) << 12n) | upper;
        e.setBigUint64(0, next, true);
      }
      table = Number((next & 0x000ffffffffff000n) >> 12n);
    }
    this.entry(table, Number((va >> 12n) & 0x1ffn)).setBigUint64(0, (BigInt(mfn) << 12n) | flags, true);
  }
}
