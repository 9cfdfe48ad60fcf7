// The generator refuses schemas whose declared layout or numbering is wrong,
// with a message naming the item, instead of emitting a wrong header.

import { describe, expect, it } from 'vitest';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { loadAbi } from '../../src/abi/schema.js';
import { ROOT, tmpDir } from './probe-harness.js';

const BASE = `syntax = "proto2";
package base;
import "options.proto";
option (paravane.c_header) = "base.h";
enum ExperimentalHypercallRange {
  option (paravane.c_prefix) = "__";
  HYPERVISOR_paravane_first = 64;
  HYPERVISOR_paravane_last = 127;
}
`;

function schemaDir(body: string): string {
  const dir = tmpDir('schema');
  fs.copyFileSync(path.join(ROOT, 'abi/options.proto'), path.join(dir, 'options.proto'));
  fs.writeFileSync(path.join(dir, 'base.proto'), BASE);
  fs.writeFileSync(path.join(dir, 't.proto'), `syntax = "proto2";\npackage t;\nimport "options.proto";\noption (paravane.c_header) = "t.h";\n${body}`);
  return dir;
}

const struct = (fields: string, size = 16) =>
  `message s {\n  option (paravane.size) = ${size};\n${fields}\n}\n`;

describe('ABI schema checks', () => {
  it('accepts a correct layout and computes it as C does', () => {
    const model = loadAbi(schemaDir(struct(
      '  optional uint32 a = 1 [(paravane.c_type) = "uint8_t", (paravane.offset) = 0];\n' +
      '  optional uint64 b = 2 [(paravane.c_type) = "uint64_t", (paravane.offset) = 8];')));
    const s = model.structs.find((x) => x.cTag === 's')!;
    expect(s.size).toBe(16);
    expect(s.align).toBe(8);
  });

  it('refuses a declared offset that C would not give', () => {
    expect(() => loadAbi(schemaDir(struct(
      '  optional uint32 a = 1 [(paravane.c_type) = "uint8_t", (paravane.offset) = 0];\n' +
      '  optional uint64 b = 2 [(paravane.c_type) = "uint64_t", (paravane.offset) = 4];'))))
      .toThrow('t.s.b: declared offset 4 but the C layout gives 8');
  });

  it('refuses a declared size that C would not give', () => {
    expect(() => loadAbi(schemaDir(struct('  optional uint32 a = 1 [(paravane.c_type) = "uint32_t", (paravane.offset) = 0];', 8))))
      .toThrow('t.s: declared size 8 but the C layout gives 4');
  });

  it('refuses a field without a C type or offset, and an unknown C type', () => {
    expect(() => loadAbi(schemaDir(struct('  optional uint32 a = 1 [(paravane.offset) = 0];', 4))))
      .toThrow('t.s.a: missing option (paravane.c_type)');
    expect(() => loadAbi(schemaDir(struct('  optional uint32 a = 1 [(paravane.c_type) = "uint32_t"];', 4))))
      .toThrow('t.s.a: missing option (paravane.offset)');
    expect(() => loadAbi(schemaDir(struct('  optional uint32 a = 1 [(paravane.c_type) = "u32", (paravane.offset) = 0];', 4))))
      .toThrow('unknown C type "u32"');
  });

  it('refuses union members at different offsets', () => {
    expect(() => loadAbi(schemaDir(struct(
      '  oneof u {\n    uint32 a = 1 [(paravane.c_type) = "uint32_t", (paravane.offset) = 0];\n' +
      '    uint32 b = 2 [(paravane.c_type) = "uint32_t", (paravane.offset) = 4];\n  }', 4))))
      .toThrow('must share one offset');
  });

  it('refuses an experimental hypercall outside 64..127 and a reused number', () => {
    const hc = (v: string) => `enum H {\n  option (paravane.hypercalls) = true;\n${v}\n}\n`;
    expect(() => loadAbi(schemaDir(hc('  HYPERVISOR_x = 200;')))).toThrow('outside 64..127');
    expect(() => loadAbi(schemaDir(hc('  option allow_alias = true;\n  HYPERVISOR_x = 70;\n  HYPERVISOR_y = 70;'))))
      .toThrow('hypercall number 70 is used by both');
  });

  it('requires the placeholder -1 for 64-bit constants', () => {
    expect(() => loadAbi(schemaDir('enum E {\n  BIG = 5 [(paravane.value64) = "0xFFFF800000000000"];\n}\n')))
      .toThrow('placeholder number -1');
  });
});
