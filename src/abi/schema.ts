// Loads the ABI schemas (abi/*.proto) with protobufjs and turns them into a
// checked model of constants and C layouts that the generators print.
// Input: the project's own schema files (trusted, but checked: every layout
// is recomputed from the C types and compared with the declared offsets).

import * as path from 'node:path';
import { createRequire } from 'node:module';
import * as fs from 'node:fs';
import protobuf from 'protobufjs';

import { layoutStruct } from './layout.js';
import { AbiSchemaError, type AbiEnum, type AbiFile, type AbiMember, type AbiModel, type AbiStruct, type CHandle, type CScalar } from './model.js';

export * from './model.js';

const require = createRequire(import.meta.url);


/** Runs `f`; a schema error from it that names no file is given `rel`. */
function inFile<T>(rel: string, f: () => T): T {
  try {
    return f();
  } catch (e) {
    if (e instanceof AbiSchemaError && e.file === undefined) e.file = rel;
    throw e;
  }
}

const SCALARS: Record<string, Omit<CScalar, 'kind' | 'name'>> = {
  'char': { size: 1, signed: true, char: true },
  'int8_t': { size: 1, signed: true, char: true },
  'uint8_t': { size: 1, signed: false, char: false },
  'unsigned char': { size: 1, signed: false, char: false },
  'int16_t': { size: 2, signed: true, char: false },
  'uint16_t': { size: 2, signed: false, char: false },
  'short': { size: 2, signed: true, char: false },
  'unsigned short': { size: 2, signed: false, char: false },
  'int32_t': { size: 4, signed: true, char: false },
  'uint32_t': { size: 4, signed: false, char: false },
  'int': { size: 4, signed: true, char: false },
  'unsigned int': { size: 4, signed: false, char: false },
  'int64_t': { size: 8, signed: true, char: false },
  'uint64_t': { size: 8, signed: false, char: false },
  'long': { size: 8, signed: true, char: false },
  'unsigned long': { size: 8, signed: false, char: false },
};

/** The directory holding the schemas, found from this module's location. */
export function defaultAbiDir(): string {
  let dir = path.dirname(new URL(import.meta.url).pathname);
  for (;;) {
    const candidate = path.join(dir, 'abi', 'options.proto');
    if (fs.existsSync(candidate)) return path.join(dir, 'abi');
    const up = path.dirname(dir);
    if (up === dir) throw new AbiSchemaError('cannot find abi/options.proto above ' + import.meta.url);
    dir = up;
  }
}

function listProtos(dir: string, base = dir): string[] {
  const out: string[] = [];
  for (const ent of fs.readdirSync(dir, { withFileTypes: true })) {
    const p = path.join(dir, ent.name);
    // abi/toolstack/ holds the toolstack's own messages (traces, the control API): protobuf, not C structs.
    if (ent.isDirectory()) {
      if (!(dir === base && ent.name === 'toolstack')) out.push(...listProtos(p, base));
    }
    else if (ent.name.endsWith('.proto') && !(dir === base && ent.name === 'options.proto')) {
      out.push(path.relative(base, p));
    }
  }
  return out.sort();
}

function opt<T>(options: Record<string, unknown> | undefined, name: string): T | undefined {
  return options?.['(paravane.' + name + ')'] as T | undefined;
}

function cleanComment(c: string | null | undefined): string {
  return (c ?? '').trim();
}

function toPascal(s: string): string {
  return s.split(/[^A-Za-z0-9]+/).filter(Boolean).map((w) => w[0]!.toUpperCase() + w.slice(1)).join('');
}

/** Reads the repeated file option `c_prelude` (protobufjs keeps only the last value). */
function readRepeatedFileOption(text: string, name: string): string[] {
  const out: string[] = [];
  const re = new RegExp('^\\s*option\\s*\\(paravane\\.' + name + '\\)\\s*=\\s*"((?:[^"\\\\]|\\\\.)*)"\\s*;', 'gm');
  for (const m of text.matchAll(re)) out.push(JSON.parse('"' + m[1] + '"') as string);
  return out;
}

function readImports(text: string): string[] {
  return [...text.matchAll(/^\s*import\s+"([^"]+)"\s*;/gm)].map((m) => m[1]!);
}

/** The comment block at the top of a .proto file (before `syntax`). */
function readFileComment(text: string): string {
  const lines: string[] = [];
  for (const line of text.split('\n')) {
    if (!line.startsWith('//')) break;
    lines.push(line.replace(/^\/\/ ?/, ''));
  }
  return lines.join('\n').trim();
}

export function loadAbi(abiDir: string = defaultAbiDir()): AbiModel {
  const rels = listProtos(abiDir);
  const root = new protobuf.Root();
  root.resolvePath = (_origin: string, target: string) =>
    target.startsWith('google/protobuf/') ? require.resolve('protobufjs/' + target) : path.resolve(abiDir, target);
  try {
    root.loadSync(rels.map((r) => path.join(abiDir, r)), { keepCase: true, alternateCommentMode: true });
    root.resolveAll();
  } catch (e) {
    // protobufjs does not say which file: the first that does not parse alone, if any.
    const bad = rels.find((r) => {
      try {
        protobuf.parse(fs.readFileSync(path.join(abiDir, r), 'utf8'), { keepCase: true, alternateCommentMode: true });
        return false;
      } catch {
        return true;
      }
    });
    throw new AbiSchemaError('cannot parse the ABI schemas: ' + (e as Error).message, bad);
  }

  const files = new Map<string, AbiFile>();
  const texts = new Map<string, string>();
  for (const rel of rels) {
    const text = fs.readFileSync(path.join(abiDir, rel), 'utf8');
    texts.set(rel, text);
    const cHeader = /option\s*\(paravane\.c_header\)\s*=\s*"([^"]+)"/.exec(text)?.[1];
    if (!cHeader) throw new AbiSchemaError(`${rel}: missing option (paravane.c_header)`, rel);
    const xenHeader = /option\s*\(paravane\.xen_header\)\s*=\s*"([^"]+)"/.exec(text)?.[1];
    files.set(rel, {
      rel, cHeader, ...(xenHeader ? { xenHeader } : {}),
      prelude: readRepeatedFileOption(text, 'c_prelude'),
      imports: [], comment: readFileComment(text), enums: [], structs: [],
    });
  }
  for (const [rel, f] of files) {
    for (const imp of readImports(texts.get(rel)!)) {
      if (imp === 'options.proto' || imp.startsWith('google/')) continue;
      const dep = files.get(imp);
      if (!dep) throw new AbiSchemaError(`${rel}: imports unknown schema ${imp}`, rel);
      f.imports.push(dep);
    }
  }

  const fileOf = (obj: protobuf.ReflectionObject): AbiFile => {
    const fname = obj.filename;
    if (!fname) throw new AbiSchemaError(`${obj.fullName}: no source file`);
    const f = files.get(path.relative(abiDir, fname));
    if (!f) throw new AbiSchemaError(`${obj.fullName}: declared outside the ABI files`);
    return f;
  };

  // Types known to the layout engine: scalars, typedefs from preludes, structs.
  const typedefs = new Map<string, CScalar>();
  for (const f of files.values()) {
    for (const line of f.prelude) {
      const m = /^typedef\s+([A-Za-z_][A-Za-z0-9_ ]*?)\s+([A-Za-z_][A-Za-z0-9_]*)\s*;$/.exec(line);
      if (!m) continue;
      const base = SCALARS[m[1]!] ?? typedefs.get(m[1]!);
      if (!base) throw new AbiSchemaError(`${f.rel}: typedef of unknown type ${m[1]}`, f.rel);
      typedefs.set(m[2]!, { kind: 'scalar', name: m[2]!, size: base.size, signed: base.signed, char: base.char });
    }
  }
  const scalarOf = (cType: string, where: string): CScalar | CHandle => {
    if (/^XEN_GUEST_HANDLE(_PARAM)?\([A-Za-z_][A-Za-z0-9_]*\)$/.test(cType)) {
      return { kind: 'handle', name: cType, size: 8, signed: false, char: false };
    }
    if (/^[A-Za-z_][A-Za-z0-9_ ]*\s*\*$/.test(cType)) return { kind: 'scalar', name: cType, size: 8, signed: false, char: false };
    const s = SCALARS[cType];
    if (s) return { kind: 'scalar', name: cType, ...s };
    const t = typedefs.get(cType);
    if (t) return t;
    throw new AbiSchemaError(`${where}: unknown C type "${cType}" (add a typedef to a c_prelude)`);
  };

  const structs = new Map<string, AbiStruct>();
  const building = new Set<string>();

  const buildStruct = (type: protobuf.Type, parent?: AbiStruct): AbiStruct => inFile(fileOf(type).rel, () => buildStructIn(type, parent));
  const buildStructIn = (type: protobuf.Type, parent?: AbiStruct): AbiStruct => {
    const key = type.fullName.replace(/^\./, '');
    const done = structs.get(key);
    if (done) return done;
    if (building.has(type.fullName)) throw new AbiSchemaError(`${type.fullName}: recursive layout`);
    building.add(type.fullName);
    const file = fileOf(type);
    const where = type.fullName.replace(/^\./, '');
    const size = opt<number>(type.options, 'size');
    if (size === undefined) throw new AbiSchemaError(`${where}: missing option (paravane.size)`);
    const anonymous = opt<boolean>(type.options, 'anonymous') ?? false;
    const cName = opt<string>(type.options, 'c_name') ?? type.name;
    const st: AbiStruct = {
      kind: 'struct',
      fullName: where,
      ...(anonymous ? {} : { cTag: cName }),
      tsName: parent ? parent.tsName + toPascal(type.name) : toPascal(type.name),
      file, size, align: 1,
      union: opt<boolean>(type.options, 'union') ?? false,
      packed: opt<boolean>(type.options, 'packed') ?? false,
      local: (opt<boolean>(type.options, 'local') ?? false) || !file.xenHeader || (parent?.local ?? false),
      ...(opt<string>(type.options, 'c_typedef') ? { typedef: opt<string>(type.options, 'c_typedef')! } : {}),
      guestHandle: opt<boolean>(type.options, 'guest_handle') ?? false,
      comment: cleanComment(type.comment),
      members: [],
      ...(parent ? { parent } : {}),
    };

    const memberOf = (field: protobuf.Field): AbiMember => {
      const fwhere = `${where}.${field.name}`;
      const offset = opt<number>(field.options, 'offset');
      if (offset === undefined) throw new AbiSchemaError(`${fwhere}: missing option (paravane.offset)`);
      const arrayLen = opt<number>(field.options, 'array_len');
      const arrayLenMacro = opt<string>(field.options, 'array_len_macro');
      let cType = opt<string>(field.options, 'c_type');
      let t: CScalar | CHandle | AbiStruct;
      if (field.resolvedType instanceof protobuf.Type) {
        const sub = buildStruct(field.resolvedType, field.resolvedType.parent instanceof protobuf.Type ? structs.get(field.resolvedType.parent.fullName.replace(/^\./, '')) ?? st : undefined);
        t = sub;
        const expected = [sub.cTag ? `${sub.union ? 'union' : 'struct'} ${sub.cTag}` : undefined, sub.typedef].filter(Boolean);
        if (cType === undefined || !sub.cTag) cType = expected[0] ?? '';
        else if (!expected.includes(cType)) throw new AbiSchemaError(`${fwhere}: c_type "${cType}" does not name ${sub.fullName} (${expected.join(' or ')})`);
      } else {
        if (cType === undefined) throw new AbiSchemaError(`${fwhere}: missing option (paravane.c_type)`);
        t = scalarOf(cType, fwhere);
      }
      if (field.repeated && arrayLen === undefined) throw new AbiSchemaError(`${fwhere}: repeated field needs (paravane.array_len)`);
      if (field.type === 'bytes' && arrayLen === undefined) throw new AbiSchemaError(`${fwhere}: bytes field needs (paravane.array_len)`);
      if (arrayLen !== undefined && !field.repeated && field.type !== 'bytes') throw new AbiSchemaError(`${fwhere}: array_len on a field that is neither repeated nor bytes`);
      return {
        name: field.name, cName: opt<string>(field.options, 'c_member') ?? field.name, offset,
        comment: cleanComment(field.comment), cType, type: t,
        ...(arrayLen !== undefined ? { arrayLen } : {}),
        ...(arrayLenMacro !== undefined ? { arrayLenMacro } : {}),
        elemSize: t.size,
      };
    };

    // Fields in declaration (field-number) order; a oneof becomes one union member.
    const seenOneofs = new Set<string>();
    for (const field of [...type.fieldsArray].sort((a, b) => a.id - b.id)) {
      const oneof = field.partOf;
      if (!oneof) { st.members.push(memberOf(field)); continue; }
      if (seenOneofs.has(oneof.name)) continue;
      seenOneofs.add(oneof.name);
      const inner = oneof.fieldsArray.map(memberOf);
      const off = inner[0]!.offset;
      for (const m of inner) {
        if (m.offset !== off) throw new AbiSchemaError(`${where}.${m.name}: union members of "${oneof.name}" must share one offset`);
        m.offset = 0;
      }
      const u: AbiStruct = {
        kind: 'struct',
        fullName: `${where}.${oneof.name}`, tsName: st.tsName + toPascal(oneof.name), file, size: 0, align: 1,
        union: true, packed: false, local: st.local, guestHandle: false,
        comment: cleanComment(oneof.comment), members: inner, parent: st,
      };
      layoutStruct(u);
      st.members.push({
        name: oneof.name, cName: oneof.name, offset: off, comment: u.comment,
        cType: '', type: u, elemSize: u.size,
      });
    }
    layoutStruct(st);
    if (st.size !== size) throw new AbiSchemaError(`${where}: declared size ${size} but the C layout gives ${st.size}`);
    building.delete(type.fullName);
    structs.set(where, st);
    // Named structs are emitted in dependency order; anonymous ones inline.
    if (st.cTag) file.structs.push(st);
    return st;
  };

  const enums: AbiEnum[] = [];
  const visit = (ns: protobuf.NamespaceBase): void => {
    for (const obj of ns.nestedArray) {
      if (obj instanceof protobuf.Type) {
        if (obj.fullName.startsWith('.google.')) continue;
        if (!(obj.parent instanceof protobuf.Type)) buildStruct(obj);
        visit(obj);
      } else if (obj instanceof protobuf.Enum) {
        if (obj.fullName.startsWith('.google.')) continue;
        enums.push(inFile(fileOf(obj).rel, () => enumOf(obj)));
      } else if (obj instanceof protobuf.Namespace) {
        visit(obj);
      }
    }
  };

  const enumOf = (e: protobuf.Enum): AbiEnum => {
    const file = fileOf(e);
    const where = e.fullName.replace(/^\./, '');
    const prefix = opt<string>(e.options, 'c_prefix') ?? '';
    const unsigned = opt<boolean>(e.options, 'c_unsigned') ?? false;
    const localEnum = (opt<boolean>(e.options, 'local_enum') ?? false) || !file.xenHeader;
    const cEnum = opt<string>(e.options, 'c_enum');
    const ae: AbiEnum = {
      name: e.name, file, comment: cleanComment(e.comment), cSuffix: opt<string>(e.options, 'c_suffix') ?? '',
      hypercalls: opt<boolean>(e.options, 'hypercalls') ?? false, local: localEnum,
      ...(cEnum ? { cEnum } : {}), values: [],
    };
    for (const [name, num] of Object.entries(e.values)) {
      const vo = e.valuesOptions?.[name] as Record<string, unknown> | undefined;
      const v64 = opt<string>(vo, 'value64');
      let value: bigint;
      if (v64 !== undefined) {
        if (num !== -1) throw new AbiSchemaError(`${where}.${name}: a value64 constant must have the placeholder number -1`);
        value = BigInt(v64);
      } else {
        value = BigInt(num);
        if (unsigned && value < 0n) value += 1n << 32n;
      }
      const args = opt<string>(vo, 'args');
      const returns = opt<string>(vo, 'returns');
      ae.values.push({
        name, cName: prefix + name, value, comment: cleanComment(e.comments[name]),
        ...(args !== undefined ? { args } : {}), ...(returns !== undefined ? { returns } : {}),
        local: localEnum || (opt<boolean>(vo, 'local_value') ?? false),
      });
    }
    file.enums.push(ae);
    return ae;
  };

  visit(root);

  const hypercalls = enums.filter((e) => e.hypercalls).flatMap((e) => e.values).sort((a, b) => Number(a.value - b.value));
  const seen = new Map<bigint, string>();
  for (const h of hypercalls) {
    const prev = seen.get(h.value);
    if (prev) throw new AbiSchemaError(`hypercall number ${h.value} is used by both ${prev} and ${h.cName}`);
    seen.set(h.value, h.cName);
  }
  const rangeEnum = enums.find((e) => e.name === 'ExperimentalHypercallRange');
  const first = Number(rangeEnum?.values.find((v) => v.name.endsWith('_first'))?.value ?? -1);
  const last = Number(rangeEnum?.values.find((v) => v.name.endsWith('_last'))?.value ?? -1);
  if (first < 0 || last < first) throw new AbiSchemaError('xen.proto must declare ExperimentalHypercallRange', 'xen.proto');
  for (const e of enums.filter((x) => x.hypercalls && !x.file.xenHeader)) {
    for (const v of e.values) {
      if (v.value < BigInt(first) || v.value > BigInt(last)) {
        throw new AbiSchemaError(`${e.file.rel}: experimental hypercall ${v.cName} = ${v.value} is outside ${first}..${last}`, e.file.rel);
      }
    }
  }

  const fileList = [...files.values()];
  return { files: fileList, structs: [...structs.values()], enums, hypercalls, experimentalRange: { first, last } };
}
