// The descriptor-table hypercalls, as Xen answers a 64-bit PV domU:
// set_gdt(frame_list, entries) installs the calling vCPU's GDT frames
// (cpu/descriptor-tables.ts), and update_descriptor(maddr, desc) writes one
// descriptor into one of the domain's frames, checked as every descriptor
// of a GDT page is (PT-17). Inputs: hostile (pointers, counts, machine
// addresses, descriptor values).

import { PageType } from '../mm/frames.js';
import { checkDescriptor, FIRST_RESERVED_GDT_ENTRY } from '../mm/descriptors.js';
import { PageTypeError } from '../mm/page-types.js';
import { errno, type HypercallArgs, type HypercallContext } from './context.js';

/** set_gdt(frame_list, entries): entries 0-7167 of the vCPU's GDT from the listed frames. */
export function setGdt(ctx: HypercallContext, [list, entriesArg]: HypercallArgs): bigint {
  const entries = Number(entriesArg & 0xffffffffn);
  if (entries > FIRST_RESERVED_GDT_ENTRY) return errno('XEN_EINVAL');
  const n = Math.ceil(entries / 512);
  const frames = Array.from({ length: n }, (_, i) => ctx.guest.readU64(list + BigInt(8 * i)));
  return ctx.cpu.setGdt(frames, entries);
}

/**
 * update_descriptor(maddr, desc): `maddr` (8-byte aligned) in a frame of
 * the domain that is a segment-descriptor page or can be typed writable
 * (not a page table), `desc` passing the descriptor check. -EINVAL for
 * anything else, as Xen.
 */
export function updateDescriptor(ctx: HypercallContext, [maddr, desc]: HypercallArgs): bigint {
  if (maddr & 7n) return errno('XEN_EINVAL');
  const d = checkDescriptor(Number(desc & 0xffffffffn) >>> 0, Number((desc >> 32n) & 0xffffffffn) >>> 0);
  if (!d) return errno('XEN_EINVAL');
  const pt = ctx.mm.pt;
  const ft = pt.ft;
  const mfnBig = maddr >> 12n;
  if (mfnBig >= BigInt(ft.count)) return errno('XEN_EINVAL');
  const mfn = Number(mfnBig);
  const type = ft.type[mfn] === PageType.segDesc && ft.typeCount[mfn]! > 0 ? PageType.segDesc : PageType.writable;
  try {
    pt.getPageAndType(mfn, type, ctx.domid);
  } catch (e) {
    if (e instanceof PageTypeError) return errno('XEN_EINVAL');
    throw e;
  }
  const words = ft.words32(mfn);
  const i = Number(maddr & 0xfffn) >> 2;
  words[i] = d[0];
  words[i + 1] = d[1];
  if (type === PageType.writable) ctx.mm.tlb.hostWrote(mfn);
  pt.putPageAndType(mfn);
  return 0n;
}
