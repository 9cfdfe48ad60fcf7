// Creating and destroying many VMs in a row leaks no file descriptors and
// no mappings: every memfd, VM, vCPU and kvm_run mapping is released at
// destroy time, not left to the garbage collector.

import { describe, expect, it } from 'vitest';
import { loadAddon } from '../../src/engine/kvm/native.js';
import * as fs from 'node:fs';
import * as v8 from 'node:v8';
import * as vm from 'node:vm';
import { KvmEngine } from '../../src/engine/kvm/kvm-engine.js';
import { HAVE_KVM } from '../support/kvm-gate.js';
import { bootTestGuest, PORT, runToExit } from '../../src/engine/probe-guest.js';

v8.setFlagsFromString('--expose-gc');
/** The garbage collector, to run finalizers of buffers whose memory is already unmapped. */
const gc = vm.runInNewContext('gc') as () => void;

function fdCount(): number {
  return fs.readdirSync('/proc/self/fd').length;
}

function threadCount(): number {
  return fs.readdirSync('/proc/self/task').length;
}

function maps(): string[] {
  return fs.readFileSync('/proc/self/maps', 'utf8').trim().split('\n');
}

/** Mappings the engine makes: machine memory (memfd) and kvm_run areas. */
function engineMaps(): number {
  return maps().filter((l) => /memfd:paravane|kvm-vcpu/.test(l)).length;
}

describe.skipIf(!HAVE_KVM).each(['thread', 'direct'] as const)('KVM engine resources (run mode %s)', (runMode) => {
  it('leaks no file descriptors, mappings or threads over 200 VMs created, run and destroyed', async () => {
    const engine = new KvmEngine({ runMode });
    try {
      bootTestGuest(engine, 'pio').destroy(); // warm up: addon, signal handler
      const fds = fdCount();
      const threads = threadCount();
      const all = maps().length;
      const ours = engineMaps();
      for (let i = 0; i < 200; i++) {
        const g = bootTestGuest(engine, 'pio');
        expect(runToExit(g.vcpu)).toMatchObject({ kind: 'io', port: PORT.A });
        if (i === 100) expect(engineMaps()).toBeGreaterThan(ours); // the mappings do exist while alive
        // Finalizers of earlier, unmapped buffers run while this guest's
        // mappings may reuse their addresses.
        if (i % 10 === 0) {
          gc();
          await new Promise((resolve) => setImmediate(resolve)); // native finalizers run from the event loop
        }
        g.destroy();
      }
      expect(fdCount()).toBe(fds);
      // All vCPUs share the core thread's one CPU thread: none is added per vCPU.
      expect(threadCount()).toBe(threads);
      expect(loadAddon().vcpuThreadWorkers()).toBe(1);
      expect(engineMaps()).toBe(ours);
      // Other mappings may come and go with the JavaScript heap, but not one per VM.
      expect(maps().length - all).toBeLessThan(50);
    } finally {
      engine.close();
    }
  });
});

describe.skipIf(!HAVE_KVM)('the CPU thread', () => {
  it('runs every vCPU of the core thread: vCPUs add no threads, and each exits to its own run()', () => {
    // Some kernels add a task per VM (KVM's NX recovery worker): count it with a direct-mode VM.
    const direct = new KvmEngine({ runMode: 'direct' });
    const before = threadCount();
    const probe = bootTestGuest(direct, 'pio');
    runToExit(probe.vcpu); // the task, if any, starts with the first run
    const perVm = threadCount() - before;
    probe.destroy();
    direct.close();

    const engine = new KvmEngine({ runMode: 'thread' });
    try {
      bootTestGuest(engine, 'pio').destroy(); // the CPU thread exists from the first vCPU on
      const idle = threadCount();
      const guests = Array.from({ length: 6 }, () => bootTestGuest(engine, 'pio'));
      // Taking turns, each vCPU's run() returns its own guest's exit: each
      // guest gets its own value back from the `in`.
      for (const g of guests) expect(runToExit(g.vcpu)).toMatchObject({ kind: 'io', port: PORT.A });
      guests.forEach((g, i) => {
        const e = runToExit(g.vcpu);
        expect(e).toMatchObject({ kind: 'io', port: PORT.B, direction: 'in' });
        if (e.kind === 'io') e.data[0] = i;
      });
      guests.forEach((g, i) => {
        const e = runToExit(g.vcpu);
        expect(e).toMatchObject({ kind: 'io', port: PORT.C });
        if (e.kind === 'io') expect(e.data[0]! | (e.data[1]! << 8)).toBe(0x100 + i);
      });
      expect(threadCount()).toBe(idle + 6 * perVm);
      expect(loadAddon().vcpuThreadWorkers()).toBe(1);
      for (const g of guests) g.destroy();
      expect(threadCount()).toBe(idle);
    } finally {
      engine.close();
    }
  });

  it('a deadline of a vCPU that is not running does not end another vCPU\'s run', () => {
    const engine = new KvmEngine({ runMode: 'thread' });
    const a = bootTestGuest(engine, 'spin'), b = bootTestGuest(engine, 'spin');
    try {
      const now = process.hrtime.bigint();
      // a's deadline fires while b runs: b goes on until its own deadline.
      a.vcpu.setDeadline(now + 2_000_000n);
      b.vcpu.setDeadline(now + 20_000_000n);
      expect(b.vcpu.run().kind).toBe('interrupted');
      expect(process.hrtime.bigint() - now).toBeGreaterThanOrEqual(20_000_000n);
      // a's deadline is kept for a: its next run ends at once (a spinning guest with its deadline
      // lost would never return; the bound leaves room for this host's stalls with other tests beside).
      const t = process.hrtime.bigint();
      expect(a.vcpu.run().kind).toBe('interrupted');
      expect(process.hrtime.bigint() - t).toBeLessThan(10_000_000_000n); // not a latency check: lost, it would spin forever
    } finally {
      a.destroy();
      b.destroy();
      engine.close();
    }
  });
});
