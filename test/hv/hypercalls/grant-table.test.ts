// Grant-table management on the scripted engine (no KVM), as Xen answers
// a PV domU and as Xen's test framework uses it: setup_table grows the
// table and lists frames the guest can map writable; query_size,
// get_version and set_version; version 2's status frames, which a guest
// still mapping keeps from going (XSA-255); other domains' tables refused;
// every frame returned when the domain dies.

import { afterEach, describe, expect, it } from 'vitest';
import { Hypercall } from '../../../src/abi/generated/xen.js';
import { GnttabOp, GrantStatus } from '../../../src/abi/generated/grant-table.js';
import type { ScriptedCpu } from '../../../src/engine/scripted/scripted-cpu.js';
import { PageType } from '../../../src/hv/mm/frames.js';
import { auditPageTypes } from '../../../src/hv/mm/page-audit.js';
import { scriptedDomain, scriptedGuest, type ScriptedGuest } from '../../support/scripted.js';

let g: ScriptedGuest;
afterEach(() => g?.hv.close());
const stop = () => ({ kind: 'interrupted' as const });
const EINVAL = -22n, EBUSY = -16n, EFAULT = -14n, ESRCH = -3n, EPERM = -1n, ENOSYS = -38n;
const SELF = 0x7ff0;

/** grant_table_op(cmd, the struct `bytes` at ARG, count): the result, and the struct as the hypervisor left it. */
function gnttab(g: ScriptedGuest, cmd: number, bytes: Uint8Array, count = 1): { rc: bigint; out: DataView<ArrayBufferLike>; list: bigint[] } {
  const at = g.d.layout.stackTop - 0x800n, list = g.d.layout.stackTop - 0x400n;
  let rc = 0n, out: DataView<ArrayBufferLike> = new DataView(new ArrayBuffer(0)), frames: bigint[] = [];
  g.play(
    (c: ScriptedCpu) => { c.write(at, bytes); c.write(list, new Uint8Array(64)); return c.hypercall(Hypercall.HYPERVISOR_grant_table_op, [BigInt(cmd), at, BigInt(count)]); },
    (c: ScriptedCpu) => {
      rc = BigInt.asIntN(64, c.regs.rax);
      out = new DataView(c.read(at, bytes.length).buffer);
      const l = new DataView(c.read(list, 64).buffer);
      frames = [0, 1, 2, 3].map((i) => l.getBigUint64(8 * i, true));
      return stop();
    },
  );
  return { rc, out, list: frames };
}

const listAt = (g: ScriptedGuest) => g.d.layout.stackTop - 0x400n;
function setupTable(g: ScriptedGuest, nr: number, dom = SELF, list = listAt(g)) {
  const b = new Uint8Array(24), v = new DataView(b.buffer);
  v.setUint16(0, dom, true); v.setUint32(4, nr, true); v.setBigUint64(16, list, true);
  const r = gnttab(g, GnttabOp.GNTTABOP_setup_table, b);
  return { rc: r.rc, status: r.out.getInt16(8, true), frames: r.list.slice(0, nr) };
}
function setVersion(g: ScriptedGuest, version: number) {
  const b = new Uint8Array(4); new DataView(b.buffer).setUint32(0, version, true);
  const r = gnttab(g, GnttabOp.GNTTABOP_set_version, b);
  return { rc: r.rc, version: r.out.getUint32(0, true) };
}
function statusFrames(g: ScriptedGuest, nr: number) {
  const b = new Uint8Array(16), v = new DataView(b.buffer);
  v.setUint32(0, nr, true); v.setUint16(4, SELF, true); v.setBigUint64(8, listAt(g), true);
  const r = gnttab(g, GnttabOp.GNTTABOP_get_status_frames, b);
  return { rc: r.rc, status: r.out.getInt16(6, true), frames: r.list.slice(0, nr) };
}
const remap = (g: ScriptedGuest, va: bigint, val: bigint) => {
  let rc = 0n;
  g.play((c) => c.hypercall(Hypercall.HYPERVISOR_update_va_mapping, [va, val, 2n]), (c) => { rc = BigInt.asIntN(64, c.regs.rax); return stop(); });
  return rc;
};

describe('grant-table management', () => {
  it('grows the table with setup_table, listing frames of the domain the guest can map writable', () => {
    g = scriptedGuest();
    const t = setupTable(g, 4);
    expect([t.rc, t.status]).toEqual([0n, GrantStatus.GNTST_okay]);
    for (const f of t.frames) {
      expect(g.hv.frames.owner[Number(f)]).toBe(g.d.id);
      expect(g.hv.frames.type[Number(f)]).toBe(PageType.writable);
    }
    // Mapped read-write by the guest (as XTF's arch_map_gnttab does), written, read back by the hypervisor.
    const va = g.d.layout.stackTop - 0x3000n;
    expect(remap(g, va, (t.frames[0]! << 12n) | 7n)).toBe(0n);
    g.play((c) => { c.write(va, Uint8Array.of(1, 2, 3)); return stop(); });
    expect(Array.from(g.hv.frames.bytes(Number(t.frames[0]!)).subarray(0, 3))).toEqual([1, 2, 3]);
    // query_size: 4 of at most 64.
    const q = new Uint8Array(16); new DataView(q.buffer).setUint16(0, SELF, true);
    const qs = gnttab(g, GnttabOp.GNTTABOP_query_size, q);
    expect([qs.out.getUint32(4, true), qs.out.getUint32(8, true), qs.out.getInt16(12, true)]).toEqual([4, 64, 0]);
    expect(auditPageTypes(g.hv.frames, [g.d.auditView()])).toEqual([]);
  });

  it('refuses what Xen refuses: over the limit, another domain\'s table, an unknown domain, a bad list, a count other than 1', () => {
    g = scriptedGuest();
    const other = scriptedDomain(g.engine, g.hv);
    expect(setupTable(g, 65).status).toBe(GrantStatus.GNTST_general_error);
    expect(setupTable(g, 1, other.d.id).status).toBe(GrantStatus.GNTST_permission_denied);
    expect(setupTable(g, 1, 0x1234).status).toBe(GrantStatus.GNTST_bad_domain);
    expect(setupTable(g, 1, SELF, 0x7f0000000000n).rc).toBe(EFAULT);
    expect(gnttab(g, GnttabOp.GNTTABOP_setup_table, new Uint8Array(24), 2).rc).toBe(EINVAL);
    expect(g.d.grants.frames).toEqual([]); // nothing grew
    const v = (dom: number) => { const b = new Uint8Array(8); new DataView(b.buffer).setUint16(0, dom, true); return gnttab(g, GnttabOp.GNTTABOP_get_version, b); };
    expect(v(SELF).rc).toBe(0n);
    expect(v(SELF).out.getUint32(4, true)).toBe(1);
    expect(v(other.d.id).rc).toBe(EPERM);
    expect(v(0x1234).rc).toBe(ESRCH);
    // A map request with neither a host nor a device mapping asked for: GNTST_bad_gntref.
    const m = gnttab(g, GnttabOp.GNTTABOP_map_grant_ref, new Uint8Array(32));
    expect([m.rc, m.out.getInt16(18, true)]).toEqual([0n, GrantStatus.GNTST_bad_gntref]);
    expect(gnttab(g, GnttabOp.GNTTABOP_transfer, new Uint8Array(24)).rc).toBe(ENOSYS);
  });

  it('switches to version 2 with status frames, and back only once no mapping holds them (XSA-255)', () => {
    g = scriptedGuest();
    expect(setupTable(g, 1).status).toBe(0);
    expect(statusFrames(g, 1).status).toBe(GrantStatus.GNTST_general_error); // version 1 has none
    expect(setVersion(g, 2)).toEqual({ rc: 0n, version: 2 });
    const s = statusFrames(g, 1);
    expect(s.status).toBe(0);
    const frame = s.frames[0]!;
    expect(g.hv.frames.owner[Number(frame)]).toBe(g.d.id);
    // The guest maps the status frame read-only; switching back must then fail.
    const va = g.d.layout.stackTop - 0x3000n;
    expect(remap(g, va, (frame << 12n) | 5n)).toBe(0n);
    expect(setVersion(g, 1)).toEqual({ rc: EBUSY, version: 2 });
    expect(g.hv.frames.owner[Number(frame)]).toBe(g.d.id);
    // Unmapped, the switch goes through and the frame is free.
    expect(remap(g, va, 0n)).toBe(0n);
    expect(setVersion(g, 1)).toEqual({ rc: 0n, version: 1 });
    expect(g.hv.frames.owner[Number(frame)]).not.toBe(g.d.id);
    expect(setVersion(g, 3)).toEqual({ rc: EINVAL, version: 1 });
    expect(auditPageTypes(g.hv.frames, [g.d.auditView()])).toEqual([]);
  });

  it('carries the reserved entries over a version change', () => {
    g = scriptedGuest();
    const t = setupTable(g, 1);
    const page = g.hv.frames.bytes(Number(t.frames[0]!));
    const v1 = new DataView(page.buffer, page.byteOffset, 4096);
    v1.setUint16(8, 0x1, true); v1.setUint16(10, 0, true); v1.setUint32(12, 0x1234, true); // entry 1: permit access to dom0, frame 0x1234
    expect(setVersion(g, 2).rc).toBe(0n);
    expect([v1.getUint16(16, true), v1.getBigUint64(24, true)]).toEqual([0x1, 0x1234n]);
    expect(setVersion(g, 1).rc).toBe(0n);
    expect([v1.getUint16(8, true), v1.getUint32(12, true)]).toEqual([0x1, 0x1234]);
  });

  it('clears every entry but the reserved ones on a version change, and refuses one version 1 cannot hold (-ERANGE)', () => {
    g = scriptedGuest();
    const t = setupTable(g, 2);
    const p0 = g.hv.frames.bytes(Number(t.frames[0]!)), p1 = g.hv.frames.bytes(Number(t.frames[1]!));
    const v = new DataView(p0.buffer, p0.byteOffset, 4096);
    v.setUint16(8 * 9, 1, true); v.setUint32(8 * 9 + 4, 0x55, true); // entry 9, not reserved
    p1[100] = 7;
    expect(setVersion(g, 2).rc).toBe(0n);
    expect([v.getUint16(16 * 9, true), v.getBigUint64(16 * 9 + 8, true), p1[100]]).toEqual([0, 0n, 0]);
    // Back to 1: a reserved entry with a frame past 32 bits, or a transitive grant, cannot be carried (Xen: -ERANGE).
    v.setUint16(16 * 2, 1, true); v.setBigUint64(16 * 2 + 8, 1n << 32n, true);
    expect(setVersion(g, 1)).toEqual({ rc: -34n, version: 2 });
    v.setBigUint64(16 * 2 + 8, 5n, true); v.setUint16(16 * 3, 3, true); // GTF_transitive
    expect(setVersion(g, 1)).toEqual({ rc: -34n, version: 2 });
    v.setUint16(16 * 3, 0, true);
    expect(setVersion(g, 1)).toEqual({ rc: 0n, version: 1 });
    expect([v.getUint16(8 * 2, true), v.getUint32(8 * 2 + 4, true)]).toEqual([1, 5]);
  });

  it('lets the reserved grants stay in use over a version change, not the others', () => {
    g = scriptedGuest();
    setupTable(g, 1);
    g.d.grants.pin(3, 0, 'host', false); // as the toolstack's console or xenstore grant mapped by a backend
    expect(setVersion(g, 2).rc).toBe(0n);
    g.d.grants.pin(8, 0, 'host', false);
    expect(setVersion(g, 1)).toEqual({ rc: EBUSY, version: 2 });
    g.d.grants.unpin(8, 'host', false);
    g.d.grants.unpin(3, 'host', false);
    expect(setVersion(g, 1).rc).toBe(0n);
  });

  it('gives back the frames a setup_table took when the machine runs out, and a version 2 that cannot get its status frames is -ENOMEM', () => {
    g = scriptedGuest();
    const ft = g.hv.frames;
    // Leave 3 free frames: growing to 8 fails and takes none of them for good.
    const hog = ft.allocate(0x7ff2 /* DOMID_XEN */, ft.free - 3);
    expect(setupTable(g, 8).status).toBe(GrantStatus.GNTST_general_error);
    expect([g.d.grants.frames.length, ft.free]).toEqual([0, 3]);
    expect(setupTable(g, 3).status).toBe(0);
    expect(setVersion(g, 2)).toEqual({ rc: -12n, version: 1 });
    expect([g.d.grants.statusFrames.length, ft.free]).toEqual([0, 0]);
    for (const m of hog) ft.release(m);
    expect(setVersion(g, 2).rc).toBe(0n);
    expect(auditPageTypes(ft, [g.d.auditView()])).toEqual([]);
  });

  it('refuses a negative count, bits above the command, and a batch not in the guest\'s range, before doing anything', () => {
    g = scriptedGuest();
    const call = (cmd: bigint, uop: bigint, count: bigint) => {
      let rc = 0n;
      g.play((c) => c.hypercall(Hypercall.HYPERVISOR_grant_table_op, [cmd, uop, count]), (c) => { rc = BigInt.asIntN(64, c.regs.rax); return stop(); });
      return rc;
    };
    const at = g.d.layout.stackTop - 0x800n;
    expect(call(BigInt(GnttabOp.GNTTABOP_map_grant_ref), at, 0x80000000n)).toBe(EINVAL);
    expect(call(BigInt(GnttabOp.GNTTABOP_query_size) | 0x1000n, at, 1n)).toBe(EINVAL);
    expect(call(BigInt(GnttabOp.GNTTABOP_unmap_grant_ref), 0x7fffffffff00n, 100n)).toBe(EFAULT);
    expect(call(BigInt(GnttabOp.GNTTABOP_unmap_grant_ref), at, 0n)).toBe(0n);
  });

  it('returns the grant and status frames with every other frame when the domain dies', () => {
    g = scriptedGuest();
    const free = g.hv.frames.free;
    expect(setupTable(g, 8).status).toBe(0);
    expect(setVersion(g, 2).rc).toBe(0n);
    expect(g.hv.frames.free).toBe(free - 9); // 8 grant frames, 1 status frame
    const n = g.hv.destroyDomain(g.d);
    expect(g.hv.frames.free).toBe(free - 9 + n);
    expect(Array.from(g.hv.frames.owner).filter((o) => o === g.d.id)).toEqual([]);
  });
});
