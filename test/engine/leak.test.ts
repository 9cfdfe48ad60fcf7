// Creating and destroying many VMs in a row leaks no file descriptors and
// no mappings: every memfd, VM, vCPU and kvm_run mapping is released at
// destroy time, not left to the garbage collector.

import { describe, expect, it } from 'vitest';
import { loadAddon } from '../../src/engine/kvm/native.js';
import * as fs from 'node:fs';
import * as v8 from 'node:v8';
import * as vm from 'node:vm';
import { KvmEngine } from '../../src/engine/kvm/kvm-engine.js';
import { HAVE_KVM } from './kvm-gate.js';
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
      // Finished vCPUs park their threads for the next one, at most four.
      expect(threadCount()).toBe(threads);
      expect(loadAddon().vcpuThreadPoolSize()).toBeLessThanOrEqual(4);
      expect(engineMaps()).toBe(ours);
      // Other mappings may come and go with the JavaScript heap, but not one per VM.
      expect(maps().length - all).toBeLessThan(50);
    } finally {
      engine.close();
    }
  });
});

describe.skipIf(!HAVE_KVM)('vCPU threads', () => {
  it('park at most four finished threads and reuse them for new vCPUs', () => {
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
      const guests = Array.from({ length: 6 }, () => bootTestGuest(engine, 'pio'));
      for (const g of guests) expect(runToExit(g.vcpu)).toMatchObject({ kind: 'io', port: PORT.A });
      for (const g of guests) g.destroy();
      expect(loadAddon().vcpuThreadPoolSize()).toBe(4);
      const idle = threadCount();
      // The next vCPUs take parked threads: only the per-VM tasks appear.
      const again = Array.from({ length: 3 }, () => bootTestGuest(engine, 'pio'));
      for (const g of again) expect(runToExit(g.vcpu)).toMatchObject({ kind: 'io', port: PORT.A });
      expect(threadCount()).toBe(idle + 3 * perVm);
      expect(loadAddon().vcpuThreadPoolSize()).toBe(1);
      for (const g of again) g.destroy();
      expect(loadAddon().vcpuThreadPoolSize()).toBe(4);
      expect(threadCount()).toBe(idle);
    } finally {
      engine.close();
    }
  });
});
