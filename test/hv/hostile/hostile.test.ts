// Hostile guests on KVM: each guest in test/guests/hostile/ tries one
// escape through the MMU hypercalls and prints "refused <name>: <rc>". For
// every one: the domain powers off, rc is Xen's answer, a victim domain
// built first (and never run) keeps every byte and reference it had, the
// page-type audit of both domains is clean right after the attack, and
// every frame of the hostile domain returns to the pool. Needs /dev/kvm
// and the guests (`make -C test/guests/hostile OUT=../../../build/hostile`).

import { beforeAll, describe, expect, it } from 'vitest';
import { createHash } from 'node:crypto';
import { execFileSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import type { Hypervisor } from '../../../src/hv/hypervisor.js';
import { GUESTS_DIR, guestMachine } from '../../support/kvm-harness.js';
import type { Domain } from '../../../src/hv/domain/domain.js';
import { auditPageTypes } from '../../../src/hv/mm/page-audit.js';

const MIB = 1 << 20;
const HOSTILE = path.resolve(import.meta.dirname, '../../../build/hostile');
const HOSTILE_SRC = path.resolve(import.meta.dirname, '../../guests/hostile');
const VICTIM = path.join(GUESTS_DIR, 'hello.elf');
/** Xen's errno values (negated in the guest's rc). */
const EPERM = -1, EFAULT = -14, EBUSY = -16, EINVAL = -22, ENOSYS = -38, EOPNOTSUPP = -95;

interface Attack {
  /** The guest (`make -C test/guests/hostile list` names them all) and the name it prints. */
  name: string;
  /** What it tries. */
  what: string;
  /** What Xen returns, and so what the guest must print. */
  rc: number;
}

/**
 * The attacks and Xen's answers (Xen's public headers; docs/abi.md). The victim is domain 1: the
 * foreigndom attacks name it.
 */
const ATTACKS: Attack[] = [
  // PT-3: no writable mapping of a page table, whatever the level and however asked.
  { name: 'l1-rw-self-mmu', rc: EBUSY, what: 'maps its live L1 writable with mmu_update on that L1' },
  { name: 'l1-rw-self-uvm', rc: EBUSY, what: 'maps its live L1 writable with update_va_mapping' },
  { name: 'l2-rw', rc: EBUSY, what: 'maps its L2 writable' },
  { name: 'l3-rw', rc: EBUSY, what: 'maps its L3 writable' },
  { name: 'l4-rw', rc: EBUSY, what: 'maps its L4 writable' },
  { name: 'pt-ro-to-rw', rc: EBUSY, what: 'sets only the RW bit on the read-only mapping of its L4' },
  { name: 'unpin-cr3-then-map-rw', rc: EBUSY, what: 'unpins the L4 in CR3, then maps it writable' },
  { name: 'pin-l1-maps-itself-rw', rc: EBUSY, what: 'pins as L1 a frame whose entry maps it writable' },
  // ... nor through a translation the vCPU kept (0: the store reached the new frame, not the table).
  { name: 'stale-tlb-retype', rc: 0, what: 'moves an address to another frame, pins the old one as L1, stores again' },
  { name: 'stale-tlb-unhook', rc: 0, what: 'replaces the L1 under an address, pins the old frame as L1, stores again' },
  { name: 'stale-tlb-root', rc: 0, what: 'replaces its whole tree and root, pins the old frame as L1, stores again' },
  { name: 'stale-tlb-rewrite', rc: 0, what: 'has the hypervisor rewrite a former L1 as data, validates it again, stores through it' },
  // PT-4: a page mapped writable cannot become a page table.
  { name: 'pin-writable', rc: EINVAL, what: 'pins a page it maps writable, at each level' },
  { name: 'pin-console', rc: EINVAL, what: 'pins its console page, which the console backend writes, at each level' },
  { name: 'hook-writable', rc: EINVAL, what: 'hooks a page it maps writable into its L2, L3 and L4' },
  { name: 'new-baseptr-data', rc: EINVAL, what: 'loads a writable data page as its kernel root' },
  { name: 'new-user-baseptr-data', rc: EINVAL, what: 'loads a writable data page as its user root' },
  { name: 'clear-page-table', rc: EINVAL, what: 'clears its live tables with MMUEXT_CLEAR_PAGE' },
  { name: 'copy-page-into-table', rc: EINVAL, what: 'copies forged entries over its live tables with MMUEXT_COPY_PAGE' },
  // PT-5, PT-12: only the domain's own frames, never another domain's or the hypervisor's.
  { name: 'pin-l1-forged-foreign', rc: EBUSY, what: 'pins as L1 a frame mapping another domain\'s frames' },
  { name: 'map-foreign-m2p', rc: EBUSY, what: 'maps every frame the M2P gives the victim' },
  { name: 'map-past-own', rc: EBUSY, what: 'maps the 16 frames past its own' },
  { name: 'map-mfn0', rc: EBUSY, what: 'maps machine frame 0' },
  { name: 'map-unowned', rc: EBUSY, what: 'maps every frame with no M2P entry (hypervisor, free, shared_info)' },
  { name: 'map-xen-tables', rc: EBUSY, what: 'maps the tables its L4\'s hypervisor slots name' },
  { name: 'map-beyond-memory', rc: EPERM, what: 'maps a frame past machine memory (device memory)' },
  { name: 'mmu-update-foreign-frame', rc: EINVAL, what: 'aims mmu_update stores at the victim\'s frames' },
  { name: 'mmu-update-xen-frame', rc: EINVAL, what: 'aims mmu_update stores at the hypervisor\'s frames' },
  { name: 'mmu-update-beyond', rc: EINVAL, what: 'aims mmu_update stores past machine memory' },
  { name: 'unpin-foreign', rc: EINVAL, what: 'unpins the victim\'s frames and the hypervisor\'s tables' },
  { name: 'pin-beyond-memory', rc: EINVAL, what: 'pins frames past machine memory' },
  { name: 'foreigndom-mmu', rc: EPERM, what: 'calls mmu_update on behalf of the victim' },
  { name: 'foreigndom-mmuext', rc: EPERM, what: 'calls mmuext_op on behalf of the victim' },
  // PT-6: superpages, cache attributes, global above L1, reserved bits.
  { name: 'l2-pse', rc: EINVAL, what: 'sets PSE on a valid L2 entry' },
  { name: 'l3-pse', rc: EINVAL, what: 'writes a PSE entry into its L3' },
  { name: 'l4-pse', rc: EINVAL, what: 'writes a PSE entry into its L4' },
  { name: 'l1-pwt', rc: EINVAL, what: 'maps a page write-through' },
  { name: 'l1-pcd', rc: EINVAL, what: 'maps a page uncached' },
  { name: 'l1-pat', rc: EINVAL, what: 'maps a page with the PAT bit' },
  { name: 'l1-bit62', rc: EINVAL, what: 'maps a page with bit 62 set (a debug Xen\'s answer)' },
  { name: 'l2-global', rc: EINVAL, what: 'sets G on an L2 entry' },
  // PT-7: the hypervisor's L4 slots.
  { name: 'l4-xen-slots', rc: EINVAL, what: 'rewrites and clears L4 slots 256-271' },
  { name: 'l4-xen-slots-pin', rc: 0, what: 'pins an L4 with forged slots 256-271 (0: they were replaced)' },
  // PT-8: linear page tables.
  { name: 'linear-l4-rw', rc: EINVAL, what: 'points an L4 slot at the L4, writable' },
  { name: 'linear-l4-ro', rc: EINVAL, what: 'points an L4 slot at the L4, read-only' },
  { name: 'linear-l3', rc: EINVAL, what: 'points an L3 slot at the L3' },
  { name: 'linear-l2', rc: EINVAL, what: 'points an L2 slot at the L2' },
  { name: 'l2-names-l4', rc: EINVAL, what: 'points an L2 slot at the L4' },
  // PT-10: pins are not counted.
  { name: 'pin-twice', rc: EINVAL, what: 'pins its pinned L4 again' },
  // The requests themselves: commands, counts, pointers.
  { name: 'mmu-bad-cmd', rc: ENOSYS, what: 'sends mmu_update requests of types 4 to 7' },
  { name: 'huge-count-mmu', rc: EFAULT, what: 'calls mmu_update with count 0x7fffffff over a short array' },
  { name: 'huge-count-mmuext', rc: EFAULT, what: 'calls mmuext_op with count 0x7fffffff over a short array' },
  { name: 'huge-count-multicall', rc: EFAULT, what: 'calls multicall with nr_calls 0x7fffffff over a short list' },
  { name: 'bad-reqs-null', rc: EFAULT, what: 'passes request arrays at address 0' },
  { name: 'bad-reqs-noncanonical', rc: EFAULT, what: 'passes request arrays at a non-canonical address' },
  { name: 'bad-reqs-hole', rc: EFAULT, what: 'passes request arrays in the hypervisor\'s area' },
  { name: 'bad-pdone-null', rc: EFAULT, what: 'passes pdone in the first page' },
  { name: 'bad-pdone-noncanonical', rc: EFAULT, what: 'passes pdone at a non-canonical address' },
  { name: 'bad-pdone-hole', rc: EFAULT, what: 'passes pdone on its ring-0 stack' },
  { name: 'bad-pdone-l4', rc: EFAULT, what: 'passes pdone in its read-only L4' },
  { name: 'multicall-result-ro', rc: EFAULT, what: 'places a multicall list on its read-only L4' },
  { name: 'nested-multicall', rc: EINVAL, what: 'nests a multicall of the same list (the inner result)' },
  { name: 'set-ldt-misaligned', rc: EINVAL, what: 'sets an LDT at an unaligned base' },
  { name: 'set-ldt-too-many', rc: EINVAL, what: 'sets an LDT of more than 8192 entries' },
  { name: 'set-ldt-hole', rc: EINVAL, what: 'sets an LDT in the hypervisor\'s area or at a non-canonical base' },
  { name: 'uvm-noncanonical', rc: EINVAL, what: 'calls update_va_mapping at non-canonical addresses' },
  { name: 'uvm-hole', rc: EINVAL, what: 'calls update_va_mapping in the hypervisor\'s area' },
  { name: 'invlpg-noncanonical', rc: 0, what: 'asks for INVLPG at addresses not its own (0: ignored, as Xen does)' },
  // Foreign or missing frames in upper-level entries, pins, roots and page copies: -EINVAL
  // (Xen's get_page_and_type_from_mfn, get_page_from_gfn); -EBUSY and -EPERM are its L1 answers.
  { name: 'l2-foreign', rc: EINVAL, what: 'hooks the victim\'s frames into its L2' },
  { name: 'l2-beyond-memory', rc: EINVAL, what: 'hooks a frame past machine memory into its L2' },
  { name: 'pin-foreign', rc: EINVAL, what: 'pins the victim\'s frames' },
  { name: 'new-baseptr-foreign', rc: EINVAL, what: 'loads the victim\'s frames as its root' },
  { name: 'clear-page-foreign', rc: EINVAL, what: 'clears the victim\'s frames' },
  { name: 'copy-page-from-foreign', rc: EINVAL, what: 'copies the victim\'s frames into its own' },
  // -EPERM is for a foreign page-table owner; a frame not the caller's is -EINVAL.
  { name: 'machphys-foreign', rc: EINVAL, what: 'rewrites the victim\'s M2P entries' },
  { name: 'mark-super', rc: EOPNOTSUPP, what: 'marks frame 0xffffffffffe00000 a superpage (XTF xsa-167)' },
];

/** sha256 of a domain's frames (their numbers and contents). */
function checksum(hv: Hypervisor, domid: number): string {
  const h = createHash('sha256');
  for (const mfn of hv.frames.framesOf(domid)) {
    h.update(`${mfn}:`);
    h.update(hv.frames.bytes(mfn));
  }
  return h.digest('hex');
}

describe('hostile guests', () => {
  let victim: Domain;
  let victimSum: string;
  let freeBeforeVictim: number;

  beforeAll(() => {
    for (const f of [VICTIM, HOSTILE]) {
      if (!fs.existsSync(f)) throw new Error(`${f} is missing: run \`npm run build\` and \`make -C test/guests/hostile OUT=../../../build/hostile\``);
    }
  });
  const m = guestMachine({ memoryBytes: 64 * MIB });
  beforeAll(() => {
    const hv = m.hv;
    freeBeforeVictim = hv.frames.free;
    victim = hv.createDomain(fs.readFileSync(VICTIM), { name: 'victim', memoryBytes: 8 * MIB });
    victimSum = checksum(hv, victim.id);
  });

  const victimAudit = () => victim.auditView();

  it('has a guest for every attack listed, and an attack listed for every guest', () => {
    // The Makefile knows the guests: a .c file is one guest, or the source of a family of them.
    const guests = execFileSync('make', ['-s', '--no-print-directory', '-C', HOSTILE_SRC, 'list'], { encoding: 'utf8' })
      .split('\n').filter((n) => n !== '').sort();
    expect(ATTACKS.map((a) => a.name).sort()).toEqual(guests);
  });

  it('starts from a victim that is domain 1 and audits clean', () => {
    // The foreigndom attacks name domain 1 (HX_VICTIM_DOMID).
    expect(victim.id).toBe(1);
    expect(victim.state).toBe('building');
    expect(auditPageTypes(m.hv.frames, [victimAudit()])).toEqual([]);
  });

  /**
   * Runs one hostile guest: pauses it when its line arrives to audit both
   * domains while its tables are still live, then lets it power off.
   */
  async function attack(name: string) {
    const file = path.join(HOSTILE, `${name}.elf`);
    if (!fs.existsSync(file)) throw new Error(`${file} is missing: run \`make -C test/guests/hostile OUT=../../../build/hostile\``);
    const free = m.hv.frames.free;
    let out = '';
    let paused = false;
    const d: Domain = m.hv.createDomain(fs.readFileSync(file), {
      name, memoryBytes: 8 * MIB,
      console: (b) => {
        out += Buffer.from(b).toString('latin1');
        if (!paused && out.includes('\n')) {
          paused = true;
          d.pause();
        }
      },
    });
    const id = d.id;
    let end = await m.hv.run(d, { timeoutMs: 20_000 });
    let audit: string[] | undefined;
    if (end.kind === 'paused') {
      audit = auditPageTypes(m.hv.frames, [victimAudit(), d.auditView()]);
      end = await m.hv.run(d, { timeoutMs: 20_000 });
    }
    return { end, out, audit, id, free };
  }

  /** Runs `name` and checks everything. */
  async function expectRefused(name: string, rc: number): Promise<void> {
    const { end, out, audit, id, free } = await attack(name);
    // One line: refused, with Xen's errno.
    expect(out, `the console of ${name}, which ended ${JSON.stringify(end)}`).toBe(`refused ${name}: ${rc}\n`);
    // Then it powers off by itself.
    expect(end).toEqual({ kind: 'shutdown', reason: 0, reasonName: 'poweroff' });
    // Every reference of both domains is accounted for while the hostile one still lived.
    expect(audit).toEqual([]);
    // The victim is untouched, byte for byte, and still audits clean.
    expect(checksum(m.hv, victim.id)).toBe(victimSum);
    expect(auditPageTypes(m.hv.frames, [victimAudit()])).toEqual([]);
    // Every frame of the hostile domain is back in the pool.
    expect(m.hv.frames.framesOf(id)).toEqual([]);
    expect(m.hv.frames.free).toBe(free);
  }

  it.each(ATTACKS)('refuses $name ($what) with $rc', async ({ name, rc }) => {
    await expectRefused(name, rc);
  });

  it('destroys the victim and the pool is whole again', () => {
    m.hv.destroyDomain(victim);
    expect(m.hv.frames.framesOf(victim.id)).toEqual([]);
    expect(m.hv.domains.size).toBe(0);
    expect(m.hv.frames.free).toBe(freeBeforeVictim);
  });
});
