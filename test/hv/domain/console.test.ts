// The PV console: the ring backend (src/hv/domain/console.ts) on KVM with a guest
// that writes a line, waits for host input and echoes it, and alone on
// plain memory for hostile indices; and console_io(CONSOLEIO_read).

import { describe, expect, it } from 'vitest';
import { elfGuest, guestMachine, runGuest } from '../../support/kvm-harness.js';
import { ConsoleBackend } from '../../../src/hv/domain/console.js';
import { EventChannels } from '../../../src/hv/events/channels.js';


describe('console ring backend', () => {
  function setup() {
    const page = new Uint8Array(4096), si = new Uint8Array(4096);
    const out: string[] = [];
    const ev = new EventChannels(1, si, 1, { lookup: () => undefined, notify: () => {}, vcpuInfo: () => ({ words: new Int32Array(si.buffer), base: 0 }) });
    const bad: string[] = [];
    const c = new ConsoleBackend(page, ev, (b) => out.push(Buffer.from(b).toString('latin1')), (w) => bad.push(w));
    return { page, v: new DataView(page.buffer), out, c, bad, ev };
  }

  it('copies the out ring across its wrap, frees it, and fills the in ring as space allows', () => {
    const { page, v, out, c, ev } = setup();
    v.setUint32(3080, 0xfffffffe, true); // out_cons: the indices wrap at 2^32
    const msg = 'wrap!';
    for (let i = 0; i < msg.length; i++) page[1024 + ((0xfffffffe + i) % 2048)] = msg.charCodeAt(i);
    v.setUint32(3084, (0xfffffffe + msg.length) >>> 0, true);
    ev.send(c.port);
    expect(out).toEqual(['wrap!']);
    expect(v.getUint32(3080, true)).toBe(v.getUint32(3084, true));
    expect(ev.isPending(c.port)).toBe(true); // the guest is told the space is free
    c.input(new Uint8Array(1500).fill(0x61));
    expect(v.getUint32(3076, true) - v.getUint32(3072, true)).toBe(1024); // the in ring is full
    v.setUint32(3072, 1000, true); // the guest consumed 1000 bytes
    c.service();
    expect(v.getUint32(3076, true)).toBe(1500);
  });

  it('ignores an out_prod that runs more than a ring ahead', () => {
    const { v, out, c, bad } = setup();
    v.setUint32(3084, 5000, true);
    c.service();
    expect(out).toEqual([]);
    expect(bad[0]).toMatch(/out_prod 5000 is 5000 bytes past out_cons 0/);
  });
});

describe('console on KVM', () => {
  const m = guestMachine({ memoryBytes: 32 << 20 });

  it('serves the ring: guest output to the console, host input (given early or late) to the guest', async () => {
    for (const early of [true, false]) {
      const { end, out } = await runGuest(m.hv, elfGuest('ring'), {
        timeoutMs: 10_000,
        created: (d) => {
          if (early) d.consoleInput(Buffer.from('typed early\n'));
          else setTimeout(() => d.consoleInput(Buffer.from('typed late\n')), 30);
        },
      });
      expect(end).toEqual({ kind: 'shutdown', reason: 0, reasonName: 'poweroff' });
      expect(out.toString('latin1')).toBe(`hello from the ring\ngot: typed ${early ? 'early' : 'late'}\n`);
    }
  });
});
