// Probe guests: tiny assembled programs (native/guests/*.S) that exercise an
// engine directly, for its tests, `paravane doctor` and the exit benchmark.
// They run in 64-bit long mode at CPL 3 on identity-mapped page tables, a
// flat GDT with a TSS whose I/O bitmap opens ports 0x10-0x1f, and an IDT
// whose CPL-0 stubs report any exception on port 0xf0. Addresses match
// native/guests/layout.h. Inputs: the project's own binaries (trusted).

import * as fs from 'node:fs';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';
import type { Engine, Exit, MachineMemory, Segment, Vcpu, VirtualMachine } from './types.js';

export const GUEST_DIR = fileURLToPath(new URL('../../native/build/guests', import.meta.url));
export const LAYOUT = {
  PML4: 0x1000, PDPT: 0x2000, PD: 0x3000, PT: 0x4000, PT_DIRTY: 0xb000, GDT: 0x5000, IDT: 0x6000, STUBS: 0x7000, TSS: 0x8000,
  CODE: 0x10000, USER_STACK: 0x20000, KERNEL_STACK: 0x30000,
  DIRTY: 0x200000, RO: 0x800000, MMIO: 0x1000000,
} as const;
export const PORT = { A: 0x10, B: 0x11, C: 0x12, DONE: 0x1f, FAULT: 0xf0 } as const;
export const SLOT = { MAIN: 0, DIRTY: 1, RO: 2 } as const;
const MIB = 1 << 20;

export interface TestGuest {
  memory: MachineMemory;
  vm: VirtualMachine;
  vcpu: Vcpu;
  /** Guest-physical bytes 0..2 MiB (slot 0). */
  main: Uint8Array;
  /** The dirty-logged slot (guest-physical 2 MiB). */
  dirty: Uint8Array;
  /** The read-only slot (guest-physical 8 MiB). */
  ro: Uint8Array;
  destroy(): void;
}

export function guestBinary(name: string): Uint8Array {
  const p = path.join(GUEST_DIR, `${name}.bin`);
  if (!fs.existsSync(p)) throw new Error(`${p} is missing: run \`npm run build:native\``);
  return fs.readFileSync(p);
}

function u64(bytes: Uint8Array, at: number, v: number | bigint): void {
  new DataView(bytes.buffer, bytes.byteOffset).setBigUint64(at, BigInt(v), true);
}

function segment(selector: number, code: boolean): Segment {
  return {
    base: 0n, limit: 0xffffffff, selector, type: code ? 11 : 3, present: true, dpl: selector & 3,
    db: !code, s: true, l: code, g: true, avl: false, unusable: false,
  };
}

/** Writes page tables, GDT, IDT, TSS and the stubs into guest-physical memory at 0. */
function buildTables(m: Uint8Array): void {
  const L = LAYOUT;
  u64(m, L.PML4, L.PDPT | 7);
  u64(m, L.PDPT, L.PD | 7);
  u64(m, L.PD, L.PT | 7);
  // The dirty-logged slot is mapped with 4 KiB pages whose Dirty bits start
  // clear, so KVM maps a page writable (and logs it) only when it is written.
  u64(m, L.PD + 8 * 1, L.PT_DIRTY | 7);
  for (let i = 0; i < 512; i++) u64(m, L.PT_DIRTY + 8 * i, L.DIRTY + i * 0x1000 + 7);
  u64(m, L.PD + 8 * 4, L.RO | 0x87); // 2 MiB pages (PS), user, writable
  u64(m, L.PD + 8 * 8, L.MMIO | 0x87);
  for (let i = 1; i < 512; i++) u64(m, L.PT + 8 * i, i * 0x1000 + 7); // page 0 stays unmapped
  const gdt = [0n, 0x00af9a000000ffffn, 0x00cf92000000ffffn, 0x00cff2000000ffffn, 0x00affa000000ffffn];
  gdt.forEach((d, i) => u64(m, L.GDT + 8 * i, d));
  const limit = 0x68 + 8192;
  const tssLow = BigInt(limit & 0xffff) | (BigInt(L.TSS & 0xffffff) << 16n) | (0x89n << 40n) |
    (BigInt((limit >> 16) & 0xf) << 48n) | (BigInt((L.TSS >>> 24) & 0xff) << 56n);
  u64(m, L.GDT + 8 * 5, tssLow);
  u64(m, L.GDT + 8 * 6, 0n);
  m.fill(0, L.TSS, L.TSS + 0x68);
  u64(m, L.TSS + 4, L.KERNEL_STACK);                       // rsp0
  new DataView(m.buffer, m.byteOffset).setUint16(L.TSS + 0x66, 0x68, true); // I/O bitmap base
  m.fill(0xff, L.TSS + 0x68, L.TSS + 0x68 + 8192 + 1);     // every port closed ...
  m[L.TSS + 0x68 + 2] = 0;                                 // ... but 0x10-0x1f
  m[L.TSS + 0x68 + 3] = 0;
  for (let v = 0; v < 256; v++) {                          // interrupt gates, CPL 0
    const h = BigInt(L.STUBS + 16 * v);
    u64(m, L.IDT + 16 * v, (h & 0xffffn) | (0x08n << 16n) | (0x8en << 40n) | (((h >> 16n) & 0xffffn) << 48n));
    u64(m, L.IDT + 16 * v + 8, h >> 32n);
  }
  m.set(guestBinary('stubs'), L.STUBS);
}

/** Creates memory, a VM with three slots and one vCPU ready to run `name` at CPL 3. */
export function bootTestGuest(engine: Engine, name: string): TestGuest {
  const memory = engine.createMemory(12 * MIB);
  const vm = engine.createVm();
  try {
    vm.mapMemory({ slot: SLOT.MAIN, guestPhys: 0, memory, offset: 0, size: 2 * MIB });
    vm.mapMemory({ slot: SLOT.DIRTY, guestPhys: LAYOUT.DIRTY, memory, offset: 2 * MIB, size: 2 * MIB, logDirty: true });
    vm.mapMemory({ slot: SLOT.RO, guestPhys: LAYOUT.RO, memory, offset: 8 * MIB, size: 2 * MIB, readonly: true });
    const bytes = memory.chunks[0]!.bytes;
    const main = bytes.subarray(0, 2 * MIB);
    buildTables(main);
    main.set(guestBinary(name), LAYOUT.CODE);
    const vcpu = vm.createVcpu(0);
    const s = vcpu.getSpecialRegisters();
    const data = segment(0x1b, false);
    Object.assign(s, {
      cs: segment(0x23, true), ds: data, es: data, fs: data, gs: data, ss: data,
      tr: { base: BigInt(LAYOUT.TSS), limit: 0x68 + 8192, selector: 0x28, type: 11, present: true, dpl: 0, db: false, s: false, l: false, g: false, avl: false, unusable: false },
      gdt: { base: BigInt(LAYOUT.GDT), limit: 7 * 8 - 1 },
      idt: { base: BigInt(LAYOUT.IDT), limit: 256 * 16 - 1 },
      cr0: 0x80010033n, cr3: BigInt(LAYOUT.PML4), cr4: 0x620n, efer: 0x501n,
    });
    vcpu.setSpecialRegisters(s);
    vcpu.regs.rip = BigInt(LAYOUT.CODE);
    vcpu.regs.rsp = BigInt(LAYOUT.USER_STACK);
    vcpu.regs.rflags = 2n;
    return {
      memory, vm, vcpu, main,
      dirty: bytes.subarray(2 * MIB, 4 * MIB), ro: bytes.subarray(8 * MIB, 10 * MIB),
      destroy() { vm.destroy(); memory.close(); },
    };
  } catch (e) {
    vm.destroy();
    memory.close();
    throw e;
  }
}

/** Runs until an exit other than `interrupted`, failing on a guest exception. */
export function runToExit(vcpu: Vcpu): Exit {
  for (;;) {
    const e = vcpu.run();
    if (e.kind === 'interrupted') continue;
    if (e.kind === 'io' && e.port === PORT.FAULT) throw new Error(`guest exception, vector ${e.data[0]} at rip 0x${vcpu.regs.rip.toString(16)}`);
    return e;
  }
}

export function ioValue(e: Exit): number {
  if (e.kind !== 'io') throw new Error(`expected an I/O exit, got ${e.kind}`);
  let v = 0;
  for (let i = e.data.length - 1; i >= 0; i--) v = v * 256 + e.data[i]!;
  return v;
}
