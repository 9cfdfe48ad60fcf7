// What this host's engine offers the hypervisor: which hypercall transports
// work (measured by running probe guests, not assumed) and what one exit
// costs. Used by `paravane doctor`.

import { bootTestGuest, ioValue, LAYOUT, PORT } from './probe-guest.js';
import type { Engine, Exit } from './types.js';

export interface TransportReport {
  name: string;
  /** What the probe guest saw. */
  behaviour: string;
  usable: boolean;
}

const MSR_STAR = 0xc0000081;
const MSR_LSTAR = 0xc0000082;
const MSR_FMASK = 0xc0000084;

function firstExit(engine: Engine, guest: string, setup?: (g: ReturnType<typeof bootTestGuest>) => void): { exit: Exit; rax: bigint } {
  const g = bootTestGuest(engine, guest);
  try {
    setup?.(g);
    g.vcpu.setDeadline(process.hrtime.bigint() + 2_000_000_000n); // a probe must not hang the doctor
    let e = g.vcpu.run();
    for (let i = 0; e.kind === 'interrupted' && i < 3; i++) e = g.vcpu.run();
    const snapshot: Exit = e.kind === 'io' ? { ...e, data: new Uint8Array(e.data) } : e.kind === 'mmio' ? { ...e, data: new Uint8Array(e.data) } : e;
    return { exit: snapshot, rax: g.vcpu.regs.rax };
  } finally {
    g.destroy();
  }
}

function describeInstruction(name: string, exit: Exit, rax: bigint): TransportReport {
  if (exit.kind === 'io' && exit.port === PORT.FAULT) {
    const v = exit.data[0];
    return { name, behaviour: `raises exception ${v}${v === 13 ? ' (#GP)' : v === 6 ? ' (#UD)' : ''} into the hypervisor's IDT`, usable: v === 13 || v === 6 };
  }
  if (exit.kind === 'io' && exit.port === PORT.DONE) {
    return { name, behaviour: `no exit: execution falls through (rax = ${BigInt.asIntN(64, rax)})`, usable: false };
  }
  return { name, behaviour: `exits to the engine (${exit.kind})`, usable: true };
}

/**
 * Whether `syscall` at CPL 3 stays at CPL 3 on this host (as kvm_pvm does)
 * or enters ring 0 (ordinary hardware virtualization). Runs one probe guest.
 */
export function syscallStaysAtCpl3(engine: Engine): boolean {
  const sys = firstExit(engine, 'syscall', (g) => {
    g.vcpu.setMsrs([[MSR_STAR, 0x0010000800000000n], [MSR_LSTAR, BigInt(LAYOUT.CODE + 0x100)], [MSR_FMASK, 0x700n]]);
  }).exit;
  if (sys.kind !== 'io' || sys.port !== PORT.A) return false;
  return ((sys.data[0]! | (sys.data[1]! << 8)) & 3) === 3;
}

/**
 * Whether guest code at CPL 3 can use L4 slot 256 (0xffff800000000000), where
 * Xen maps the M2P. On this machine's kvm_pvm it cannot: an access there
 * faults whatever the guest's tables say. Runs one probe guest.
 */
export function upperHalfSlot256Usable(engine: Engine): boolean {
  const g = bootTestGuest(engine, 'upperhalf');
  try {
    const view = new DataView(g.main.buffer, g.main.byteOffset);
    view.setBigUint64(LAYOUT.PML4 + 256 * 8, BigInt(LAYOUT.PDPT) | 7n, true); // slot 256 maps like slot 0
    const e = g.vcpu.run();
    const expected = view.getUint32(LAYOUT.CODE, true);
    return e.kind === 'io' && e.port === PORT.A && ioValue(e) === expected;
  } finally {
    g.destroy();
  }
}

/** Runs the transport probe guests. */
export function probeTransports(engine: Engine): TransportReport[] {
  const out: TransportReport[] = [];
  const pio = firstExit(engine, 'exitloop').exit;
  out.push({
    name: 'hypercall page stub (port I/O exit via the TSS bitmap)',
    behaviour: pio.kind === 'io' && pio.port === PORT.A ? 'exits to the engine with the port and data' : `unexpected: ${pio.kind}`,
    usable: pio.kind === 'io' && pio.port === PORT.A,
  });
  for (const insn of ['vmcall', 'vmmcall'] as const) {
    const r = firstExit(engine, insn);
    out.push(describeInstruction(`${insn} at CPL 3`, r.exit, r.rax));
  }
  const sys = firstExit(engine, 'syscall', (g) => {
    g.vcpu.setMsrs([[MSR_STAR, 0x0010000800000000n], [MSR_LSTAR, BigInt(LAYOUT.CODE + 0x100)], [MSR_FMASK, 0x700n]]);
  }).exit;
  if (sys.kind === 'io' && sys.port === PORT.A) {
    const cs = sys.data[0]! | (sys.data[1]! << 8);
    out.push(cs & 3
      ? { name: 'syscall at CPL 3', behaviour: `jumps to LSTAR but stays at CPL 3 (CS 0x${cs.toString(16)}); the entry stub must return with jmp, not sysret`, usable: true }
      : { name: 'syscall at CPL 3', behaviour: `enters CPL 0 at LSTAR (CS 0x${cs.toString(16)})`, usable: true });
  } else {
    out.push({ name: 'syscall at CPL 3', behaviour: `unexpected: ${sys.kind}${sys.kind === 'io' ? ` on port 0x${sys.port.toString(16)}` : ''}`, usable: false });
  }
  return out;
}

/** Median cost of one port I/O exit round trip, in ns. */
export function measureExitCost(engine: Engine, exits = 2000): number {
  const g = bootTestGuest(engine, 'exitloop');
  try {
    const samples: number[] = [];
    for (let i = 0; i < exits + 100; i++) {
      const t0 = process.hrtime.bigint();
      const e = g.vcpu.run();
      if (e.kind !== 'io') throw new Error(`exit probe: unexpected ${e.kind}`);
      if (i >= 100) samples.push(Number(process.hrtime.bigint() - t0));
    }
    samples.sort((a, b) => a - b);
    return samples[Math.floor(samples.length / 2)]!;
  } finally {
    g.destroy();
  }
}
