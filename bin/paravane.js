#!/usr/bin/env node
// Entry point of the `paravane` command: runs the compiled CLI in dist/.
import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';

const main = new URL('../dist/cli/main.js', import.meta.url);
if (!existsSync(fileURLToPath(main))) {
  console.error('paravane: the TypeScript sources are not built yet; run `npm run build` first');
  process.exit(1);
}
await import(main.href);
