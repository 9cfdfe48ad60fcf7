// Segment descriptors a 64-bit PV guest may install (its GDT and LDT
// pages, typed `segment descriptors`), checked as Xen's check_descriptor
// checks them (rule PT-17, docs/page-types.md):
//   - a not-present descriptor always faults, so it is safe as it is;
//   - code and data descriptors are all accepted (bases and limits do not
//     matter in 64-bit mode), their DPL raised to 3: the guest kernel runs
//     at CPL 3, so a DPL 0-2 segment would be unusable or, worse, a way to
//     forge one the hypervisor did not mean;
//   - a system descriptor of type 0 (the second half of a 64-bit call gate)
//     is harmless;
//   - a 64-bit call gate is kept only if its target is a code selector the
//     guest may name (its own GDT entries, its LDT, or Xen's flat kernel
//     code selector), with its DPL forced to 0 so that every use faults
//     into the hypervisor (the original DPL is kept in the selector's RPL),
//     and its reserved bits clear;
//   - every other system descriptor (TSS, LDT, interrupt and trap gates) is
//     refused.
// Inputs: descriptor words written by guests (hostile).

/** The first GDT entry the hypervisor keeps for itself (Xen's FIRST_RESERVED_GDT_ENTRY): guests have entries 0-7167. */
export const FIRST_RESERVED_GDT_ENTRY = 7168;
/** The most entries an LDT may have (MMUEXT_SET_LDT, a vCPU context's ldt_ents). */
export const MAX_LDT_ENTRIES = 8192;
/** Xen's flat 64-bit kernel code selector (FLAT_RING3_CS64), a call gate's allowed target outside the guest's GDT. */
const FLAT_KERNEL_CS = 0xe033;

const P = 1 << 15; // present (in the high word)
const S = 1 << 12; // code or data (not system)
const DPL_SHIFT = 13;
const DPL = 3 << DPL_SHIFT;
const TYPE = 0xf << 8;
const CALL_GATE = 0xc << 8;

/** Whether a call gate may target code selector `sel`, as Xen's guest_gate_selector_okay for a 64-bit guest. */
function gateSelectorOkay(sel: number): boolean {
  return sel >> 3 < FIRST_RESERVED_GDT_ENTRY || sel === FLAT_KERNEL_CS || (sel & 4) !== 0;
}

/**
 * Checks descriptor `lo:hi` (its two 32-bit words) and returns it as the
 * hypervisor installs it (DPL fixed up), or undefined when it is refused.
 */
export function checkDescriptor(lo: number, hi: number): [number, number] | undefined {
  if (!(hi & P)) return [lo, hi];
  // DPL 0-2 become 3, as Xen's fixup for a 64-bit guest's selectors.
  let dpl = (hi >>> DPL_SHIFT) & 3;
  if (dpl < 3) dpl = 3;
  hi = ((hi & ~DPL) | (dpl << DPL_SHIFT)) >>> 0;
  if (hi & S) return [lo >>> 0, hi];
  if ((hi & TYPE) === 0) return [lo >>> 0, hi];
  if ((hi & TYPE) !== CALL_GATE) return undefined;
  let cs = lo >>> 16;
  if (!gateSelectorOkay(cs)) return undefined;
  hi = (hi & ~DPL) >>> 0;
  cs = (cs & ~3) | dpl;
  lo = ((lo & 0xffff) | (cs << 16)) >>> 0;
  if (hi & 0xff) return undefined; // reserved bits of a 64-bit call gate
  return [lo, hi];
}

/**
 * Checks every descriptor of a page (512 of them, as Xen validates a
 * segment-descriptor page), writing back the fixed-up ones. Returns the
 * index of the first refused descriptor, or -1; on a refusal nothing is
 * written.
 */
export function checkDescriptorPage(words: Uint32Array): number {
  const fixed = new Uint32Array(1024);
  for (let i = 0; i < 512; i++) {
    const d = checkDescriptor(words[2 * i]!, words[2 * i + 1]!);
    if (!d) return i;
    fixed[2 * i] = d[0];
    fixed[2 * i + 1] = d[1];
  }
  words.set(fixed);
  return -1;
}
