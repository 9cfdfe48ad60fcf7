// `npm run fuzz -- --calls N --seed S`: the hypercall fuzzer on the
// scripted engine (no /dev/kvm needed). Prints the rate, the errno
// histogram per hypercall and every finding with the seed and index that
// replay it; exits 1 if any. Inputs: the command line (trusted).

import { Command } from 'commander';
import { hypercallName } from './generate.js';
import { formatReport } from './report.js';
import { runFuzz } from './runner.js';

const program = new Command()
  .name('npm run fuzz --')
  .description('hypercall fuzzer: a seeded guest issues fuzzed hypercalls beside a victim domain')
  .option('--calls <n>', 'hypercalls to issue', (v) => positive(v, '--calls'), 100_000)
  .option('--seed <s>', 'PRNG seed (an integer)', (v) => integer(v, '--seed'), 1)
  .option('--audit-every <n>', 'page-type audit and victim check every n calls', (v) => positive(v, '--audit-every'), 1000)
  .option('--trace-from <i>', 'print each call from index i on (replaying a finding)', (v) => integer(v, '--trace-from'))
  .option('--json', 'print the report as JSON')
  .action((o: { calls: number; seed: number; auditEvery: number; traceFrom?: number; json?: boolean }) => {
    const hex = (v: bigint) => `0x${v.toString(16)}`;
    const report = runFuzz({
      calls: o.calls, seed: o.seed, auditEvery: o.auditEvery, traceFrom: o.traceFrom,
      trace: o.traceFrom === undefined ? undefined : (i, c) => {
        const writes = c.writes.map((w) => `${hex(w.va)}:${Buffer.from(w.bytes).toString('hex')}`).join(' ');
        process.stdout.write(`call ${i}: ${hypercallName(c.nr)}(${c.args.map(hex).join(', ')}) via ${c.via}${c.stack ? ` stack ${Buffer.from(c.stack).toString('hex')}` : ''}${writes ? `\n  writes ${writes}` : ''}\n`);
      },
    });
    process.stdout.write(o.json ? JSON.stringify(report, null, 2) + '\n' : formatReport(report));
    if (report.findings.length) process.exitCode = 1;
  });

function positive(v: string, flag: string): number {
  const n = Number(v);
  if (!Number.isSafeInteger(n) || n <= 0) program.error(`${flag} must be a positive integer, not "${v}"`);
  return n;
}

function integer(v: string, flag: string): number {
  const n = Number(v);
  if (!Number.isSafeInteger(n) || n < 0) program.error(`${flag} must be a non-negative integer, not "${v}"`);
  return n;
}

program.parse();
