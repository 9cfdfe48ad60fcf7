// The guests the benchmarks run, from the build directories `npm run build` fills.

import * as fs from 'node:fs';
import { fileURLToPath } from 'node:url';

export const MIB = 1 << 20;

const DIRS = {
  /** Test guests written against the ABI directly (test/guests/elf). */
  elf: '../../test/guests/build/elf',
  /** Benchmark guests built with the guest kit (test/guests/bench). */
  bench: '../../test/guests/build/bench',
  /** The guest kit's examples. */
  kit: '../../build/guests',
} as const;

/** The ELF image of guest `name` from one of the build directories; a clear error if it was not built. */
export function builtGuest(dir: keyof typeof DIRS, name: string): Uint8Array {
  const p = fileURLToPath(new URL(`${DIRS[dir]}/${name}.elf`, import.meta.url));
  if (!fs.existsSync(p)) throw new Error(`${p} is missing: run \`npm run build\``);
  return fs.readFileSync(p);
}
