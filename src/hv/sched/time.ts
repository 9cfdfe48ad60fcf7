// Time as Xen gives it to PV guests (Xen's public headers; docs/abi.md): system
// time is nanoseconds of the host's CLOCK_MONOTONIC since the hypervisor
// started (one clock for every domain, so timestamps compare across
// domains); each vCPU's vcpu_info.time maps its TSC onto it (tsc_timestamp,
// system_time, tsc_to_system_mul, tsc_shift, with the odd/even version
// protocol), and shared_info's wallclock (wc_sec, wc_nsec, wc_version) is
// the UTC time at system time 0. With a constant-rate TSC the mapping is
// written once per vCPU and never drifts from the host clock: a guest reads
// time with rdtsc, no exit, and no tick is ever lost.

import { SharedInfo, VcpuInfo, VcpuTimeInfo } from '../../abi/generated/xen.js';
import { realHostClock, type HostClock } from './host-clock.js';

/** vcpu_time_info offsets inside vcpu_info.time. */
const T = VcpuTimeInfo.OFFSETS;
/** XEN_PVCLOCK_TSC_STABLE_BIT: the TSC runs at one rate on every vCPU. */
const TSC_STABLE = 1;

/** The hypervisor's system time. */
export class SystemClock {
  private readonly base: bigint;
  /** UTC at system time 0, in ns. */
  readonly wallAtZero: bigint;

  /** `host` is the host's monotonic clock (the real one, or a test's). */
  constructor(readonly host: HostClock = realHostClock) {
    this.base = host.now();
    this.wallAtZero = BigInt(Date.now()) * 1_000_000n;
  }

  /** Nanoseconds since the hypervisor started. */
  now(): bigint {
    return this.host.now() - this.base;
  }

  /** The system time of host monotonic time `ns` (process.hrtime). */
  fromHost(ns: bigint): bigint {
    return ns - this.base;
  }

  /** The host monotonic time (process.hrtime) of system time `t`. */
  hostTime(t: bigint): bigint {
    return t + this.base;
  }

  /** Writes the wallclock fields of a shared_info page. */
  writeWallclock(sharedInfo: Uint8Array): void {
    const v = new DataView(sharedInfo.buffer, sharedInfo.byteOffset, SharedInfo.SIZE);
    const version = v.getUint32(SharedInfo.OFFSETS.wc_version, true);
    v.setUint32(SharedInfo.OFFSETS.wc_version, (version | 1) >>> 0, true);
    const sec = this.wallAtZero / 1_000_000_000n;
    v.setUint32(SharedInfo.OFFSETS.wc_sec, Number(sec & 0xffffffffn), true);
    v.setUint32(SharedInfo.OFFSETS.wc_nsec, Number(this.wallAtZero % 1_000_000_000n), true);
    v.setUint32(SharedInfo.OFFSETS.wc_sec_hi, Number(sec >> 32n), true);
    v.setUint32(SharedInfo.OFFSETS.wc_version, ((version | 1) + 1) >>> 0, true);
  }
}

/**
 * tsc_to_system_mul and tsc_shift for a TSC of `khz`: ns = ((tsc << shift)
 * * mul) >> 32, with mul in [2^31, 2^32) for precision.
 */
export function tscScale(khz: number): { mul: number; shift: number } {
  // ns per tick = 1e6 / khz; mul = ns_per_tick * 2^32 / 2^shift.
  let shift = 0;
  let mul = (1_000_000 * 2 ** 32) / khz;
  while (mul >= 2 ** 32) { mul /= 2; shift++; }
  while (mul < 2 ** 31) { mul *= 2; shift--; }
  return { mul: Math.floor(mul), shift };
}

/** Writes vcpu_info.time: guest TSC `tsc` was read at system time `systemTime`. */
export function writeVcpuTime(vcpuInfo: DataView, tsc: bigint, systemTime: bigint, khz: number): void {
  const at = VcpuInfo.OFFSETS.time;
  const { mul, shift } = tscScale(khz);
  const version = vcpuInfo.getUint32(at + T.version, true);
  vcpuInfo.setUint32(at + T.version, (version | 1) >>> 0, true); // odd: being updated
  vcpuInfo.setBigUint64(at + T.tsc_timestamp, tsc, true);
  vcpuInfo.setBigUint64(at + T.system_time, systemTime, true);
  vcpuInfo.setUint32(at + T.tsc_to_system_mul, mul, true);
  vcpuInfo.setInt8(at + T.tsc_shift, shift);
  vcpuInfo.setUint8(at + T.flags, TSC_STABLE);
  vcpuInfo.setUint32(at + T.version, ((version | 1) + 1) >>> 0, true); // even again
}

/** The guest's reading of its clock at TSC `tsc`, as the ABI defines it (for tests). */
export function guestTime(vcpuInfo: DataView, tsc: bigint): bigint {
  const at = VcpuInfo.OFFSETS.time;
  let delta = tsc - vcpuInfo.getBigUint64(at + T.tsc_timestamp, true);
  const shift = vcpuInfo.getInt8(at + T.tsc_shift);
  delta = shift >= 0 ? delta << BigInt(shift) : delta >> BigInt(-shift);
  return vcpuInfo.getBigUint64(at + T.system_time, true) + ((delta * BigInt(vcpuInfo.getUint32(at + T.tsc_to_system_mul, true))) >> 32n);
}

/**
 * The first guest TSC at which the guest's clock (guestTime, the ABI's
 * formula over its vcpu_info.time) reads `t` or later.
 */
export function tscAt(vcpuInfo: DataView, t: bigint): bigint {
  const at = VcpuInfo.OFFSETS.time;
  const stamp = vcpuInfo.getBigUint64(at + T.tsc_timestamp, true);
  const since = t - vcpuInfo.getBigUint64(at + T.system_time, true);
  if (since <= 0n) return stamp;
  const mul = BigInt(vcpuInfo.getUint32(at + T.tsc_to_system_mul, true));
  const shift = vcpuInfo.getInt8(at + T.tsc_shift);
  // Invert ns = ((delta <</>> shift) * mul) >> 32, rounding up, then step
  // past any rounding the guest's truncations add.
  const scaled = ((since << 32n) + mul - 1n) / mul;
  let tsc = stamp + (shift >= 0 ? (scaled + (1n << BigInt(shift)) - 1n) >> BigInt(shift) : scaled << BigInt(-shift));
  while (guestTime(vcpuInfo, tsc) < t) tsc++;
  return tsc;
}

/** The earlier of two times, either of which may be absent (no limit). */
export function earlier(a: bigint | undefined, b: bigint | undefined): bigint | undefined {
  if (a === undefined) return b;
  if (b === undefined) return a;
  return a < b ? a : b;
}

/** A vCPU's timers (set_timer_op / VCPUOP singleshot and periodic), in system time. */
export class VcpuTimers {
  /** Single-shot deadline, 0 = none. */
  single = 0n;
  /** Periodic period (0 = stopped) and next expiry. */
  period = 0n;
  next = 0n;

  /** `changed` hears of every change a guest makes (setSingle, setPeriodic). */
  constructor(private readonly changed: () => void = () => {}) {}

  /** The single-shot deadline (system time; 0: none). */
  setSingle(at: bigint): void {
    this.single = at;
    this.changed();
  }

  /** The periodic timer: every `period` ns from `now` (0: stopped). */
  setPeriodic(period: bigint, now: bigint): void {
    this.period = period;
    this.next = now + period;
    this.changed();
  }

  /** The earliest expiry, or undefined. */
  deadline(): bigint | undefined {
    return earlier(this.single || undefined, this.period ? this.next : undefined);
  }

  /** Expires what is due at `now`: returns whether VIRQ_TIMER should be raised. */
  expire(now: bigint): boolean {
    let fire = false;
    if (this.single && now >= this.single) {
      this.single = 0n;
      fire = true;
    }
    if (this.period && now >= this.next) {
      // One event for any number of missed periods (the VIRQ is one pending bit), as Xen's.
      this.next += ((now - this.next) / this.period + 1n) * this.period;
      fire = true;
    }
    return fire;
  }
}
