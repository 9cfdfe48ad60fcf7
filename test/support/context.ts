// Test fixture: a complete hypercall context (src/hv/hypercalls/context.ts)
// from the parts a test gives. A part the test did not give is there, as
// the contract says every part is, but throws when a handler uses it: a
// test of one family of hypercalls fails loudly if another family's part
// is touched.

import type { HypercallContext } from '../../src/hv/hypercalls/context.js';

/** An object every property read of which throws: the part `what` was not expected to be used. */
export function unexpected<T extends object>(what: string): T {
  return new Proxy({} as T, {
    get(_t, key) {
      if (key === 'then') return undefined; // not a promise
      throw new Error(`this test did not expect the hypercall to use ${what}.${String(key)}`);
    },
  });
}

/** The context a test gives, completed: `guest` and `domid` are required, the rest defaults to parts that throw. */
export function testContext<T extends Partial<HypercallContext>>(given: T & Pick<HypercallContext, 'guest' | 'domid'>): HypercallContext & T {
  const fail = (what: string) => () => { throw new Error(`this test did not expect ${what}`); };
  const base = {
    nrPages: 64, maxPages: 64, handle: new Uint8Array(16), vmAssist: 0n, m2pVirt: 0n,
    consoleWrite: fail('console output'), consoleRead: () => new Uint8Array(0), shutdown: fail('a shutdown'),
    continueWith: fail('a continuation'), crash: (reason: string) => { throw new Error(`crash: ${reason}`); },
    mm: unexpected('mm'), cpu: unexpected('cpu'), events: unexpected('events'), sched: unexpected('sched'), grants: unexpected('grants'), grantWorld: unexpected('grantWorld'),
  };
  // Getters in `given` (a guest view that follows CR3) stay getters.
  return Object.defineProperties(base, Object.getOwnPropertyDescriptors(given)) as unknown as HypercallContext & T;
}
