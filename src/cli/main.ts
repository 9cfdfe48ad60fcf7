// The `paravane` command line. Input: the user's arguments (untrusted:
// commander validates them; each command checks its own values).

import { Command } from 'commander';
import { readFileSync } from 'node:fs';
import { formatHypercallTable } from './abi-table.js';
import { formatDoctor, runDoctor } from './doctor.js';

const pkg = JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8')) as { version: string; description: string };

export function buildCli(): Command {
  const program = new Command();
  program
    .name('paravane')
    .description(pkg.description)
    .version(pkg.version, '-V, --version', 'print the paravane version')
    .showHelpAfterError();

  program
    .command('abi')
    .description('print the hypercall table (number, name, arguments) from the ABI schemas')
    .option('--json', 'print JSON instead of a table')
    .option('--experimental', 'only the experimental (paravane) hypercalls')
    .action((opts: { json?: boolean; experimental?: boolean }) => {
      process.stdout.write(formatHypercallTable(opts));
    });

  program
    .command('doctor')
    .description('check that this host can run guests: KVM device, capabilities, hypercall transports, exit cost')
    .option('--kvm <path>', 'KVM device to check', '/dev/kvm')
    .option('--json', 'print JSON')
    .action((opts: { kvm: string; json?: boolean }) => {
      const r = runDoctor(opts.kvm);
      process.stdout.write(opts.json ? JSON.stringify(r, null, 2) + '\n' : formatDoctor(r));
      if (!r.ok) process.exitCode = 1;
    });

  return program;
}

await buildCli().parseAsync(process.argv);
