// One workload source, two kernels: the guest kit's compute and nano
// examples build as Xen PV kernels and as plain kernels with Xen's PVH
// entry (*-native.elf, PLATFORM=native). The plain ones boot under QEMU's
// emulator, as QEMU's -kernel boots a PVH kernel, and print the answers
// the PV ones print under paravane (test/hv/examples.test.ts, on KVM). Needs qemu-system-x86_64 (Debian's qemu-system-x86, which .ci/run
// installs); skipped with the reason where it is missing, failing in CI.

import { describe, expect, it } from 'vitest';
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { parseGuestKernel } from '../../src/hv/domain/elf.js';
import { NATIVE_POWEROFF_STATUS } from '../../src/bench/pvfv.js';
import { ASPACE_CHECKSUM, COMPUTE_ANSWER, CONIO_LINE, CTXSW_CHECKSUM, MMAP_CHECKSUM, NANO_HANDLED, PTEMOD_CHECKSUM, TICKS_LINE } from '../support/workloads.js';

const GUESTS = path.resolve(import.meta.dirname, '../../build/guests');
const QEMU = 'qemu-system-x86_64';
const haveQemu = spawnSync('sh', ['-c', `command -v ${QEMU}`]).status === 0;
if (!haveQemu) {
  const msg = `${QEMU} is not installed (Debian: qemu-system-x86): the plain kernels are not booted`;
  if (process.env.CI) throw new Error(`${msg} (CI must install it: see .ci/run)`);
  console.warn(`SKIP: ${msg}`);
}


function built(name: string): Buffer {
  const file = path.join(GUESTS, name);
  if (!fs.existsSync(file)) throw new Error(`${file} is missing: run \`npm run build\``);
  return fs.readFileSync(file);
}

describe('the guest kit\'s plain-kernel build', () => {
  it('makes one source into a PV kernel and a PVH-entry kernel loaded above the first megabyte', () => {
    const pv = parseGuestKernel(built('compute.elf'));
    expect(pv.notes.hypercallPage).toBeDefined();
    const elf = built('compute-native.elf');
    // The PHYS32_ENTRY note (type 18) names the 32-bit entry, a physical address inside the image.
    const text = elf.toString('latin1');
    expect(text).toContain('paravane-guest-kit-native');
    const phnum = elf.readUInt16LE(56), phoff = Number(elf.readBigUInt64LE(32));
    const loads = Array.from({ length: phnum }, (_, i) => phoff + 56 * i).filter((o) => elf.readUInt32LE(o) === 1);
    expect(loads.length).toBeGreaterThan(0);
    for (const o of loads) expect(Number(elf.readBigUInt64LE(o + 24))).toBeGreaterThanOrEqual(0x100000); // p_paddr
  });

  /** Boots a plain kernel under QEMU's emulator; its console and exit status (isa-debug-exit: 2 * value + 1, the kit writes 0x10 for a poweroff: 33). */
  function qemu(name: string): { out: string; status: number | null } {
    built(name);
    const r = spawnSync(QEMU, ['-accel', 'tcg', '-m', '64', '-nographic', '-no-reboot', '-kernel', path.join(GUESTS, name),
      '-device', 'isa-debug-exit,iobase=0xf4,iosize=0x04'], { encoding: 'latin1', timeout: 120_000, input: '' });
    expect(r.error).toBeUndefined();
    return { out: r.stdout, status: r.status };
  }

  it('runs compute as a host process too (the native-speed reference), with the same answer', () => {
    const r = spawnSync(path.join(GUESTS, 'compute-host'), [], { encoding: 'latin1', timeout: 60_000 });
    expect(r.error).toBeUndefined();
    expect(r.stdout).toContain(COMPUTE_ANSWER);
    expect(r.status).toBe(0);
  });

  it.skipIf(!haveQemu)('boots compute under QEMU\'s emulator with -kernel: the answer, and a poweroff', () => {
    const { out, status } = qemu('compute-native.elf');
    expect(out).toContain(COMPUTE_ANSWER);
    expect(out).toMatch(/compute: \d+ cycles/);
    expect(status, out.slice(-2000)).toBe(NATIVE_POWEROFF_STATUS);
  });

  it.skipIf(!haveQemu)('boots nano: its own IDT takes every divide error and int3, a user program\'s system calls return, each op timed', () => {
    const { out, status } = qemu('nano-native.elf');
    expect(out).toContain('nano: platform native');
    for (const op of ['call/ret', 'in', 'irq off/on', 'divide error', 'int3', 'syscall']) expect(out).toMatch(new RegExp(`nano: ${op.replace('/', '\\/')} \\d+ cycles per op \\(2000 ops\\)`));
    expect(out).toContain(NANO_HANDLED);
    expect(status, out.slice(-2000)).toBe(NATIVE_POWEROFF_STATUS);
  });

  it.skipIf(!haveQemu)('boots ptemod: a page table of its own rewritten singly and batched, then filled by demand faults, every update seen through it', () => {
    const { out, status } = qemu('ptemod-native.elf');
    expect(out).toContain('ptemod: platform native');
    expect(out).toMatch(/ptemod: single \d+ cycles per entry \(4096 entries\)/);
    expect(out).toMatch(/ptemod: batch \d+ cycles per entry \(4096 entries\)/);
    expect(out).toMatch(/ptemod: demand fault \d+ cycles per entry \(512 entries\)/);
    expect(out).toContain(PTEMOD_CHECKSUM);
    expect(status, out.slice(-2000)).toBe(NATIVE_POWEROFF_STATUS);
  });

  it.skipIf(!haveQemu)('boots mmap: 16, 128 and 512 pages mapped, read and unmapped in batches', () => {
    const { out, status } = qemu('mmap-native.elf');
    for (const n of [16, 128, 512]) expect(out).toMatch(new RegExp(`mmap: ${n} pages \\d+ cycles per round \\(16 rounds\\)`));
    expect(out).toContain(MMAP_CHECKSUM);
    expect(status, out.slice(-2000)).toBe(NATIVE_POWEROFF_STATUS);
  });

  it.skipIf(!haveQemu)('boots aspace: 64 address spaces built, entered, read through and taken apart', () => {
    const { out, status } = qemu('aspace-native.elf');
    expect(out).toMatch(/aspace: create-enter-destroy \d+ cycles per round \(64 rounds\)/);
    expect(out).toContain(ASPACE_CHECKSUM);
    expect(status, out.slice(-2000)).toBe(NATIVE_POWEROFF_STATUS);
  });

  it.skipIf(!haveQemu)('boots ctxsw: 1000 switches between two address spaces, each window read after its switch', () => {
    const { out, status } = qemu('ctxsw-native.elf');
    expect(out).toMatch(/ctxsw: switch \d+ cycles per switch \(1000 switches\)/);
    expect(out).toContain(CTXSW_CHECKSUM);
    expect(status, out.slice(-2000)).toBe(NATIVE_POWEROFF_STATUS);
  });

  it.skipIf(!haveQemu)('boots ticks: the PIT\'s 1 kHz tick on IRQ 0 counted against the TSC for 300 ms', () => {
    const { out, status } = qemu('ticks-native.elf');
    const m = TICKS_LINE.exec(out);
    expect(m, out.slice(-2000)).not.toBeNull();
    // A measurement, not an answer: how many come depends on the host's load (the TSC is calibrated on the
    // emulated PIT, itself on the host's clock). What must hold: ticks came, and lost is what was short.
    const [counted, expected, lost] = [Number(m![1]), Number(m![2]), Number(m![4])];
    expect(counted).toBeGreaterThan(0);
    expect(lost).toBe(Math.max(0, expected - counted));
    expect(status, out.slice(-2000)).toBe(NATIVE_POWEROFF_STATUS);
  });

  it.skipIf(!haveQemu)('boots spin: computes until 1.5 s of its clock have passed, then powers off', () => {
    const { out, status } = qemu('spin-native.elf');
    expect(out).toMatch(/spin: [1-9]\d* rounds in 1500 ms/);
    expect(status, out.slice(-2000)).toBe(NATIVE_POWEROFF_STATUS);
  });

  it.skipIf(!haveQemu)('boots conio: its 64 lines reach the serial console whole, and the cost per character', () => {
    const { out, status } = qemu('conio-native.elf');
    expect(out.split(CONIO_LINE).length - 1).toBe(64);
    expect(out).toMatch(/conio: \d+ cycles per char \(4096 chars\)/);
    expect(status, out.slice(-2000)).toBe(NATIVE_POWEROFF_STATUS);
  });
});
