// The layering of src/, checked by dependency-cruiser on the real import
// graph (type-only imports included): no import cycles; only the KVM
// engine loads the native addon, and only src/engine/ reaches into the KVM
// engine (everything else gets an engine from selectEngine); the
// hypervisor core imports nothing from its front ends (cli, bench, fuzz),
// and the engine layer nothing from the core.

import { describe, expect, it } from 'vitest';
import * as path from 'node:path';
import { cruise, type ICruiseResult, type IForbiddenRuleType } from 'dependency-cruiser';

const ROOT = path.resolve(import.meta.dirname, '../..');

const rules: IForbiddenRuleType[] = [
  { name: 'no-cycles', severity: 'error', comment: 'src/ has no import cycle', from: { path: '^src/' }, to: { circular: true } },
  {
    name: 'addon-only-in-kvm-engine', severity: 'error', comment: 'only src/engine/kvm/ loads the native addon',
    from: { path: '^src/', pathNot: '^src/engine/kvm/' }, to: { path: ['^native/', '^src/engine/kvm/native\\.ts$'] },
  },
  {
    // One exception: the exit benchmark measures the KVM engine's own cross-thread kick (kick-latency.ts).
    name: 'kvm-engine-behind-select', severity: 'error', comment: 'outside src/engine/, engines come from selectEngine',
    from: { path: '^src/', pathNot: '^src/engine/' }, to: { path: '^src/engine/kvm/', pathNot: '^src/engine/kvm/kick-latency\\.ts$' },
  },
  {
    name: 'core-without-front-ends', severity: 'error', comment: 'src/hv imports nothing from cli, bench or fuzz',
    from: { path: '^src/hv/' }, to: { path: '^src/(cli|bench|fuzz)/' },
  },
  {
    name: 'engine-without-core', severity: 'error', comment: 'the engine layer knows nothing of the hypervisor',
    from: { path: '^src/engine/' }, to: { path: '^src/(hv|cli|bench|fuzz)/' },
  },
];

describe('layering of src/', () => {
  it('has no import cycle, keeps the addon in the KVM engine and the core free of its front ends', async () => {
    const result = await cruise(['src'], {
      baseDir: ROOT,
      tsPreCompilationDeps: true, // type-only imports count too
      tsConfig: { fileName: 'tsconfig.json' },
      exclude: { path: '^src/abi/generated/' },
      ruleSet: { forbidden: rules },
      validate: true,
    });
    const output = result.output as ICruiseResult;
    // The graph is real: it found the modules of every layer.
    const modules = output.modules.map((m) => m.source);
    for (const m of ['src/hv/cpu/vcpu.ts', 'src/engine/kvm/kvm-engine.ts', 'src/cli/main.ts', 'src/hv/hypercalls/index.ts']) expect(modules).toContain(m);
    const violations = output.summary.violations.map((v) => `${v.rule.name}: ${v.from} -> ${v.to}${v.cycle ? ` (cycle ${v.cycle.map((c) => c.name).join(' -> ')})` : ''}`);
    expect(violations).toEqual([]);
  }, 60_000);

  it('reports a forbidden import that exists (the check is not vacuous)', async () => {
    // Cruise the real tree with one rule turned around: the core's imports of src/engine/ (which exist) must be found.
    const result = await cruise(['src/hv'], {
      baseDir: ROOT, tsPreCompilationDeps: true, tsConfig: { fileName: 'tsconfig.json' },
      ruleSet: { forbidden: [{ name: 'probe', severity: 'error', from: { path: '^src/hv/' }, to: { path: '^src/engine/' } }] },
      validate: true,
    });
    expect((result.output as ICruiseResult).summary.violations.length).toBeGreaterThan(0);
  }, 60_000);
});
