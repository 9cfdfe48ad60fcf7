// The PV clock's arithmetic: vcpu_info.time as written, read back with the
// ABI's formula, and its inverse (the TSC at which a deadline is reached),
// which the timer advance's wait stub spins to.

import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { guestTime, tscAt, writeVcpuTime } from '../../../src/hv/sched/time.js';
import { VcpuInfo } from '../../../src/abi/generated/xen.js';

function info(tsc: bigint, systemTime: bigint, khz: number): DataView {
  const v = new DataView(new ArrayBuffer(VcpuInfo.SIZE));
  writeVcpuTime(v, tsc, systemTime, khz);
  return v;
}

describe('PV clock', () => {
  it('reads back the time it was stamped with, and runs at the TSC rate', () => {
    const v = info(1_000_000n, 5_000_000_000n, 2_445_400);
    expect(guestTime(v, 1_000_000n)).toBe(5_000_000_000n);
    // One second of a 2445.4 MHz TSC, within a nanosecond of rounding.
    const t = guestTime(v, 1_000_000n + 2_445_400_000n) - 5_000_000_000n;
    expect(Number(t)).toBeGreaterThanOrEqual(1e9 - 1);
    expect(Number(t)).toBeLessThanOrEqual(1e9 + 1);
  });

  it('tscAt gives the first TSC at which the guest clock reaches a time', () => {
    fc.assert(fc.property(
      fc.integer({ min: 100_000, max: 10_000_000 }), // 100 MHz to 10 GHz
      fc.bigInt({ min: 0n, max: 1n << 56n }),
      fc.bigInt({ min: 0n, max: 1n << 50n }),
      fc.bigInt({ min: 1n, max: 100_000_000_000n }), // up to 100 s ahead
      (khz, stamp, systemTime, ahead) => {
        const v = info(stamp, systemTime, khz);
        const t = systemTime + ahead;
        const tsc = tscAt(v, t);
        expect(guestTime(v, tsc)).toBeGreaterThanOrEqual(t);
        expect(guestTime(v, tsc - 1n)).toBeLessThan(t);
      },
    ), { numRuns: 2000 });
  });

  it('tscAt of a time already passed is the stamp itself', () => {
    const v = info(777n, 1000n, 3_000_000);
    expect(tscAt(v, 1000n)).toBe(777n);
    expect(tscAt(v, 10n)).toBe(777n);
  });
});
