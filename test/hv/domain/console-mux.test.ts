// Each console line once (src/hv/domain/console-mux.ts): a guest written
// for Xen writes every line with console_io and to its PV console ring, a
// guest written for paravane with console_io alone; the console shows the
// ring's text for the first and the console_io text for the second, in
// order, and the log has every console_io write. On the mux alone, then on
// the scripted engine through the core's own hypercall path (no KVM).

import { afterEach, describe, expect, it } from 'vitest';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { ConsoleMux, HOLD_MAX } from '../../../src/hv/domain/console-mux.js';
import { ConsoleIo, Hypercall } from '../../../src/abi/generated/xen.js';
import { EventChannelOp as EvtchnOp } from '../../../src/abi/generated/event-channel.js';
import { SchedOp } from '../../../src/abi/generated/sched.js';
import type { ScriptedCpu } from '../../../src/engine/scripted/scripted-cpu.js';
import { parseGuestKernel } from '../../../src/hv/domain/elf.js';
import { ELF_DIR, scriptedGuest, type ScriptedGuest } from '../../support/scripted.js';

const text = (parts: Uint8Array[]) => Buffer.concat(parts).toString('latin1');
const bytes = (s: string) => Buffer.from(s, 'latin1');

describe('console mux', () => {
  function mux() {
    const console: Uint8Array[] = [], log: Uint8Array[] = [];
    return { m: new ConsoleMux({ console: (b) => console.push(b), log: (b) => log.push(b) }), console, log };
  }

  it('holds console_io text until settled, then shows it once, in order', () => {
    const { m, console, log } = mux();
    m.consoleIo(bytes('one\n'));
    m.consoleIo(bytes('two\n'));
    expect(text(console)).toBe('');
    expect(text(log)).toBe('one\ntwo\n');
    m.settle();
    m.settle();
    expect(text(console)).toBe('one\ntwo\n');
  });

  it('drops held text its ring twin replaces, and shows no console_io text once the ring is in use', () => {
    const { m, console, log } = mux();
    m.consoleIo(bytes('PANIC: x\n'));
    m.ring(bytes('PANIC: x\n'));
    m.consoleIo(bytes('later\n'));
    m.settle();
    m.ring(bytes('later\n'));
    expect(m.ringInUse).toBe(true);
    expect(text(console)).toBe('PANIC: x\nlater\n');
    expect(text(log)).toBe('PANIC: x\nlater\n');
  });

  it('holds no more than HOLD_MAX bytes: a guest that writes more without another call has it shown at once', () => {
    const { m, console, log } = mux();
    const chunk = new Uint8Array(4096).fill(0x61);
    for (let i = 0; i < HOLD_MAX / chunk.length; i++) m.consoleIo(chunk);
    expect(console).toEqual([]); // exactly HOLD_MAX held
    m.consoleIo(Uint8Array.of(0x62));
    expect(console.reduce((n, b) => n + b.length, 0)).toBe(HOLD_MAX + 1);
    expect(log.reduce((n, b) => n + b.length, 0)).toBe(HOLD_MAX + 1);
    m.consoleIo(Uint8Array.of(0x63)); // held again, from nothing
    expect(console.reduce((n, b) => n + b.length, 0)).toBe(HOLD_MAX + 1);
  });

  it('keeps its own copy of a write (the caller may reuse its buffer)', () => {
    const { m, console } = mux();
    const buf = bytes('abc');
    m.consoleIo(buf);
    buf.fill(0x7a);
    m.settle();
    expect(text(console)).toBe('abc');
  });
});

describe('console output of a domain (scripted engine)', () => {
  let g: ScriptedGuest;
  afterEach(() => g?.hv.close());
  const VIRT_BASE = parseGuestKernel(fs.readFileSync(path.join(ELF_DIR, 'minimal.elf'))).virtBase;
  const OUT = 1024, OUT_PROD = 3084;
  const stop = () => ({ kind: 'interrupted' as const });

  function guest() {
    const console: Uint8Array[] = [], log: Uint8Array[] = [];
    g = scriptedGuest('minimal', { console: (b) => console.push(Uint8Array.from(b)), log: (b) => log.push(Uint8Array.from(b)) });
    return { console, log };
  }
  const arg = () => g.d.layout.stackTop - 0x800n;
  const call = (nr: number, args: bigint[], before?: (c: ScriptedCpu) => void) => {
    let rc = 0n;
    g.play((c) => { before?.(c); return c.hypercall(nr, args); }, (c) => { rc = BigInt.asIntN(64, c.regs.rax); return stop(); });
    return rc;
  };
  const consoleIo = (s: string) => call(Hypercall.HYPERVISOR_console_io, [BigInt(ConsoleIo.CONSOLEIO_write), BigInt(s.length), arg()], (c) => c.write(arg(), bytes(s)));
  let prod = 0;
  /** What a Xen guest's ring driver does: the text into `out`, out_prod moved, the console port notified. */
  const ringWrite = (s: string) => {
    const page = VIRT_BASE + (BigInt(g.d.layout.pfn.console) << 12n);
    return call(Hypercall.HYPERVISOR_event_channel_op, [BigInt(EvtchnOp.EVTCHNOP_send), arg()], (c) => {
      for (let i = 0; i < s.length; i++) c.write(page + BigInt(OUT + ((prod + i) % 2048)), bytes(s[i]!));
      prod += s.length;
      const p = new Uint8Array(4);
      new DataView(p.buffer).setUint32(0, prod, true);
      c.write(page + BigInt(OUT_PROD), p);
      const port = new Uint8Array(4);
      new DataView(port.buffer).setUint32(0, g.d.consoleRing.port, true);
      c.write(arg(), port);
    });
  };
  const shutdown = () => call(Hypercall.HYPERVISOR_sched_op, [BigInt(SchedOp.SCHEDOP_shutdown), arg()], (c) => c.write(arg(), new Uint8Array(4)));

  it('a guest that writes each line both ways (as XTF does) shows each line once, from its ring', () => {
    const { console, log } = guest();
    prod = 0;
    for (const line of ['--- Xen Test Framework ---\n', 'Environment: PV 64bit\n', 'PANIC: boom\n']) {
      expect(consoleIo(line)).toBe(0n);
      expect(ringWrite(line)).toBe(0n);
    }
    shutdown();
    expect(g.d.end?.kind).toBe('shutdown');
    expect(text(console)).toBe('--- Xen Test Framework ---\nEnvironment: PV 64bit\nPANIC: boom\n');
    expect(text(log)).toBe(text(console));
  });

  it('a guest with console_io alone shows its lines in order, each once, before its next other call takes effect', () => {
    const { console } = guest();
    consoleIo('first\n');
    expect(text(console)).toBe('');
    expect(call(Hypercall.HYPERVISOR_xen_version, [0n, 0n])).toBeGreaterThan(0n);
    expect(text(console)).toBe('first\n');
    consoleIo('second\n');
    consoleIo('third\n');
    shutdown();
    expect(text(console)).toBe('first\nsecond\nthird\n');
  });

  it('a domain that ends with text held shows it (a crash report is not lost)', () => {
    const { console } = guest();
    consoleIo('last words\n');
    g.d.crash('test');
    expect(text(console)).toBe('last words\n');
  });

  it('a reader that pauses the domain on a held line pauses it before the next call, which is made on resume', () => {
    const console: string[] = [];
    g = scriptedGuest('minimal', { console: (b) => { console.push(Buffer.from(b).toString('latin1')); g.d.pause(); } });
    consoleIo('verdict\n');
    shutdown();
    expect(console).toEqual(['verdict\n']);
    expect(g.d.state).toBe('paused'); // the shutdown has not happened: the domain can still be inspected
    expect(g.d.end).toBeUndefined();
    g.d.start();
    g.vcpu.handleExit(g.vcpu.run()); // the guest resumes at its hypercall stub: the shutdown is issued again
    expect(g.d.end).toEqual({ kind: 'shutdown', reason: 0, reasonName: 'poweroff' });
    expect(console).toEqual(['verdict\n']);
    expect(g.d.hypercallCounts[Hypercall.HYPERVISOR_sched_op]).toBe(1); // issued twice, made once
  });
});
