// What the guest test files share: one engine and hypervisor per describe
// block (KVM where /dev/kvm exists, else the software engine: GUEST_ENGINE
// in kvm-gate.ts), where the test guests are, and running a guest to its
// end with its console collected.

import { afterAll, beforeAll } from 'vitest';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { selectEngine } from '../../src/engine/select.js';
import type { Engine } from '../../src/engine/types.js';
import { GUEST_ENGINE } from './kvm-gate.js';
import { Hypervisor, type DomainOptions, type MachineOptions, type RunOptions } from '../../src/hv/hypervisor.js';
import type { Domain } from '../../src/hv/domain/domain.js';

/** The small assembly test guests (test/guests/elf). */
export const ELF_DIR = path.resolve(import.meta.dirname, '../guests/build/elf');
/** The guest kit's examples (`npm run build`). */
export const GUESTS_DIR = path.resolve(import.meta.dirname, '../../build/guests');

/** One of the assembly test guests, by name. */
export const elfGuest = (name: string): Buffer => fs.readFileSync(path.join(ELF_DIR, `${name}.elf`));

export interface GuestMachine {
  readonly engine: Engine;
  readonly hv: Hypervisor;
}

/**
 * Registers hooks, in the calling describe block, that make an engine
 * (`engine`, or this host's GUEST_ENGINE) and a hypervisor before its
 * tests and close them after. The fields are set once the hooks have run.
 */
export function guestMachine(opts: MachineOptions, engine: 'kvm' | 'soft' = GUEST_ENGINE): GuestMachine {
  const m = {} as { engine: Engine; hv: Hypervisor };
  beforeAll(() => {
    m.engine = selectEngine(engine);
    m.hv = new Hypervisor(m.engine, opts);
  });
  afterAll(() => {
    m.hv?.close();
    m.engine?.close();
  });
  return m;
}

export interface GuestRun {
  d: Domain;
  end: Awaited<ReturnType<Hypervisor['run']>>;
  /** Everything the guest printed. */
  out: Buffer;
}

/**
 * Creates a domain (8 MiB unless told) from `image`, lets `created` act on
 * it, and runs it to its end (20 s at most unless told; 180 s on the
 * software engine), collecting what it prints.
 */
export async function runGuest(
  hv: Hypervisor, image: Uint8Array,
  opts: Partial<DomainOptions> & Pick<RunOptions, 'timeoutMs'> & { created?: (d: Domain) => void } = {},
): Promise<GuestRun> {
  // The software engine interprets: a guest that takes seconds on KVM takes minutes there.
  const { timeoutMs = GUEST_ENGINE === 'soft' ? 180_000 : 20_000, created, ...domain } = opts;
  const chunks: Buffer[] = [];
  const d = hv.createDomain(image, { memoryBytes: 8 << 20, ...domain, console: (b) => chunks.push(Buffer.from(b)) });
  created?.(d);
  const end = await hv.run(d, { timeoutMs });
  return { d, end, out: Buffer.concat(chunks) };
}
