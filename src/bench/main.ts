// `npm run bench -- <name>`: benchmarks that print ratios measured side by
// side in one run. Results go in docs/benchmarks.md with the command.

import { Command } from 'commander';
import { formatExitBench, runExitBench } from './exit.js';
import { formatHypercallBench, runHypercallBench } from './hypercall.js';
import { formatBootBench, runBootBench } from './boot.js';
import { formatMmuBench, formatMmuInProcess, runMmuBench, runMmuInProcess } from './mmu.js';
import { formatTimeBench, runTimeBench } from './time.js';
import { formatTrapBench, runTrapBench } from './trap.js';
import { formatPingpong, runPingpongBench, type PingpongWait } from './pingpong.js';
import { formatLinuxBench, runLinuxBench } from './linux.js';
import { formatPvfv, pvfvModes, runPvfvBench } from './pvfv.js';
import { formatTraceBench, runTraceBench } from './trace.js';
import { describeHost, pvfvReport } from './pvfv-report.js';
import * as fs from 'node:fs';
import { spawnSync } from 'node:child_process';
import { EngineUnavailableError } from '../engine/errors.js';

const program = new Command()
  .name('npm run bench --')
  .description('paravane benchmarks');

program
  .command('exit')
  .description('exit round trip of the TypeScript KVM engine against a C reference, and kick latency')
  .option('--exits <n>', 'exits per round', (v) => Number.parseInt(v, 10), 20000)
  .option('--rounds <n>', 'alternating rounds', (v) => Number.parseInt(v, 10), 5)
  .option('--json', 'print JSON')
  .action(async (o: { exits: number; rounds: number; json?: boolean }) => {
    if (!(o.exits > 0) || !(o.rounds > 0)) program.error('--exits and --rounds must be positive integers');
    const r = await runExitBench({ exits: o.exits, rounds: o.rounds });
    process.stdout.write(o.json ? JSON.stringify(r, null, 2) + '\n' : formatExitBench(r));
  });

const positive = (v: string): number => {
  const n = Number.parseInt(v, 10);
  if (!(n > 0) || String(n) !== v) program.error(`expected a positive integer, not "${v}"`);
  return n;
};

program
  .command('hypercall')
  .description('null-hypercall round trip per entry path (page, vmcall, syscall) against the C raw exit')
  .option('--calls <n>', 'calls per path per round', positive, 20000)
  .option('--rounds <n>', 'alternating rounds', positive, 5)
  .option('--json', 'print JSON')
  .action(async (o: { calls: number; rounds: number; json?: boolean }) => {
    const r = await runHypercallBench({ calls: o.calls, rounds: o.rounds });
    process.stdout.write(o.json ? JSON.stringify(r, null, 2) + '\n' : formatHypercallBench(r));
  });

program
  .command('trace')
  .description('what `paravane run --trace` costs: the null-hypercall loops untraced and traced, side by side (target <= 1.10)')
  .option('--calls <n>', 'calls per path per round', positive, 2000)
  .option('--rounds <n>', 'alternating rounds', positive, 5)
  .option('--json', 'print JSON')
  .action(async (o: { calls: number; rounds: number; json?: boolean }) => {
    const r = await runTraceBench({ calls: o.calls, rounds: o.rounds });
    process.stdout.write(o.json ? JSON.stringify(r, null, 2) + '\n' : formatTraceBench(r));
  });

program
  .command('trap')
  .description('the trap path: emulated rdmsr and CPUID, an exception bounced to the guest and back, against the C raw exit')
  .option('--ops <n>', 'operations per kind per round', positive, 20000)
  .option('--rounds <n>', 'alternating rounds', positive, 5)
  .option('--json', 'print JSON')
  .action(async (o: { ops: number; rounds: number; json?: boolean }) => {
    const r = await runTrapBench({ ops: o.ops, rounds: o.rounds });
    process.stdout.write(o.json ? JSON.stringify(r, null, 2) + '\n' : formatTrapBench(r));
  });

program
  .command('boot')
  .description('domain creation to first hypercall against a C VMM\'s VM creation to first exit')
  .option('--domains <n>', 'domains to create (and C VMs)', positive, 60)
  .option('--memory <MiB>', 'memory per domain', positive, 16)
  .option('--machine <MiB>', 'machine memory (default: what `paravane run` makes for one domain)', positive)
  .option('--json', 'print JSON')
  .action(async (o: { domains: number; memory: number; machine?: number; json?: boolean }) => {
    const r = await runBootBench({ domains: o.domains, memoryMiB: o.memory, machineMiB: o.machine });
    process.stdout.write(o.json ? JSON.stringify(r, null, 2) + '\n' : formatBootBench(r));
  });

program
  .command('mmu')
  .description('validated page-table updates: mmu_update batches from a guest, and the validator in process')
  .option('--runs <n>', 'guest runs', positive, 5)
  .option('--in-process', 'only the validator and mmu_update in process (no guest: runs without /dev/kvm)')
  .option('--json', 'print JSON')
  .action(async (o: { runs: number; json?: boolean; inProcess?: boolean }) => {
    if (o.inProcess) {
      const r = runMmuInProcess();
      process.stdout.write(o.json ? JSON.stringify(r, null, 2) + '\n' : formatMmuInProcess(r));
      return;
    }
    const r = await runMmuBench({ runs: o.runs });
    process.stdout.write(o.json ? JSON.stringify(r, null, 2) + '\n' : formatMmuBench(r));
  });

program
  .command('time')
  .description('timer lateness, guest clock drift and lost ticks, event round trips between domains, CPU shares by weight')
  .option('--seconds <n>', 'length of the drift run', positive, 10)
  .option('--json', 'print JSON')
  .action(async (o: { seconds: number; json?: boolean }) => {
    const r = await runTimeBench({ seconds: o.seconds });
    process.stdout.write(o.json ? JSON.stringify(r, null, 2) + '\n' : formatTimeBench(r));
  });

program
  .command('pingpong')
  .description('event round trip between two domains (the kit\'s pingpong), and with --parts where a side\'s time goes in the core')
  .option('--wait <mode>', 'poll or block', 'poll')
  .option('--rounds <n>', 'timed rounds', positive, 3000)
  .option('--warmup <n>', 'untimed rounds first', positive, 3000)
  .option('--parts', 'time the core\'s parts of a side')
  .option('--json', 'print JSON')
  .action(async (o: { wait: string; rounds: number; warmup: number; parts?: boolean; json?: boolean }) => {
    if (o.wait !== 'poll' && o.wait !== 'block') program.error(`--wait: poll or block, not "${o.wait}"`);
    const r = await runPingpongBench({ wait: o.wait as PingpongWait, rounds: o.rounds, warmup: o.warmup, parts: !!o.parts });
    process.stdout.write(o.json ? JSON.stringify(r, null, 2) + '\n' : formatPingpong(r));
  });

program
  .command('linux')
  .description('Debian\'s stock kernel to /init\'s first line and to poweroff: paravane against QEMU TCG and QEMU KVM (scripts/fetch-linux.sh first)')
  .option('--kernel <file>', 'the kernel (default: build/linux/vmlinuz-*)')
  .option('--initrd <file>', 'the initramfs (default: build/linux/initramfs.cpio.gz)')
  .option('--memory <MiB>', 'memory of each guest', positive, 256)
  .option('--runs <n>', 'boots of each system, alternating (medians reported)', positive, 3)
  .option('--limit <seconds>', 'time limit of one boot', positive, 60)
  .option('--kvm <path>', 'KVM device', '/dev/kvm')
  .option('--json', 'print JSON')
  .action(async (o: { kernel?: string; initrd?: string; memory: number; runs: number; limit: number; kvm: string; json?: boolean }) => {
    const r = await runLinuxBench({ kernel: o.kernel, initrd: o.initrd, memoryMiB: o.memory, runs: o.runs, limitSeconds: o.limit, kvm: o.kvm });
    process.stdout.write(o.json ? JSON.stringify(r, null, 2) + '\n' : formatLinuxBench(r));
  });

program
  .command('pvfv')
  .description('the guest kit\'s workloads (compute, nano) as a PV kernel under paravane and as a plain kernel under QEMU TCG and QEMU KVM, side by side')
  .option('--runs <n>', 'runs of each workload in each mode, alternating (medians reported)', positive, 3)
  .option('--limit <seconds>', 'time limit of one run', positive, 60)
  .option('--kvm <path>', 'KVM device', '/dev/kvm')
  .option('--report <file>', 'also write the results as a self-contained HTML page with a chart per workload')
  .option('--json', 'print JSON')
  .action(async (o: { runs: number; limit: number; kvm: string; report?: string; json?: boolean }) => {
    const haveQemu = spawnSync('sh', ['-c', 'command -v qemu-system-x86_64']).status === 0;
    const r = await runPvfvBench({ runs: o.runs, limitSeconds: o.limit, kvm: o.kvm }, pvfvModes(o, haveQemu));
    process.stdout.write(o.json ? JSON.stringify(r, null, 2) + '\n' : formatPvfv(r));
    if (o.report) {
      fs.writeFileSync(o.report, pvfvReport(r, describeHost(fs.existsSync(o.kvm) ? o.kvm : 'none (no /dev/kvm)')));
      process.stderr.write(`paravane bench: the report is in ${o.report}\n`);
    }
  });

try {
  await program.parseAsync(process.argv);
} catch (e) {
  // No KVM here: one line saying so, not a stack trace (the guest-side benchmarks need the engine).
  if (!(e instanceof EngineUnavailableError)) throw e;
  process.stderr.write(`paravane bench: ${e.message}\n`);
  process.exitCode = 1;
}
