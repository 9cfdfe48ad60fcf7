// `npm run bench -- boot`: domain creation to first hypercall, beside the C
// reference's VM creation to first exit (native/bench/boot-ref.c), in
// alternating batches. paravane's figure includes parsing the ELF, taking
// frames, building the Xen boot layout, the per-domain hypervisor frames,
// a KVM VM mapping the whole machine memory, the vCPU (and its run
// thread), and entering the guest until its first hypercall exits.
//
// Excludes: creating the machine memory (once per machine, as Xen's heap)
// and tearing the domain down (timed separately and printed). The machine
// is by default the one `paravane run` makes for a single domain; with
// --machine it can be larger, which costs more per domain because each
// domain's KVM VM maps all of machine memory (one memory slot).

import { spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { performance } from 'node:perf_hooks';
import { selectEngine } from '../engine/select.js';
import { GUEST_DIR } from '../engine/probe-guest.js';
import { Hypervisor, machineBytesFor } from '../hv/hypervisor.js';
import { HYPERCALL_PORT } from '../hv/mm/xen-space.js';
import { quantile, summarize } from './stats.js';
import { builtGuest, MIB } from './guests.js';

const REF = fileURLToPath(new URL('../../native/build/bench/boot-ref', import.meta.url));
const WARMUP = 20;

export interface BootBenchResult {
  domains: number;
  domainMiB: number;
  machineMiB: number;
  paravaneUs: ReturnType<typeof summarize> & { p90: number };
  cUs: ReturnType<typeof summarize> & { p90: number };
  destroyUs: ReturnType<typeof summarize>;
  ratio: number;
  ratioP90: number;
}

function withP90(samples: number[]): ReturnType<typeof summarize> & { p90: number } {
  return { ...summarize(samples), p90: quantile([...samples].sort((a, b) => a - b), 0.9) };
}

function referenceBoots(mib: number, n: number): number[] {
  const r = spawnSync(REF, [GUEST_DIR, String(mib), String(n)], { encoding: 'utf8' });
  if (r.status !== 0) throw new Error(`${REF} failed: ${r.stderr || r.error?.message}`);
  return (JSON.parse(r.stdout) as { ns: number[] }).ns.map((ns) => ns / 1000);
}

export async function runBootBench(opts: { domains?: number; memoryMiB?: number; machineMiB?: number } = {}): Promise<BootBenchResult> {
  const domains = opts.domains ?? 60;
  const mib = opts.memoryMiB ?? 16;
  // By default the machine `paravane run` builds for one domain of this size.
  const machineMiB = opts.machineMiB ?? machineBytesFor(mib * MIB) / MIB;
  const engine = selectEngine('kvm');
  const hv = new Hypervisor(engine, { memoryBytes: machineMiB * MIB });
  const file = builtGuest('elf', 'transports');
  const pv: number[] = [];
  const c: number[] = [];
  const destroy: number[] = [];
  const batch = 20;
  const bootOnce = (): [number, number] => {
    const t0 = performance.now();
    const d = hv.createDomain(file, { memoryBytes: mib * MIB });
    d.start();
    const exit = d.vcpus[0]!.engine.run();
    const t1 = performance.now();
    if (exit.kind !== 'io' || exit.port !== HYPERCALL_PORT) throw new Error(`boot bench: first exit was ${exit.kind}, not a hypercall`);
    hv.destroyDomain(d);
    return [(t1 - t0) * 1000, (performance.now() - t1) * 1000];
  };
  try {
    // Warm-up, not measured: the first domains also pay for compiling the
    // builder and hypervisor code (the C reference is compiled ahead).
    for (let i = 0; i < WARMUP; i++) bootOnce();
    for (let done = 0; done < domains; done += batch) {
      const n = Math.min(batch, domains - done);
      c.push(...referenceBoots(mib, n));
      for (let i = 0; i < n; i++) {
        const [create, teardown] = bootOnce();
        pv.push(create);
        destroy.push(teardown);
      }
    }
  } finally {
    hv.close();
    engine.close();
  }
  const paravaneUs = withP90(pv);
  const cUs = withP90(c);
  return {
    domains, domainMiB: mib, machineMiB, paravaneUs, cUs, destroyUs: summarize(destroy),
    ratio: paravaneUs.median / cUs.median, ratioP90: paravaneUs.p90 / cUs.p90,
  };
}

export function formatBootBench(r: BootBenchResult): string {
  const f = (s: { median: number; p90: number }) => `median ${(s.median / 1000).toFixed(3)} ms, p90 ${(s.p90 / 1000).toFixed(3)} ms`;
  return [
    `domain creation to first hypercall, ${r.domains} domains of ${r.domainMiB} MiB (machine memory ${r.machineMiB} MiB), alternating batches of 20 after ${WARMUP} unmeasured`,
    `  C reference, VM creation to first exit (native/bench/boot-ref.c, ${r.domainMiB} MiB)  ${f(r.cUs)}`,
    `  paravane, createDomain + run to first hypercall                       ${f(r.paravaneUs)}`,
    `  ratio paravane / C: median ${r.ratio.toFixed(2)}, p90 ${r.ratioP90.toFixed(2)} (target <= 2.5)`,
    `  domain destruction (VM, vCPU off its CPU thread, frames back to the pool): median ${(r.destroyUs.median / 1000).toFixed(3)} ms`,
  ].join('\n') + '\n';
}
