// Formats the hypercall table generated from abi/*.proto for `paravane abi`.

import { HYPERCALLS, EXPERIMENTAL_HYPERCALL_RANGE } from '../abi/generated/index.js';

export function formatHypercallTable(opts: { json?: boolean; experimental?: boolean } = {}): string {
  const rows = HYPERCALLS.filter((h) => !opts.experimental || h.experimental);
  if (opts.json) return JSON.stringify(rows, null, 2) + '\n';
  const nameW = Math.max(4, ...rows.map((h) => h.name.length + (h.experimental ? 1 : 0)));
  const lines = [`${'nr'.padStart(3)}  ${'name'.padEnd(nameW)}  arguments (rdi, rsi, rdx, r10, r8)`];
  for (const h of rows) {
    lines.push(`${String(h.nr).padStart(3)}  ${(h.name + (h.experimental ? '*' : '')).padEnd(nameW)}  ${h.args}`);
  }
  const { first, last } = EXPERIMENTAL_HYPERCALL_RANGE;
  lines.push('', `* experimental: paravane's range ${first}-${last}. Unlisted numbers return -ENOSYS.`);
  return lines.join('\n') + '\n';
}
