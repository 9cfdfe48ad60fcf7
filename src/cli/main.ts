// The `paravane` command line. Input: the user's arguments (untrusted:
// commander validates them; each command checks its own values). Bad input
// is one line on stderr and status 2; only a paravane bug prints a stack
// trace (status 70). A closed stdout ends any command quietly (status 141).

import { Command, CommanderError } from 'commander';
import { readFileSync } from 'node:fs';
import { formatHypercallTable } from './abi-table.js';
import { formatDoctor, runDoctor } from './doctor.js';
import { EXIT, EXIT_STATUS_HELP, signalStatus } from './exit-status.js';
import { RUN_LIMITS_HELP } from './run-plan.js';
import { runCommand, type RunCommandOptions } from './run.js';
import { onOutputError, STOP_HELP } from './stop.js';
import { traceCommand, type TraceCommandOptions } from './trace.js';
import { consoleCommand, controlCommand, topCommand } from './control-commands.js';
import { detachRun } from './detach.js';

const pkg = JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8')) as { version: string; description: string };

export function buildCli(): Command {
  const program = new Command();
  program
    .name('paravane')
    .description(pkg.description)
    .version(pkg.version, '-V, --version', 'print the paravane version')
    // Usage errors (unknown option, missing argument) are one line on
    // stderr and exit status 2; subcommands inherit these settings.
    .configureOutput({ outputError: (str, write) => write(`paravane: ${str.replace(/^error: /, '')}`) })
    .exitOverride((err: CommanderError) => {
      throw err;
    });

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

  program
    .command('run')
    .description('build a domain from each PV kernel (ELF with Xen notes; with --mode fv-trap, each plain kernel), run them side by side and stream their consoles')
    .argument('[kernels...]', 'guest kernels (ELF64 x86-64 with Xen ELF notes); or use --config')
    .option('-m, --memory <MiB>', 'memory of each domain in MiB (at most this host\'s memory)', '32')
    .option('--cmdline <string>', 'the command line passed in start_info (${domid:NAME} becomes that domain\'s id)')
    .option('--initrd <file>', 'an initial ramdisk, passed as Xen passes it')
    .option('--weight <n>', 'scheduling weight of each domain (1-65535, default 256)')
    .option('--cap <percent>', 'CPU cap of each domain, percent of one CPU (0: none)')
    .option('--vcpus <n>', 'vCPUs of each domain (1-16, default 1): vCPU 0 boots, the guest brings up the others')
    .option('--config <file>', 'JSON: {"domains": [{"kernel", "name", "memory", "cmdline", "initrd", "weight", "cap", "vcpus"}, ...]}')
    .option('--timeout <seconds>', 'kill the domains still running after this long')
    .option('--stats', 'when each domain ends, print its run time, CPU time, hypercall and exit counts and port I/O to stderr')
    .option('--log <file>', 'append the hypervisor\'s log (each domain\'s console_io output, lines as "(d1) ...") to this file')
    .option('--kvm <path>', 'KVM device', '/dev/kvm')
    .option('--engine <name>', 'auto: KVM where the device exists, else the software engine; kvm; soft (an interpreter, needs nothing from the host)', 'auto')
    .option('--trace <file>', 'record every hypercall (number, arguments, result, call site, handler time), exit and upcall of every domain to this file (read it with `paravane trace`)')
    .option('--json', 'each domain\'s end as one JSON line on stderr (how it ended, its status, run and CPU time, hypercall, exit and port counts) instead of the messages')
    .option('--gdb <port>', 'serve GDB\'s remote protocol for the (one) domain on 127.0.0.1:PORT (0: any free port); it starts when gdb continues')
    .option('--detach', 'run in the background and return once its domains are up (output to a log file in the run directory; `paravane list`, `console`, `destroy` drive it)')
    .option('--mode <mode>', 'pv: PV kernels (Xen\'s PV ABI); fv-trap: plain kernels written for a PC (the guest kit\'s -native builds), run deprivileged with every privileged instruction trapped and emulated and their page tables shadowed', 'pv')
    .addHelpText('after', EXIT_STATUS_HELP + RUN_LIMITS_HELP + STOP_HELP)
    .action(async (kernels: string[], opts: RunCommandOptions & { detach?: boolean }) => {
      if (opts.detach) {
        // The same arguments, less --detach, for the background run.
        const args = process.argv.slice(process.argv.indexOf('run') + 1).filter((a) => a !== '--detach');
        process.exitCode = await detachRun(process.argv[1]!, args, { out: (s) => process.stdout.write(s), err: (s) => process.stderr.write(s) });
        return;
      }
      process.exitCode = await runCommand(kernels, opts);
    });

  // Commands on running domains, through their runs' control sockets.
  const control = (what: Parameters<typeof controlCommand>[0], about: string, named: boolean) => {
    const c = program.command(what).description(about);
    if (named) c.argument('<name>', 'the domain\'s name (as `paravane list` shows it)');
    c.option('--json', 'print JSON');
    if (what === 'shutdown') c.option('--wait', 'wait until the domain has ended');
    c.action(async (...args: unknown[]) => {
      const name = named ? (args[0] as string) : undefined;
      const opts = (named ? args[1] : args[0]) as { json?: boolean; wait?: boolean };
      process.exitCode = await controlCommand(what, name, opts, { out: (s) => process.stdout.write(s), err: (s) => process.stderr.write(s) });
    });
  };
  control('list', 'list the domains of every running `paravane run`: name, id, run, state, vCPUs, memory, CPU time, uptime', false);
  control('info', 'describe one running domain', true);
  control('pause', 'pause a running domain (its vCPUs stop; its state is kept)', true);
  control('unpause', 'let a paused domain run on', true);
  control('shutdown', 'ask a domain to shut down, as xl shutdown does (XenStore control/shutdown = poweroff; the guest decides)', true);
  control('destroy', 'end a domain now (its frames go back to the pool)', true);
  program
    .command('console')
    .description('attach to a running domain\'s console: its output here, your keys to it; Ctrl-] detaches (as xl console)')
    .argument('<name>', 'the domain\'s name (as `paravane list` shows it)')
    .action(async (name: string) => {
      process.exitCode = await consoleCommand(name, {
        out: (s) => process.stdout.write(s), err: (s) => process.stderr.write(s), write: (b) => process.stdout.write(b), stdin: process.stdin,
      });
    });
  program
    .command('top')
    .description('every running domain\'s CPU share and hypercall rate, refreshed until Ctrl-C')
    .option('--delay <seconds>', 'between refreshes', '1')
    .option('--iterations <n>', 'refreshes before it ends (default: until Ctrl-C)')
    .option('--json', 'a JSON array per refresh, one per line')
    .action(async (opts: { delay?: string; iterations?: string; json?: boolean }) => {
      process.exitCode = await topCommand(opts, { out: (s) => process.stdout.write(s), err: (s) => process.stderr.write(s), tty: process.stdout.isTTY === true });
    });
  control('dmesg', 'print the hypervisor\'s log of every run: console_io output and how each domain ended', false);

  program
    .command('trace')
    .description('summarize a trace `paravane run --trace` wrote: hypercall counts and handler times (percentiles), exits, upcalls, the busiest call sites')
    .argument('<file>', 'the trace file')
    .option('--elf <kernel>', 'name call sites from this kernel\'s symbols')
    .option('--top <n>', 'call sites to list per domain', '10')
    .option('--perfetto <out.json>', 'also write the trace as Chrome trace-event JSON (Perfetto, chrome://tracing)')
    .option('--json', 'print JSON')
    .action((file: string, opts: TraceCommandOptions) => {
      process.exitCode = traceCommand(file, opts, (s) => process.stdout.write(s), (s) => process.stderr.write(s));
    });

  return program;
}

// A reader that goes away (`paravane help run | head -3`) ends the command
// as SIGPIPE ends `cat`: no message, status 141 (another write error says
// why). A stderr nobody reads cannot be told anything.
onOutputError(process.stdout, (e) => {
  if (e.code !== 'EPIPE') process.stderr.write(`paravane: cannot write to standard output: ${e.message}\n`);
  process.exitCode = signalStatus('SIGPIPE');
});
process.stderr.on('error', () => {});

try {
  await buildCli().parseAsync(process.argv);
} catch (e) {
  if (e instanceof CommanderError) {
    // Help and version end with code 0; anything else is a usage error.
    process.exitCode = e.exitCode === 0 ? 0 : EXIT.USAGE;
  } else {
    // A bug: the whole trace, and a status no expected end has.
    process.stderr.write(`paravane: internal error: ${(e as Error)?.stack ?? String(e)}\n`);
    process.exitCode = EXIT.INTERNAL;
  }
}
