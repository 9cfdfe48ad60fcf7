// A measurement the KVM engine offers its benchmarks: how long a kick from
// another thread takes to end a run (a worker thread calls the addon's
// kick() while this thread runs a spinning probe guest). Here because only
// src/engine/kvm/ loads the addon. Inputs: none from guests.

import { Worker } from 'node:worker_threads';
import { bootTestGuest } from '../probe-guest.js';
import type { Engine } from '../types.js';
import { addonPath } from './native.js';

/** Latency of kick() from another thread: from the call to run() returning, in µs. */
export async function kickLatency(engine: Engine, samples: number): Promise<number[]> {
  const g = bootTestGuest(engine, 'spin');
  // ctl[0]: 1 while the main thread is about to run the vCPU; ctl[1]: sample count.
  const ctl = new Int32Array(new SharedArrayBuffer(8));
  const stamp = new BigInt64Array(new SharedArrayBuffer(8));
  const handle = (g.vcpu as unknown as { kickHandle: number }).kickHandle;
  const worker = new Worker(`
    const { workerData: d } = require('node:worker_threads');
    const addon = require(d.addon);
    const sleeper = new Int32Array(new SharedArrayBuffer(4));
    for (let i = 0; i < d.samples; i++) {
      while (Atomics.wait(d.ctl, 0, 0) === 'ok' && Atomics.load(d.ctl, 0) === 0) {}
      Atomics.wait(sleeper, 0, 0, 1 + Math.random());   // let the vCPU get into the guest
      Atomics.store(d.ctl, 0, 0);
      d.stamp[0] = process.hrtime.bigint();
      addon.kick(d.handle);
    }
  `, { eval: true, workerData: { addon: addonPath(), handle, ctl, stamp, samples } });
  const out: number[] = [];
  try {
    for (let i = 0; i < samples; i++) {
      Atomics.store(ctl, 0, 1);
      Atomics.notify(ctl, 0);
      if (g.vcpu.run().kind !== 'interrupted') throw new Error('spin guest exited');
      out.push(Number(process.hrtime.bigint() - stamp[0]!) / 1000);
    }
  } finally {
    await worker.terminate();
    g.destroy();
  }
  return out;
}

