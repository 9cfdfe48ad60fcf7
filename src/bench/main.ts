// `npm run bench -- <name>`: benchmarks that print ratios measured side by
// side in one run. Results go in docs/benchmarks.md with the command.

import { Command } from 'commander';
import { formatExitBench, runExitBench } from './exit.js';

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

await program.parseAsync(process.argv);
