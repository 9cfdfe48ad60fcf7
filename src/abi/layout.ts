// C layouts of the ABI's structs as gcc gives them on x86-64: offsets,
// alignment and size computed from the member types and checked against
// the offsets the schemas declare; and the scalar leaves of a struct, which
// the layout probes compare with C.

import { AbiSchemaError, type AbiStruct, type CHandle, type CScalar } from './model.js';

/** Computes offsets, alignment and size as gcc does for x86-64, checking declared offsets. */
export function layoutStruct(st: AbiStruct): void {
  let off = 0;
  let align = 1;
  let size = 0;
  for (const m of st.members) {
    const a = st.packed ? 1 : alignOf(m.type);
    align = Math.max(align, a);
    const total = m.elemSize * (m.arrayLen ?? 1);
    if (st.union) {
      if (m.offset !== 0) throw new AbiSchemaError(`${st.fullName}.${m.name}: union members start at 0`);
      size = Math.max(size, total);
      continue;
    }
    off = roundUp(off, a);
    if (m.offset !== off) {
      throw new AbiSchemaError(`${st.fullName}.${m.name}: declared offset ${m.offset} but the C layout gives ${off}`);
    }
    off += total;
  }
  st.align = align;
  st.size = roundUp(st.union ? size : off, align);
}

function alignOf(t: CScalar | CHandle | AbiStruct): number {
  return 'members' in t ? t.align : t.size;
}

function roundUp(n: number, a: number): number {
  return Math.ceil(n / a) * a;
}

/** Every scalar leaf of a struct, arrays expanded: what the layout tests walk. */
export interface Leaf {
  /** C access path from the struct ("console.domU.mfn", "args[3]"). */
  cPath: string;
  /** TypeScript access chain segments, for generated accessor calls. */
  tsChain: Array<{ kind: 'prop'; name: string } | { kind: 'index'; name: string; index: number }>;
  offset: number;
  type: CScalar | CHandle;
}

export function leavesOf(st: AbiStruct, base = 0, cPrefix = '', tsPrefix: Leaf['tsChain'] = []): Leaf[] {
  const out: Leaf[] = [];
  for (const m of st.members) {
    const n = m.arrayLen ?? 1;
    for (let i = 0; i < n; i++) {
      const at = base + m.offset + i * m.elemSize;
      const cPath = cPrefix + m.cName + (m.arrayLen !== undefined ? `[${i}]` : '');
      const seg: Leaf['tsChain'][number] = m.arrayLen !== undefined ? { kind: 'index', name: m.name, index: i } : { kind: 'prop', name: m.name };
      if ('members' in m.type) out.push(...leavesOf(m.type, at, cPath + '.', [...tsPrefix, seg]));
      else out.push({ cPath, tsChain: [...tsPrefix, seg], offset: at, type: m.type });
    }
  }
  return out;
}
