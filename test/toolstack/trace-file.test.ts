// The trace file: what the writer's hand-built records say, read back
// through protobufjs and the schema (abi/toolstack/trace.proto), every
// field at its edges; buffers written out past their size; and the files
// a reader must refuse (empty, not a trace, another version, cut short).

import { describe, expect, it } from 'vitest';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import protobuf from 'protobufjs';
import { readTrace, TRACE_VERSION, TraceFileError, TraceWriter } from '../../src/toolstack/trace-file.js';

const MAX = 0xffffffffffffffffn;

function write(fill: (w: TraceWriter) => void): Uint8Array {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'trace-'));
  const file = path.join(dir, 't.trace');
  const fd = fs.openSync(file, 'w');
  try {
    const w = new TraceWriter(fd, { paravane: '9.9.9', engine: 'soft', startHostNs: process.hrtime.bigint(), domains: [{ id: 3, name: 'web', kernel: 'web.elf' }] });
    fill(w);
    w.close();
    return fs.readFileSync(file);
  } finally {
    fs.closeSync(fd);
    fs.rmSync(dir, { recursive: true, force: true });
  }
}

describe('trace files', () => {
  it('read back every field the writer recorded, at the edges of their ranges', () => {
    let guest = 5n;
    const bytes = write((w) => {
      const s = w.sink(3, () => guest++);
      s.hypercall(0, 64n, [MAX, 0n, 1n << 63n, 127n, 128n], -38n, 0xffffffff80001234n, 1500n, 'page');
      s.hypercall(3, 29n, [1n, 2n, 3n, 4n, 5n], -(1n << 63n), 0n, 0n, 'vmcall');
      s.exit(1, 'io', 0xe0, 0xffff808000201000n);
      s.exit(0, 'halt', 0, 0n);
      s.upcall(2, MAX);
    });
    const { header, records } = readTrace(bytes);
    expect(header).toMatchObject({ version: TRACE_VERSION, paravane: '9.9.9', engine: 'soft', domains: [{ id: 3, name: 'web', kernel: 'web.elf' }] });
    expect(records.map((r) => [r.domain, r.vcpu, r.guestNs])).toEqual([[3, 0, 5n], [3, 3, 6n], [3, 1, 7n], [3, 0, 8n], [3, 2, 9n]]);
    expect(records.every((r, i) => i === 0 || r.hostNs >= records[i - 1]!.hostNs)).toBe(true);
    expect(records[0]!.event).toEqual({ kind: 'hypercall', nr: 64, args: [MAX, 0n, 1n << 63n, 127n, 128n], result: -38n, site: 0xffffffff80001234n, handlerNs: 1500n, transport: 'page' });
    expect(records[1]!.event).toMatchObject({ nr: 29, result: -(1n << 63n), transport: 'vmcall' });
    expect(records[2]!.event).toEqual({ kind: 'exit', exit: 'io', detail: 0xe0, rip: 0xffff808000201000n });
    expect(records[3]!.event).toEqual({ kind: 'exit', exit: 'halt', detail: 0, rip: 0n });
    expect(records[4]!.event).toEqual({ kind: 'upcall', rip: MAX });
  });

  it('writes its buffer out as it fills: every record of a long trace is there, in order', () => {
    const n = 40_000; // about 2 MiB: two flushes before the close
    const bytes = write((w) => {
      const s = w.sink(1, () => 0n);
      for (let i = 0; i < n; i++) s.hypercall(0, BigInt(i % 40), [MAX, MAX, MAX, MAX, BigInt(i)], 0n, MAX, 1n, 'syscall');
    });
    expect(bytes.length).toBeGreaterThan(2 << 20);
    const { records } = readTrace(bytes);
    expect(records).toHaveLength(n);
    expect(records.map((r) => (r.event.kind === 'hypercall' ? Number(r.event.args[4]) : -1))).toEqual(Array.from({ length: n }, (_, i) => i));
  });

  it('refuses an empty file, one that is not a trace, another version, and a record cut short, saying where', () => {
    expect(() => readTrace(new Uint8Array())).toThrow(/the file is empty: not a paravane trace/);
    expect(() => readTrace(Buffer.from('\x7fELF and then some bytes that are not a trace at all'))).toThrow(TraceFileError);
    const root = protobuf.loadSync(path.resolve(import.meta.dirname, '../../abi/toolstack/trace.proto'));
    const H = root.lookupType('paravane.trace.TraceHeader');
    expect(() => readTrace(H.encodeDelimited(H.fromObject({ version: 7, paravane: 'x' })).finish())).toThrow(/trace format version 7 is not one this paravane reads \(1\)/);
    const good = write((w) => {
      const s = w.sink(1, () => 0n);
      s.exit(0, 'io', 224, 1n);
      s.exit(0, 'io', 224, 2n);
    });
    expect(readTrace(good).records).toHaveLength(2);
    expect(() => readTrace(good.subarray(0, good.length - 3))).toThrow(/^record 2 at byte \d+ cannot be read/);
  });
});
