// The PV-against-full-virtualization benchmark's harness (src/bench/pvfv.ts)
// on stand-in modes (node scripts printing what the workloads print): the
// figures parsed from a console with firmware noise, medians per mode,
// ratios against PV, and the modes that cannot run or fail saying why. No
// timing is asserted.

import { describe, expect, it } from 'vitest';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { formatPvfv, parseCycles, runPvfvBench, type Mode } from '../../src/bench/pvfv.js';

describe('parseCycles', () => {
  it('takes the workloads\' figures from a serial console, firmware text and \\r included', () => {
    const out = 'SeaBIOS\r\nBooting from ROM..compute: primes below 2000000: 148933, checksum 0x1\r\ncompute: 58652412 cycles\r\n'
      + 'nano: platform native\r\nnano: call/ret 49 cycles per op (2000 ops)\r\nnano: divide error 1249 cycles per op (2000 ops)\r\nnano: 4000 faults handled\r\n'
      + 'ptemod: single 290 cycles per entry (4096 entries)\r\nptemod: batch 52 cycles per entry (4096 entries)\r\nptemod: checksum 12288\r\n'
      + 'conio: platform native\r\nabcdefghijklmnopqrstuvwxyzabcdefghijk\r\nconio: 17970 cycles per char (4096 chars)\r\n'
      + 'aspace: create-enter-destroy 21748 cycles per round (64 rounds)\r\naspace: checksum 73984\r\n'
      + 'ctxsw: switch 6233 cycles per switch (1000 switches)\r\n'
      + 'ticks: 298 of 300 ticks of 1000 us in 300 ms, lost 2\r\n';
    expect(parseCycles(out)).toEqual({ compute: 58652412, 'nano call/ret': 49, 'nano divide error': 1249, 'ptemod single': 290, 'ptemod batch': 52,
      conio: 17970, 'aspace create-enter-destroy': 21748, 'ctxsw switch': 6233, 'ticks lost': 2 });
  });
});

describe('runPvfvBench', () => {
  /** A stand-in mode: prints figures scaled by `k` for each workload (ticks loses `busy` more beside neighbours) and exits with `status`. */
  const standIn = (name: string, k: number, status = 0, skipped?: string): Mode => ({
    name, what: `stand-in ${name}`, poweroffStatus: 0, skipped,
    command: (w, busy = 0) => [process.execPath, ['-e', `${w === 'compute' ? `console.log('compute: ${100 * k} cycles')`
      : w === 'ticks' ? `console.log('[ticks] ticks: 290 of 300 ticks of 1000 us in 300 ms, lost ${k + busy}')`
        : `console.log('nano: call/ret ${10 * k} cycles per op (2000 ops)')`}; process.exit(${status})`]],
  });

  it('runs a mode\'s busy neighbours as processes of their own beside ticks, and waits for them', async () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'pvfv-'));
    try {
      const mode: Mode = {
        ...standIn('qemu-tcg', 1),
        // Each neighbour leaves a file behind when it ends: all must have ended when the run returns.
        neighbour: () => [process.execPath, ['-e', `require('fs').writeFileSync(require('path').join(${JSON.stringify(dir)}, String(process.pid)), '')`]],
      };
      const r = await runPvfvBench({ runs: 1, limitSeconds: 30, kvm: '/dev/kvm' }, [mode]);
      expect(r.modes[0]!.cycles['ticks lost beside 2 busy']).toBe(1); // the command itself had no neighbours
      expect(fs.readdirSync(dir)).toHaveLength(2);
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });

  it('runs a mode only the workloads it can (the host process: compute)', async () => {
    const r = await runPvfvBench({ runs: 1, limitSeconds: 30, kvm: '/dev/kvm' }, [{ ...standIn('host', 1), workloads: ['compute'] }]);
    expect(r.modes[0]!.cycles).toEqual({ compute: 100 });
  });

  it('runs every workload in every mode that can run, and prints medians with their ratio to PV', async () => {
    const r = await runPvfvBench({ runs: 2, limitSeconds: 30, kvm: '/dev/kvm' },
      [standIn('pv', 1), standIn('qemu-tcg', 3), standIn('qemu-kvm', 2, 0, 'no /dev/kvm'), standIn('broken', 1, 3)]);
    // Each workload alone, and ticks again beside two busy neighbours (in the same command: no neighbour processes here).
    expect(r.modes[0]!.cycles).toEqual({ compute: 100, 'nano call/ret': 10, 'ticks lost': 1, 'ticks lost beside 2 busy': 3 });
    expect(r.modes[1]!.cycles).toEqual({ compute: 300, 'nano call/ret': 30, 'ticks lost': 3, 'ticks lost beside 2 busy': 5 });
    expect(r.modes[2]!.skipped).toBe('no /dev/kvm');
    expect(r.modes[3]!.problem).toMatch(/^compute: ended with status 3, not a poweroff/);
    const text = formatPvfv(r);
    expect(text).toMatch(/compute +100 +300 \(3\.00x\)/);
    expect(text).toMatch(/nano call\/ret +10 +30 \(3\.00x\)/);
    expect(text).toContain('qemu-kvm  stand-in qemu-kvm: not run (no /dev/kvm)');
    expect(text).toContain('broken    stand-in broken: failed (compute: ended with status 3, not a poweroff');
  });
});
