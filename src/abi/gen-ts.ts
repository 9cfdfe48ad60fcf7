// Prints the TypeScript side of the ABI: constants, the hypercall table and
// typed accessor classes (views over a DataView at an offset) for every
// structure. Input: the checked model from schema.ts.

import type { AbiEnum, AbiFile, AbiMember, AbiModel, AbiStruct, CHandle, CScalar } from './schema.js';

export function tsModuleName(file: AbiFile): string {
  return file.rel.replace(/\.proto$/, '').replace(/[^A-Za-z0-9]+/g, '-');
}

function tsNamespace(file: AbiFile): string {
  return tsModuleName(file).replace(/-/g, '_');
}

function docComment(text: string, indent: string): string[] {
  if (!text) return [];
  const lines = text.replace(/\*\//g, '* /').split('\n');
  if (lines.length === 1) return [`${indent}/** ${lines[0]} */`];
  return [`${indent}/**`, ...lines.map((l) => (l ? `${indent} * ${l}` : `${indent} *`)), `${indent} */`];
}

function tsValue(v: bigint): string {
  const big = v > BigInt(Number.MAX_SAFE_INTEGER) || v < BigInt(Number.MIN_SAFE_INTEGER);
  if (big) return (v < 0n ? '-0x' + (-v).toString(16) : '0x' + v.toString(16)) + 'n';
  return v < 0n || v < 256n ? v.toString() : '0x' + v.toString(16);
}

function enumDecl(e: AbiEnum): string[] {
  const out = docComment(e.comment, '');
  out.push(`export const ${e.name} = {`);
  for (const v of e.values) {
    out.push(...docComment(v.comment, '  '));
    out.push(`  ${v.name}: ${tsValue(v.value)},`);
  }
  out.push('} as const;', '');
  return out;
}

interface Access { get: string; set: string; ts: 'number' | 'bigint' }

function accessOf(t: CScalar | CHandle): Access {
  const s = t.signed;
  switch (t.size) {
    case 1: return { get: s ? 'getInt8' : 'getUint8', set: s ? 'setInt8' : 'setUint8', ts: 'number' };
    case 2: return { get: s ? 'getInt16' : 'getUint16', set: s ? 'setInt16' : 'setUint16', ts: 'number' };
    case 4: return { get: s ? 'getInt32' : 'getUint32', set: s ? 'setInt32' : 'setUint32', ts: 'number' };
    case 8: return { get: s ? 'getBigInt64' : 'getBigUint64', set: s ? 'setBigInt64' : 'setBigUint64', ts: 'bigint' };
    default: throw new Error(`no accessor for a ${t.size}-byte scalar`);
  }
}

function le(size: number): string {
  return size > 1 ? ', true' : '';
}

function memberAccessors(m: AbiMember): string[] {
  const out: string[] = [];
  const doc = docComment(m.comment + (m.comment ? '\n' : '') + `C: ${m.cType || 'union'} ${m.cName}${m.arrayLen !== undefined ? `[${m.arrayLen}]` : ''} at offset ${m.offset}.`, '  ');
  const t = m.type;
  const n = m.arrayLen;
  if ('members' in t) {
    if (n === undefined) {
      out.push(...doc, `  get ${m.name}(): ${t.tsName} { return new ${t.tsName}(this.view, this.base + ${m.offset}); }`);
    } else {
      out.push(...doc, `  ${m.name}_at(i: number): ${t.tsName} { return new ${t.tsName}(this.view, this.base + ${m.offset} + index(i, ${n}) * ${m.elemSize}); }`);
    }
    return out;
  }
  const a = accessOf(t);
  if (n === undefined) {
    out.push(...doc,
      `  get ${m.name}(): ${a.ts} { return this.view.${a.get}(this.base + ${m.offset}${le(t.size)}); }`,
      `  set ${m.name}(v: ${a.ts}) { this.view.${a.set}(this.base + ${m.offset}, v${le(t.size)}); }`);
    return out;
  }
  const at = `this.base + ${m.offset} + index(i, ${n})${t.size > 1 ? ` * ${t.size}` : ''}`;
  out.push(...doc,
    `  ${m.name}_at(i: number): ${a.ts} { return this.view.${a.get}(${at}${le(t.size)}); }`,
    `  set_${m.name}_at(i: number, v: ${a.ts}): void { this.view.${a.set}(${at}, v${le(t.size)}); }`);
  if (t.kind === 'scalar' && t.char) {
    out.push(
      `  /** ${m.cName} as a NUL-terminated Latin-1 string. */`,
      `  get ${m.name}(): string { return readCString(this.view, this.base + ${m.offset}, ${n}); }`,
      `  /** Writes a NUL-terminated string and zero-fills the rest; throws if it does not fit. */`,
      `  set ${m.name}(s: string) { writeCString(this.view, this.base + ${m.offset}, ${n}, s, '${m.cName}'); }`);
  }
  return out;
}

function classDecl(st: AbiStruct): string[] {
  const out: string[] = [];
  const cName = st.cTag ? `${st.union ? 'union' : 'struct'} ${st.cTag}` : `${st.union ? 'union' : 'struct'} (anonymous, in ${st.parent?.cTag ?? st.parent?.tsName})`;
  out.push(...docComment(`${cName}, ${st.size} bytes.` + (st.comment ? '\n' + st.comment : ''), ''));
  out.push(`export class ${st.tsName} {`);
  out.push(`  static readonly SIZE = ${st.size};`);
  out.push(`  static readonly ALIGN = ${st.align};`);
  out.push(`  /** Byte offset of each member. */`);
  out.push(`  static readonly OFFSETS = { ${st.members.map((m) => `${m.name}: ${m.offset}`).join(', ')} } as const;`);
  out.push(`  constructor(readonly view: DataView, readonly base: number = 0) {`);
  out.push(`    checkSpan(view, base, ${st.size}, '${st.tsName}');`);
  out.push('  }');
  out.push(`  /** A view over \`buffer\` at byte \`offset\`. */`);
  out.push(`  static over(buffer: ArrayBufferLike, offset = 0): ${st.tsName} { return new ${st.tsName}(new DataView(buffer), offset); }`);
  for (const m of st.members) out.push(...memberAccessors(m));
  out.push('}', '');
  return out;
}

/** All structs of a file that get a class: named ones and the anonymous ones inside them. */
function classesOf(file: AbiFile): AbiStruct[] {
  const out: AbiStruct[] = [];
  const add = (st: AbiStruct): void => {
    for (const m of st.members) if ('members' in m.type && !m.type.cTag) add(m.type);
    out.push(st);
  };
  for (const st of file.structs) add(st);
  return out;
}

export function generateTsModule(file: AbiFile): string {
  const out: string[] = [
    `// Generated by \`npm run abi\` from abi/${file.rel}. Do not edit.`,
    ...file.comment.split('\n').map((l) => (l ? `// ${l}` : '//')),
    '',
  ];
  const classes = classesOf(file);
  const members = classes.flatMap((c) => c.members);
  const helpers = ['checkSpan'];
  if (members.some((m) => m.arrayLen !== undefined)) helpers.push('index');
  if (members.some((m) => m.type.kind === 'scalar' && m.type.char && m.arrayLen !== undefined)) helpers.push('readCString', 'writeCString');
  if (classes.length) out.push(`import { ${helpers.join(', ')} } from '../layout-support.js';`);
  // Classes of other schema files that members refer to.
  const foreign = new Map<string, Set<string>>();
  for (const m of members) {
    if (m.type.kind === 'struct' && m.type.file !== file) {
      const mod = tsModuleName(m.type.file);
      if (!foreign.has(mod)) foreign.set(mod, new Set());
      foreign.get(mod)!.add(m.type.tsName);
    }
  }
  for (const [mod, names] of [...foreign].sort()) out.push(`import { ${[...names].sort().join(', ')} } from './${mod}.js';`);
  if (classes.length) out.push('');
  const names = new Map<string, string>();
  for (const [n, what] of [...file.enums.map((e) => [e.name, 'enum ' + e.name]), ...classes.map((c) => [c.tsName, 'struct ' + c.fullName])]) {
    if (names.has(n!)) throw new Error(`abi/${file.rel}: TypeScript name ${n} is used by both ${names.get(n!)} and ${what}`);
    names.set(n!, what!);
  }
  for (const e of file.enums) out.push(...enumDecl(e));
  for (const st of classes) out.push(...classDecl(st));
  return out.join('\n');
}

export function generateTsIndex(model: AbiModel): string {
  const out = ['// Generated by `npm run abi`. Do not edit.', '// Every ABI module, one namespace per schema file.', ''];
  for (const f of model.files) out.push(`export * as ${tsNamespace(f)} from './${tsModuleName(f)}.js';`);
  out.push(`export { HYPERCALLS, EXPERIMENTAL_HYPERCALL_RANGE } from './hypercalls.js';`, `export type { HypercallInfo } from './hypercalls.js';`, '');
  return out.join('\n');
}

export function generateTsHypercalls(model: AbiModel): string {
  const out = [
    '// Generated by `npm run abi` from every enum with option (paravane.hypercalls). Do not edit.',
    '',
    'export interface HypercallInfo {',
    '  /** The number in rax. */',
    '  readonly nr: number;',
    '  /** Name without the __HYPERVISOR_ prefix ("mmu_update"). */',
    '  readonly name: string;',
    '  /** Argument summary in register order (rdi, rsi, rdx, r10, r8). */',
    '  readonly args: string;',
    '  /** What rax holds afterwards. */',
    '  readonly returns: string;',
    '  /** One line about what it does. */',
    '  readonly summary: string;',
    '  /** In paravane\'s experimental range. */',
    '  readonly experimental: boolean;',
    '  /** The schema that declares it. */',
    '  readonly schema: string;',
    '}',
    '',
    `export const EXPERIMENTAL_HYPERCALL_RANGE = { first: ${model.experimentalRange.first}, last: ${model.experimentalRange.last} } as const;`,
    '',
    'export const HYPERCALLS: readonly HypercallInfo[] = [',
  ];
  const byNr = model.enums.filter((x) => x.hypercalls).flatMap((e) => e.values.map((v) => ({ e, v })))
    .sort((a, b) => Number(a.v.value - b.v.value));
  const { first, last } = model.experimentalRange;
  for (const { e, v } of byNr) {
    const nr = Number(v.value);
    const info = {
      nr, name: v.name.replace(/^HYPERVISOR_/, ''), args: v.args ?? '', returns: v.returns ?? '',
      summary: v.comment.split('\n')[0] ?? '', experimental: nr >= first && nr <= last, schema: 'abi/' + e.file.rel,
    };
    out.push(`  ${JSON.stringify(info)},`);
  }
  out.push('];', '');
  return out.join('\n');
}
