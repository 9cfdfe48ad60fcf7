// The trace file of `paravane run --trace` (abi/toolstack/trace.proto): a
// TraceHeader, then TraceRecords, each length-delimited. The writer
// encodes each record as it comes into a buffer and writes it out in
// blocks of about a megabyte (and at close), so a traced hypercall costs
// one encode, not a system call. The reader refuses a file that is not a
// trace, a version it does not know, and a record cut short, saying where.
// protobufjs (already the ABI pipeline's) reads the schema at run time.

import * as fs from 'node:fs';
import { performance } from 'node:perf_hooks';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';
import protobuf from 'protobufjs';
import type { HypercallTransport, TraceSink } from '../hv/cpu/trace-sink.js';

export const TRACE_VERSION = 1;
const SCHEMA = path.join(fileURLToPath(new URL('../..', import.meta.url)), 'abi/toolstack/trace.proto');
const FLUSH_BYTES = 1 << 20;

let types: { header: protobuf.Type; record: protobuf.Type } | undefined;
function schema(): { header: protobuf.Type; record: protobuf.Type } {
  if (!types) {
    const root = protobuf.loadSync(SCHEMA);
    types = { header: root.lookupType('paravane.trace.TraceHeader'), record: root.lookupType('paravane.trace.TraceRecord') };
  }
  return types;
}

export interface TraceHeader {
  version: number;
  paravane: string;
  engine: string;
  startHostNs: bigint;
  domains: Array<{ id: number; name: string; kernel: string }>;
}

export type TraceEvent =
  | { kind: 'hypercall'; nr: number; args: bigint[]; result: bigint; site: bigint; handlerNs: bigint; transport: string }
  | { kind: 'exit'; exit: string; detail: number; rip: bigint }
  | { kind: 'upcall'; rip: bigint };

export interface TraceRecord {
  domain: number;
  vcpu: number;
  hostNs: bigint;
  guestNs: bigint;
  event: TraceEvent;
}

export class TraceFileError extends Error {}

/** Field numbers and wire types of trace.proto, for the writer's records (the reader decodes with the schema itself). */
const VARINT = 0, LEN = 2;
const tag = (field: number, wire: number): number => (field << 3) | wire;
const REC = { domain: 1, vcpu: 2, hostNs: 3, guestNs: 4, hypercall: 5, exit: 6, upcall: 7 } as const;
const HC = { nr: 1, args: 2, result: 3, site: 4, handlerNs: 5, transport: 6 } as const;
const EX = { kind: 1, detail: 2, rip: 3 } as const;
const TWO53 = 1n << 53n;
/** The most bytes one record takes (a hypercall's, every 64-bit field at its longest), with room to spare. */
const RECORD_MAX = 256;

/**
 * The records' protobuf wire format, written straight into a buffer:
 * varints, zigzag, ASCII strings and length-delimited nesting, for the
 * three record kinds of trace.proto. protobufjs's Writer took 0.9-1.3 us a
 * record (an object per field and per nesting), more than a whole
 * hypercall on the software engine; this takes a tenth of that. The reader
 * decodes with protobufjs and the schema, and a test round-trips every
 * field through it.
 */
class RecordEncoder {
  buf = new Uint8Array(FLUSH_BYTES + RECORD_MAX);
  pos = 0;

  varint(n: number): void {
    const b = this.buf;
    while (n >= 0x80) {
      b[this.pos++] = (n % 0x80) | 0x80;
      n = Math.floor(n / 0x80);
    }
    b[this.pos++] = n;
  }

  /** An unsigned 64-bit value (two's complement for a negative one). */
  u64(v: bigint): void {
    const x = BigInt.asUintN(64, v);
    if (x < TWO53) return this.varint(Number(x));
    // Two 32-bit halves (BigInt arithmetic allocates: two operations, not one per 7 bits), then 7 bits at a time.
    let lo = Number(x & 0xffffffffn), hi = Number(x >> 32n);
    const b = this.buf;
    while (hi) {
      b[this.pos++] = (lo & 0x7f) | 0x80;
      lo = ((lo >>> 7) | (hi << 25)) >>> 0;
      hi >>>= 7;
    }
    while (lo > 0x7f) {
      b[this.pos++] = (lo & 0x7f) | 0x80;
      lo >>>= 7;
    }
    b[this.pos++] = lo;
  }

  /** A signed 64-bit value, zigzag-encoded (sint64). */
  s64(v: bigint): void {
    const x = BigInt.asIntN(64, v);
    this.u64(x >= 0n ? x << 1n : ((-x) << 1n) - 1n);
  }

  field(f: number, v: number): void {
    this.varint(tag(f, VARINT));
    this.varint(v);
  }

  ascii(f: number, s: string): void {
    this.varint(tag(f, LEN));
    this.varint(s.length);
    for (let i = 0; i < s.length; i++) this.buf[this.pos++] = s.charCodeAt(i) & 0x7f;
  }

  /** Starts a length-delimited part: one byte kept for its length. */
  open(): number {
    return this.pos++;
  }

  /** Ends the part opened at `at`, writing its length (moving its bytes along when the length takes more than a byte). */
  close(at: number): void {
    const len = this.pos - at - 1;
    if (len < 0x80) {
      this.buf[at] = len;
      return;
    }
    const extra = len < 0x4000 ? 1 : 2;
    this.buf.copyWithin(at + 1 + extra, at + 1, this.pos);
    this.pos += extra;
    const end = this.pos;
    this.pos = at;
    this.varint(len);
    this.pos = end;
  }
}

/** Writes a trace to `fd` (open for writing); sinks for each domain feed it. */
export class TraceWriter {
  private readonly e = new RecordEncoder();
  records = 0;
  private closed = false;

  /** performance.now() when the header's start_host_ns was taken (records count from it). */
  private readonly startMs: number;

  constructor(private readonly fd: number, private readonly header: Omit<TraceHeader, 'version'>) {
    this.startMs = performance.now() - Number(process.hrtime.bigint() - header.startHostNs) / 1e6;
    const h = schema().header;
    const bytes = h.encodeDelimited(h.fromObject({
      version: TRACE_VERSION, paravane: header.paravane, engine: header.engine, startHostNs: header.startHostNs.toString(), domains: header.domains,
    })).finish();
    fs.writeSync(fd, bytes);
  }

  /** The sink for domain `domain`, stamping each record with the host time and the domain's system time. */
  sink(domain: number, guestNow: () => bigint): TraceSink {
    const e = this.e;
    const startMs = this.startMs;
    /** Starts a record (its length prefix, domain, vCPU and times); returns where it began, or -1 once closed. */
    const begin = (vcpu: number): number => {
      if (this.closed) return -1;
      const at = e.open();
      e.field(REC.domain, domain);
      if (vcpu) e.field(REC.vcpu, vcpu);
      // performance.now(): a number (sub-microsecond here), cheaper than a BigInt from hrtime.
      e.field(REC.hostNs, Math.max(0, Math.round((performance.now() - startMs) * 1e6)));
      e.varint(tag(REC.guestNs, VARINT));
      e.u64(guestNow());
      return at;
    };
    return {
      hypercall: (vcpu, nr, args, result, site, handlerNs, transport: HypercallTransport) => {
        const at = begin(vcpu);
        if (at < 0) return;
        e.varint(tag(REC.hypercall, LEN));
        const inner = e.open();
        e.field(HC.nr, Number(nr & 0xffffffffn));
        e.varint(tag(HC.args, LEN));
        const packed = e.open();
        for (const a of args) e.u64(a);
        e.close(packed);
        e.varint(tag(HC.result, VARINT));
        e.s64(result);
        e.varint(tag(HC.site, VARINT));
        e.u64(site);
        e.varint(tag(HC.handlerNs, VARINT));
        e.u64(handlerNs);
        e.ascii(HC.transport, transport);
        e.close(inner);
        this.end(at);
      },
      exit: (vcpu, kind, detail, rip) => {
        const at = begin(vcpu);
        if (at < 0) return;
        e.varint(tag(REC.exit, LEN));
        const inner = e.open();
        e.ascii(EX.kind, kind);
        if (detail) e.field(EX.detail, detail);
        e.varint(tag(EX.rip, VARINT));
        e.u64(rip);
        e.close(inner);
        this.end(at);
      },
      upcall: (vcpu, rip) => {
        const at = begin(vcpu);
        if (at < 0) return;
        e.varint(tag(REC.upcall, LEN));
        const inner = e.open();
        e.varint(tag(1, VARINT));
        e.u64(rip);
        e.close(inner);
        this.end(at);
      },
    };
  }

  /** Ends the record begun at `at` and writes the buffer out once it holds FLUSH_BYTES. */
  private end(at: number): void {
    this.e.close(at);
    this.records++;
    if (this.e.pos >= FLUSH_BYTES) this.flush();
  }

  private flush(): void {
    if (!this.e.pos) return;
    fs.writeSync(this.fd, this.e.buf, 0, this.e.pos);
    this.e.pos = 0;
  }

  /** Writes out what is buffered; records after this are dropped. */
  close(): void {
    if (this.closed) return;
    this.flush();
    this.closed = true;
  }
}

const big = (v: unknown): bigint => BigInt(String(v ?? 0));

/** Reads a whole trace file's bytes: its header and records, in order. */
export function readTrace(bytes: Uint8Array): { header: TraceHeader; records: TraceRecord[] } {
  const { header: H, record: R } = schema();
  const reader = protobuf.Reader.create(bytes);
  const next = <T>(type: protobuf.Type, what: string): T => {
    const at = reader.pos;
    try {
      return type.toObject(type.decodeDelimited(reader), { longs: String, defaults: true, oneofs: true }) as T;
    } catch (e) {
      throw new TraceFileError(`${what} at byte ${at} cannot be read: ${(e as Error).message}${at === 0 ? ' (not a paravane trace?)' : ''}`);
    }
  };
  if (bytes.length === 0) throw new TraceFileError('the file is empty: not a paravane trace');
  const h = next<{ version: number; paravane: string; engine: string; startHostNs: string; domains: TraceHeader['domains'] }>(H, 'the header');
  if (h.version !== TRACE_VERSION) throw new TraceFileError(`trace format version ${h.version} is not one this paravane reads (${TRACE_VERSION})${h.version === 0 ? ': not a paravane trace?' : ''}`);
  const header: TraceHeader = { version: h.version, paravane: h.paravane, engine: h.engine, startHostNs: big(h.startHostNs), domains: h.domains };
  const records: TraceRecord[] = [];
  while (reader.pos < reader.len) {
    const o = next<Record<string, any>>(R, `record ${records.length + 1}`); // eslint-disable-line @typescript-eslint/no-explicit-any
    let event: TraceEvent;
    if (o.what === 'hypercall') {
      const c = o.hypercall;
      event = { kind: 'hypercall', nr: c.nr, args: (c.args as string[]).map(big), result: big(c.result), site: big(c.site), handlerNs: big(c.handlerNs), transport: c.transport };
    } else if (o.what === 'exit') {
      event = { kind: 'exit', exit: o.exit.kind, detail: o.exit.detail, rip: big(o.exit.rip) };
    } else if (o.what === 'upcall') {
      event = { kind: 'upcall', rip: big(o.upcall.rip) };
    } else {
      throw new TraceFileError(`record ${records.length + 1} holds no event`);
    }
    records.push({ domain: o.domain, vcpu: o.vcpu, hostNs: big(o.hostNs), guestNs: big(o.guestNs), event });
  }
  return { header, records };
}
