// The ABI model the schemas load into (src/abi/schema.ts) and the
// generators print: constants, enums, C scalar and handle types, structs
// with their members and computed layouts, and the error a bad schema gets.

export interface AbiConst {
  /** Schema name of the value (HYPERVISOR_mmu_update). */
  name: string;
  /** C name (__HYPERVISOR_mmu_update). */
  cName: string;
  value: bigint;
  comment: string;
  args?: string;
  returns?: string;
  /** Not in Xen's public headers. */
  local: boolean;
}

export interface AbiEnum {
  name: string;
  file: AbiFile;
  comment: string;
  cEnum?: string;
  cSuffix: string;
  hypercalls: boolean;
  local: boolean;
  values: AbiConst[];
}

/** A C scalar type: its size, alignment and signedness. */
export interface CScalar {
  kind: 'scalar';
  name: string;
  size: number;
  signed: boolean;
  /** A character type: arrays of it also get string accessors. */
  char: boolean;
}

/** A guest handle: XEN_GUEST_HANDLE(x), a struct holding one pointer. */
export interface CHandle {
  kind: 'handle';
  name: string;
  size: 8;
  signed: false;
  char: false;
}

export interface AbiMember {
  /** Schema field name (or oneof name for a union member). */
  name: string;
  /** C member name. */
  cName: string;
  offset: number;
  comment: string;
  /** The C type as written in the header ("xen_pfn_t"). */
  cType: string;
  type: CScalar | CHandle | AbiStruct;
  arrayLen?: number;
  arrayLenMacro?: string;
  /** Element size in bytes. */
  elemSize: number;
}

export interface AbiStruct {
  kind: 'struct';
  /** Schema name, fully qualified (xen.start_info). */
  fullName: string;
  /** C tag (start_info); undefined for anonymous nested structs/unions. */
  cTag?: string;
  /** Name used for generated TypeScript classes (StartInfo). */
  tsName: string;
  file: AbiFile;
  size: number;
  align: number;
  union: boolean;
  packed: boolean;
  local: boolean;
  typedef?: string;
  guestHandle: boolean;
  comment: string;
  members: AbiMember[];
  /** Set for structs declared inside another message. */
  parent?: AbiStruct;
}

export interface AbiFile {
  /** Path relative to abi/ ("io/console.proto"). */
  rel: string;
  cHeader: string;
  xenHeader?: string;
  prelude: string[];
  /** Files this one imports (ABI files only). */
  imports: AbiFile[];
  comment: string;
  enums: AbiEnum[];
  /** Top-level and named nested structs, in the order C needs them. */
  structs: AbiStruct[];
}

export interface AbiModel {
  files: AbiFile[];
  structs: AbiStruct[];
  enums: AbiEnum[];
  hypercalls: AbiConst[];
  experimentalRange: { first: number; last: number };
}

/** A schema the generator refuses; `file` names the schema at fault when it is known. */
export class AbiSchemaError extends Error {
  readonly code = 'ERR_ABI_SCHEMA';
  /** The schema file, relative to the schema directory ("xen.proto"). */
  file: string | undefined;
  constructor(message: string, file?: string) {
    super(message);
    this.file = file;
  }
}
