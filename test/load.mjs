#!/usr/bin/env node
// `npm run test:load`: the test suite beside two CPU-bound processes, as on
// a loaded host. The suite must pass like this: no test may depend on how
// fast the machine is. Exits with the suite's status.

import { spawn } from 'node:child_process';

const hogs = [0, 1].map(() => spawn(process.execPath, ['-e', 'for (;;) {}'], { stdio: 'ignore' }));
const stop = () => { for (const h of hogs) h.kill('SIGKILL'); };
process.on('exit', stop);
for (const sig of ['SIGINT', 'SIGTERM', 'SIGHUP']) process.on(sig, () => { stop(); process.exit(128 + (sig === 'SIGINT' ? 2 : sig === 'SIGTERM' ? 15 : 1)); });
console.log(`test:load: two CPU-bound processes (pids ${hogs.map((h) => h.pid).join(', ')}) run beside the suite`);
const suite = spawn('npx', ['vitest', 'run', ...process.argv.slice(2)], { stdio: 'inherit' });
suite.on('exit', (code, signal) => {
  stop();
  process.exit(code ?? (signal ? 1 : 0));
});
