// The hypervisor's part of every guest address space: L4 slots 256-271
// (HYPERVISOR_VIRT_START to HYPERVISOR_VIRT_END), which the guest can
// neither see into (supervisor-only pages) nor change (the slots are
// filled by the hypervisor). They hold:
//
//   slot 256  0xffff800000000000  the M2P table, read-only to the guest (Xen's address)
//   slot 258  0xffff810000000000  the M2P again, for hosts where slot 256 is unusable
//   slot 257  0xffff808000000000  per domain: each vCPU's GDT, TSS, ring-0 stack
//                                  and timer-advance wait page
//             0xffff808000200000  shared by all domains: the IDT, the ring-0
//                                  exception stubs and the syscall (LSTAR) stub
//
// The guest kernel runs at CPL 3 with Xen's flat selectors (0xe033 code,
// 0xe02b stack), which live in the hypervisor's GDT page at 0xe000, where
// Xen puts them (FIRST_RESERVED_GDT_ENTRY = 7168).
//
// How a guest reaches the hypervisor (docs/design.md, "Hypercall entry"):
//   - hypercall page stubs: `mov $nr,%eax; out %al,$HYPERCALL_PORT; ret`,
//     a port-I/O exit through the TSS I/O bitmap (the cheapest exit here);
//   - `syscall`: on this host it stays at CPL 3 and jumps to LSTAR, whose
//     stub does `out %al,$SYSCALL_PORT` and returns like sysret would; on
//     hardware where syscall enters ring 0 the stub ends with sysretq;
//   - `vmcall`/`vmmcall`: CPL 3 raises #GP into the IDT; every IDT gate
//     leads to a ring-0 stub that executes `hlt` (an exit that changes no
//     register), the core reads the exception frame from the vCPU's ring-0
//     stack, recognises the opcode, and resumes through the stub's iretq.
// Inputs: none from guests; machine frames from the frame table.

import { FrameTable, OWNER_XEN, PAGE_SIZE } from './frames.js';
import { Hypercall } from '../../abi/generated/xen.js';
import { PTE } from './pte.js';

export const HYPERVISOR_VIRT_START = 0xffff800000000000n;
export const HYPERVISOR_VIRT_END = 0xffff880000000000n;
export const FIRST_RESERVED_SLOT = 256;
export const LAST_RESERVED_SLOT = 271;
export const M2P_VIRT_START = 0xffff800000000000n;
/**
 * A second mapping of the M2P, in slot 258: on this machine's kvm_pvm guest
 * code cannot use slot 256 (an access faults whatever the tables say), so
 * XENMEM_machphys_mapping reports this one there (see upperHalfSlot256Usable).
 */
export const M2P_ALT_VIRT_START = 0xffff810000000000n;
/** Base of the per-domain area (slot 257). */
export const PERDOMAIN_VIRT = 0xffff808000000000n;
/** Each vCPU's block inside the per-domain area. */
export const VCPU_BLOCK = 0x20000;
export const MAX_VCPUS = 16;
/** Each vCPU's frames in the per-domain area, in their order (index of the first of each). */
const VCPU_FRAME = { GDT: 0, TSS: 1, STACK: 4, WAIT: 5 } as const;
const PER_VCPU_FRAMES = 6;
/** Offsets inside a vCPU block. GDT pages 0-13 are the guest's (zero for now), page 14 is Xen's. */
export const BLOCK = { GDT: 0, XEN_GDT_PAGE: 0xe000, TSS: 0xf000, STACK: 0x13000, STACK_TOP: 0x14000, WAIT: 0x14000 } as const;
/** The shared area: IDT, ring-0 stubs, LSTAR stub. */
export const SHARED_VIRT = PERDOMAIN_VIRT + 0x200000n;
export const IDT_VIRT = SHARED_VIRT;
export const STUBS_VIRT = SHARED_VIRT + 0x1000n;
export const LSTAR_VIRT = SHARED_VIRT + 0x2000n;
/** Bytes per ring-0 exception stub. */
export const STUB_SIZE = 16;

/** Xen's selectors (FLAT_RING3_*), the ring-0 ones and the TSS. */
export const SEL = { HV_CS: 0xe008, HV_DS: 0xe010, CS32: 0xe023, DS: 0xe02b, CS64: 0xe033, TSS: 0xe040 } as const;
/** GDT limit covering Xen's reserved entries up to the TSS descriptor. */
export const GDT_LIMIT = SEL.TSS + 16 - 1;

/** The hypercall-page stubs' one-byte `out`. */
export const HYPERCALL_PORT = 0xe0;
/** The LSTAR stub's one-byte `out`. */
export const SYSCALL_PORT = 0xe4;
/** Ports the TSS I/O bitmap opens to the guest; every other port is closed. */
const OPEN_PORTS = [HYPERCALL_PORT, SYSCALL_PORT];

export const TSS_SIZE = 0x68;
export const IOMAP_BYTES = 8192;
/** TSS limit: header, I/O bitmap and its 0xff terminator byte. */
export const TSS_LIMIT = TSS_SIZE + IOMAP_BYTES;

/** MSR numbers the vCPU setup writes. */
export const MSR = { STAR: 0xc0000081, LSTAR: 0xc0000082, CSTAR: 0xc0000083, FMASK: 0xc0000084, FS_BASE: 0xc0000100, GS_BASE: 0xc0000101, KERNEL_GS_BASE: 0xc0000102 } as const;
export const EFER = 0xd01n;  // LME | LMA | SCE | NXE
export const CR0 = 0x80010033n; // PG | WP | NE | ET | MP | PE
export const CR4 = 0x620n;      // PAE | OSFXSR | OSXMMEXCPT

const UPPER = PTE.P | PTE.RW | PTE.US | PTE.A | PTE.D;

/** Vectors that push an error code. */
const ERROR_CODE_VECTORS = new Set([8, 10, 11, 12, 13, 14, 17, 21, 29, 30]);

/**
 * Hypercall page stub `nr`: mov $nr,%eax; out %al,$HYPERCALL_PORT; ret.
 * Like Xen's stubs it preserves every register but rax, which the core
 * writes with the result. (Returning the result as an `in`'s data instead,
 * to spare the register write-back, measured the same here: an `in` exit
 * costs that much more than an `out`.)
 */
export function hypercallStub(nr: number): number[] {
  if (nr === Hypercall.HYPERVISOR_iret) return IRET_STUB;
  return [0xb8, nr & 0xff, (nr >> 8) & 0xff, 0, 0, 0xe6, HYPERCALL_PORT, 0xc3];
}

/**
 * The iret slot, which guests jump to (it does not return), as Xen's:
 * push %rcx; push %r11; push %rax; mov $23,%eax; out %al,$HYPERCALL_PORT;
 * ud2. The pushes complete struct iret_context on the guest's stack (the
 * guest pushed flags and the five-word frame); the core resumes that frame.
 */
const IRET_STUB = [0x51, 0x41, 0x53, 0x50, 0xb8, Hypercall.HYPERVISOR_iret, 0, 0, 0, 0xe6, HYPERCALL_PORT, 0x0f, 0x0b];

/**
 * The LSTAR stub, where `syscall` lands. rcx = return rip, r11 = rflags.
 * On a host whose `syscall` stays at CPL 3 (this one):
 *   out %al,$SYSCALL_PORT        the hypercall; the core puts the result in rax
 *   push %r11; popfq; jmp *%rcx  return as sysret would (sysret #GPs at CPL 3)
 * On a host where `syscall` enters ring 0 the stub is `hlt` instead: the
 * domain is crashed with the reason. Ring-0 code here would run on the
 * guest's own stack, at an address the guest chose, so none is run.
 */
export const LSTAR_STUB_CPL3 = [0xe6, SYSCALL_PORT, 0x41, 0x53, 0x9d, 0xff, 0xe1];
/** Where in LSTAR_STUB_CPL3 the return (`jmp *%rcx`) is: it faults if the return rip is not canonical. */
export const LSTAR_RETURN_OFFSET = 5;
export const LSTAR_STUB_REFUSE = [0xf4, 0xeb, 0xfd];
/** CSTAR (32-bit `syscall`): never a hypercall path; halts (ring 0) or faults (CPL 3). */
export const CSTAR_OFFSET = 0x20;
/** RFLAGS bits `syscall` clears: TF, DF, NT, AC (IF is the guest's; popfq at CPL 3 could not restore it). */
export const SYSCALL_FMASK = 0x44500n;

/**
 * Where the wait stub's data lives in its page (the stub is at offset 0):
 * the guest TSC to wait for, the AL value that recreates the guest's OF
 * (0x7f: set, 0: clear) and the AH value that recreates SF ZF AF PF CF
 * (sahf), then the guest's rax, rdx and the rip to resume at.
 */
export const WAIT = { DEADLINE: 0x800, OF_AL: 0x808, FLAGS_AH: 0x809, RAX: 0x810, RDX: 0x818, TARGET: 0x820 } as const;

/** A 32-bit rip-relative displacement from the instruction ending at `end` to `target`. */
function disp(end: number, target: number): number[] {
  const d = target - end;
  return [d & 0xff, (d >> 8) & 0xff, (d >> 16) & 0xff, (d >> 24) & 0xff];
}

/**
 * The timer-advance wait stub (a user-executable, read-only page of each
 * vCPU; see PvVcpu.waitInGuest): runs at CPL 3 in the guest's kernel mode,
 * spins on the TSC until the deadline, puts back the guest's arithmetic
 * flags, rax and rdx, and jumps to where the guest resumes. It writes no
 * memory and leaves every other register alone.
 *
 *   1: pause; rdtsc; shl $32,%rdx; or %rdx,%rax
 *      cmp DEADLINE(%rip),%rax; jb 1b
 *      mov OF_AL(%rip),%al; add $1,%al          OF as the guest had it
 *      mov FLAGS_AH(%rip),%ah; sahf             SF ZF AF PF CF
 *      mov RAX(%rip),%rax; mov RDX(%rip),%rdx
 *      jmp *TARGET(%rip)
 */
export const WAIT_STUB = [
  0xf3, 0x90, 0x0f, 0x31, 0x48, 0xc1, 0xe2, 0x20, 0x48, 0x09, 0xd0,
  0x48, 0x3b, 0x05, ...disp(0x12, WAIT.DEADLINE), 0x72, 0xec,
  0x8a, 0x05, ...disp(0x1a, WAIT.OF_AL), 0x04, 0x01,
  0x8a, 0x25, ...disp(0x22, WAIT.FLAGS_AH), 0x9e,
  0x48, 0x8b, 0x05, ...disp(0x2a, WAIT.RAX),
  0x48, 0x8b, 0x15, ...disp(0x31, WAIT.RDX),
  0xff, 0x25, ...disp(0x37, WAIT.TARGET),
];

/** Ring-0 exception stub for `vector`: hlt; [add $8,%rsp;] iretq. */
function exceptionStub(vector: number): number[] {
  return ERROR_CODE_VECTORS.has(vector) ? [0xf4, 0x48, 0x83, 0xc4, 0x08, 0x48, 0xcf] : [0xf4, 0x48, 0xcf];
}

export function hasErrorCode(vector: number): boolean {
  return ERROR_CODE_VECTORS.has(vector);
}

function setU64(page: Uint8Array, at: number, v: bigint): void {
  new DataView(page.buffer, page.byteOffset, page.length).setBigUint64(at, v, true);
}

export function readU64(page: Uint8Array, at: number): bigint {
  return new DataView(page.buffer, page.byteOffset, page.length).getBigUint64(at, true);
}

/** Entry pointing at frame `mfn` with `flags`. */
export function pte(mfn: number, flags: bigint): bigint {
  return (BigInt(mfn) << 12n) | flags;
}

/** The 16-byte TSS descriptor for a TSS at `base` (type 0xb: busy 64-bit TSS). */
function tssDescriptor(base: bigint): [bigint, bigint] {
  const limit = BigInt(TSS_LIMIT);
  const low = (limit & 0xffffn) | ((base & 0xffffffn) << 16n) | (0x8bn << 40n) |
    (((limit >> 16n) & 0xfn) << 48n) | (((base >> 24n) & 0xffn) << 56n);
  return [low, base >> 32n];
}

/**
 * The frames shared by all domains: the M2P mapping tables, the IDT, the
 * stub pages and a zero page. Built once per machine.
 */
export class XenSpace {
  /** L3 table for slot 256 (the M2P, read-only, user). */
  readonly m2pL3: number;
  readonly zero: number;
  /** L1 table mapping the IDT and stub pages; hooked into every domain's slot-257 L2. */
  readonly sharedL1: number;
  private readonly frames: number[] = [];

  /**
   * `syscallAtCpl3`: whether this host's `syscall` stays at CPL 3 (see
   * syscallStaysAtCpl3 in src/engine/host-probe.ts); if not, syscall
   * hypercalls are refused.
   */
  constructor(private readonly ft: FrameTable, readonly syscallAtCpl3: boolean) {
    const take = (): number => {
      const [mfn] = ft.allocate(OWNER_XEN, 1);
      this.frames.push(mfn!);
      return mfn!;
    };
    this.zero = take();
    // M2P: one L1 entry per M2P frame, read-only to the guest, never executable.
    this.m2pL3 = take();
    for (let i = 0; i < ft.m2pFrames; i++) {
      const va = BigInt(i) * BigInt(PAGE_SIZE);
      const l3i = Number((va >> 30n) & 0x1ffn), l2i = Number((va >> 21n) & 0x1ffn), l1i = Number((va >> 12n) & 0x1ffn);
      const l2 = this.child(this.m2pL3, l3i, take);
      const l1 = this.child(l2, l2i, take);
      setU64(ft.bytes(l1), l1i * 8, pte(ft.m2pFirst + i, PTE.P | PTE.US | PTE.A | PTE.NX));
    }
    const idt = take(), stubs = take(), lstar = take();
    this.sharedL1 = take();
    const l1 = ft.bytes(this.sharedL1);
    setU64(l1, 0, pte(idt, PTE.P | PTE.A | PTE.NX));
    setU64(l1, 8, pte(stubs, PTE.P | PTE.A));
    setU64(l1, 16, pte(lstar, PTE.P | PTE.US | PTE.A));
    const idtBytes = ft.bytes(idt), stubBytes = ft.bytes(stubs);
    for (let v = 0; v < 256; v++) {
      stubBytes.set(exceptionStub(v), v * STUB_SIZE);
      const h = STUBS_VIRT + BigInt(v * STUB_SIZE);
      // 64-bit interrupt gate, DPL 0 (a guest `int $n` gets #GP), ring-0 code selector.
      setU64(idtBytes, v * 16, (h & 0xffffn) | (BigInt(SEL.HV_CS) << 16n) | (0x8en << 40n) | (((h >> 16n) & 0xffffn) << 48n));
      setU64(idtBytes, v * 16 + 8, h >> 32n);
    }
    const lstarPage = ft.bytes(lstar).fill(0xcc);
    lstarPage.set(syscallAtCpl3 ? LSTAR_STUB_CPL3 : LSTAR_STUB_REFUSE, 0);
    lstarPage.set(LSTAR_STUB_REFUSE, CSTAR_OFFSET);
  }

  /** Frames of the shared area (the M2P table itself is the frame table's). */
  get frameCount(): number {
    return this.frames.length;
  }

  /** Entry `i` of table `table`, allocating the next-level table if absent. */
  private child(table: number, i: number, take: () => number): number {
    const page = this.ft.bytes(table);
    const e = readU64(page, i * 8);
    if (e & PTE.P) return Number((e >> 12n) & 0xffffffffffn);
    const mfn = take();
    setU64(page, i * 8, pte(mfn, UPPER));
    return mfn;
  }

  /**
   * Builds a domain's slot-257 tables and the per-vCPU GDT/TSS/stack for
   * `vcpus` vCPUs. The frames are the hypervisor's (OWNER_XEN: no guest can
   * map them); the caller returns them with `release` when the domain dies.
   */
  buildPerDomain(vcpus: number): PerDomainSpace {
    if (!Number.isInteger(vcpus) || vcpus < 1 || vcpus > MAX_VCPUS) throw new RangeError(`a domain has 1 to ${MAX_VCPUS} vCPUs, not ${vcpus}`);
    const ft = this.ft;
    // Three tables, then per vCPU its GDT page, three TSS pages, its ring-0 stack and its wait page.
    const owned = Array.from(ft.allocateArray(OWNER_XEN, 3 + PER_VCPU_FRAMES * vcpus));
    const [l3, l2, l1] = owned as [number, number, number];
    setU64(ft.bytes(l3), 0, pte(l2, UPPER));
    setU64(ft.bytes(l2), 0, pte(l1, UPPER));
    setU64(ft.bytes(l2), 8, pte(this.sharedL1, UPPER));
    const l1Bytes = ft.bytes(l1);
    const map = (va: number, mfn: number, flags: bigint): void => setU64(l1Bytes, (va >> 12) * 8, pte(mfn, flags));
    for (let v = 0; v < vcpus; v++) {
      const block = v * VCPU_BLOCK;
      for (let p = 0; p < BLOCK.XEN_GDT_PAGE; p += PAGE_SIZE) map(block + p, this.zero, PTE.P | PTE.A | PTE.NX);
      const frame = (k: number): number => owned[3 + PER_VCPU_FRAMES * v + k]!;
      const gdt = frame(VCPU_FRAME.GDT), stack = frame(VCPU_FRAME.STACK), wait = frame(VCPU_FRAME.WAIT);
      const [tss0, tss1, tss2] = [0, 1, 2].map((i) => frame(VCPU_FRAME.TSS + i)) as [number, number, number];
      map(block + BLOCK.XEN_GDT_PAGE, gdt, PTE.P | PTE.A | PTE.NX);
      [tss0, tss1, tss2].forEach((mfn, i) => map(block + BLOCK.TSS + i * PAGE_SIZE, mfn, PTE.P | PTE.A | PTE.NX));
      map(block + BLOCK.STACK, stack, PTE.P | PTE.RW | PTE.A | PTE.D | PTE.NX);
      // The wait page: executable and readable at CPL 3, never writable by the guest.
      map(block + BLOCK.WAIT, wait, PTE.P | PTE.US | PTE.A);
      ft.bytes(wait).fill(0xcc).set(WAIT_STUB, 0);
      // The GDT and TSS of vCPU v are the same in every domain (same addresses): copied from a template.
      const t = this.vcpuTemplate(v);
      ft.bytes(gdt).set(t.subarray(0, PAGE_SIZE));
      [tss0, tss1, tss2].forEach((mfn, i) => ft.bytes(mfn).set(t.subarray((1 + i) * PAGE_SIZE, (2 + i) * PAGE_SIZE)));
    }
    // What every L4 of the domain carries in slots 256-271 (the rest of them empty).
    const reservedL4 = new BigUint64Array(LAST_RESERVED_SLOT - FIRST_RESERVED_SLOT + 1);
    reservedL4[0] = pte(this.m2pL3, UPPER);
    reservedL4[1] = pte(l3, UPPER);
    reservedL4[2] = pte(this.m2pL3, UPPER); // M2P_ALT_VIRT_START
    return new PerDomainSpace(ft, l3, owned, vcpus, reservedL4, l1, this.zero);
  }

  private readonly templates: Uint8Array[] = [];

  /** vCPU v's GDT page and three TSS pages, built once. */
  private vcpuTemplate(v: number): Uint8Array {
    const cached = this.templates[v];
    if (cached) return cached;
    const t = new Uint8Array(4 * PAGE_SIZE);
    const blockVa = PERDOMAIN_VIRT + BigInt(v * VCPU_BLOCK);
    const g = t.subarray(0, PAGE_SIZE);
    const at = (sel: number): number => sel - BLOCK.XEN_GDT_PAGE;
    // Descriptors with the accessed bit already set, so the CPU never writes the (read-only) GDT.
    setU64(g, at(SEL.HV_CS), 0x00af9b000000ffffn);
    setU64(g, at(SEL.HV_DS), 0x00cf93000000ffffn);
    setU64(g, at(SEL.CS32 & ~3), 0x00cffb000000ffffn);
    setU64(g, at(SEL.DS & ~3), 0x00cff3000000ffffn);
    setU64(g, at(SEL.CS64 & ~3), 0x00affb000000ffffn);
    const [lo, hi] = tssDescriptor(blockVa + BigInt(BLOCK.TSS));
    setU64(g, at(SEL.TSS), lo);
    setU64(g, at(SEL.TSS) + 8, hi);
    // TSS: rsp0 = the ring-0 stack; I/O bitmap closed except the hypercall ports.
    const tss = t.subarray(PAGE_SIZE);
    const tv = new DataView(tss.buffer, tss.byteOffset, tss.length);
    tv.setBigUint64(4, blockVa + BigInt(BLOCK.STACK_TOP), true);
    tv.setUint16(0x66, TSS_SIZE, true);
    tss.fill(0xff, TSS_SIZE, TSS_SIZE + IOMAP_BYTES + 1);
    for (const port of OPEN_PORTS) tss[TSS_SIZE + (port >> 3)]! &= ~(1 << (port & 7));
    this.templates[v] = t;
    return t;
  }

  /** Writes the entries every guest L4 of the domain carries in slots 256-271 (perDomain.reservedL4). */
  fillReservedL4(l4: number, perDomain: PerDomainSpace): void {
    const page = this.ft.bytes(l4);
    perDomain.reservedL4.forEach((e, i) => setU64(page, (FIRST_RESERVED_SLOT + i) * 8, e));
  }

  /** Returns the shared frames to the pool (when the machine shuts down). */
  release(): void {
    for (const mfn of this.frames.splice(0)) this.ft.release(mfn);
  }
}

/** A domain's slot-257 tables and per-vCPU structures. */
export class PerDomainSpace {
  /**
   * `reservedL4`: the entries of L4 slots 256-271, slot 256 first, that the
   * hypervisor writes into every validated L4 of the domain (PT-7).
   */
  constructor(
    private readonly ft: FrameTable, readonly l3: number, private readonly owned: number[], readonly vcpus: number,
    readonly reservedL4: BigUint64Array, private readonly l1: number, private readonly zero: number,
  ) {}

  /** GDT pages a guest may fill (entries 0-7167: 14 pages; the 15th is the hypervisor's). */
  static readonly GUEST_GDT_PAGES = BLOCK.XEN_GDT_PAGE / PAGE_SIZE;

  /**
   * Maps `frames` (the guest's GDT, validated segment-descriptor pages) as
   * the first pages of vCPU `v`'s GDT, read-write for the CPU only
   * (supervisor, so the guest cannot write them there, and the CPU can set
   * accessed bits), and the zero page behind the rest, as Xen's
   * pv_set_gdt. Returns the frames the changed entries mapped before, whose
   * cached translations the caller must forget.
   */
  setGuestGdt(v: number, frames: readonly number[]): number[] {
    const words = new DataView(this.ft.bytes(this.l1).buffer, this.ft.bytes(this.l1).byteOffset, PAGE_SIZE);
    const old: number[] = [];
    for (let p = 0; p < PerDomainSpace.GUEST_GDT_PAGES; p++) {
      const at = ((v * VCPU_BLOCK + p * PAGE_SIZE) >> 12) * 8;
      const want = p < frames.length ? pte(frames[p]!, PTE.P | PTE.RW | PTE.A | PTE.D | PTE.NX) : pte(this.zero, PTE.P | PTE.A | PTE.NX);
      const was = words.getBigUint64(at, true);
      if (was === want) continue;
      old.push(Number((was >> 12n) & 0xffffffffffn));
      words.setBigUint64(at, want, true);
    }
    return old;
  }

  /** Virtual addresses of vCPU `v`'s structures. */
  static vcpuLayout(v: number): { gdt: bigint; tss: bigint; stackTop: bigint; wait: bigint } {
    const base = PERDOMAIN_VIRT + BigInt(v * VCPU_BLOCK);
    return { gdt: base + BigInt(BLOCK.GDT), tss: base + BigInt(BLOCK.TSS), stackTop: base + BigInt(BLOCK.STACK_TOP), wait: base + BigInt(BLOCK.WAIT) };
  }

  get frameCount(): number {
    return this.owned.length;
  }

  /** Machine bytes of vCPU `v`'s frame `k` (VCPU_FRAME), after the three tables. */
  private vcpuPage(v: number, k: number): Uint8Array {
    return this.ft.bytes(this.owned[3 + v * PER_VCPU_FRAMES + k]!);
  }

  /** Machine bytes of vCPU `v`'s wait page (the stub and, at WAIT, its data). */
  waitPage(v: number): Uint8Array {
    return this.vcpuPage(v, VCPU_FRAME.WAIT);
  }

  /** Machine bytes of vCPU `v`'s ring-0 stack page (where exception frames land). */
  stackPage(v: number): Uint8Array {
    return this.vcpuPage(v, VCPU_FRAME.STACK);
  }

  /**
   * Opens or closes the hypercall port in vCPU `v`'s TSS I/O bitmap: closed
   * while the vCPU is in guest user mode, so that an `out` to it there
   * raises #GP at the instruction, as a hypercall from user mode does on Xen.
   */
  setHypercallPortOpen(v: number, open: boolean): void {
    const tss = this.vcpuPage(v, VCPU_FRAME.TSS);
    const at = TSS_SIZE + (HYPERCALL_PORT >> 3), bit = 1 << (HYPERCALL_PORT & 7);
    tss[at] = open ? tss[at]! & ~bit : tss[at]! | bit;
  }

  release(): number {
    const n = this.owned.length;
    for (const mfn of this.owned.splice(0)) this.ft.release(mfn);
    return n;
  }
}
