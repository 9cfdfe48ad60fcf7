// Generated files are committed; they must be exactly what `npm run abi`
// produces from the schemas today.

import { describe, expect, it } from 'vitest';
import { generateAll, staleFiles } from '../../src/abi/generate.js';
import { loadAbi } from '../../src/abi/schema.js';
import { ROOT } from './probe-harness.js';

describe('generated ABI files', () => {
  it('are up to date with abi/*.proto (run `npm run abi` if this fails)', () => {
    expect(staleFiles(ROOT, generateAll())).toEqual([]);
  });

  it('list every Xen x86-64 hypercall 0 to 42 that Xen defines, and the experimental example', () => {
    const model = loadAbi();
    const numbers = new Set(model.hypercalls.map((h) => Number(h.value)));
    for (let nr = 0; nr <= 42; nr++) if (nr !== 11) expect(numbers.has(nr), `hypercall ${nr}`).toBe(true);
    expect(model.hypercalls.find((h) => h.cName === '__HYPERVISOR_pvbench_op')?.value).toBe(64n);
  });
});
