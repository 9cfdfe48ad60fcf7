// Formats a fuzz report for the terminal: the rate, how fuzz domains
// ended, the errno histogram per hypercall, and each finding with the
// command that replays it. Inputs: a report the runner made (trusted).

import type { FuzzReport } from './runner.js';

export function formatReport(r: FuzzReport): string {
  const out: string[] = [];
  out.push(`seed ${r.seed}: ${r.calls} calls in ${r.seconds.toFixed(1)} s, ${Math.round(r.callsPerSecond)} calls/s`);
  out.push(`transports: ${Object.entries(r.transports).map(([k, v]) => `${k} ${v}`).join(', ')}`);
  out.push(`fuzz domains built: ${r.domainsBuilt}; ended: ${Object.entries(r.domainEnds).map(([k, v]) => `${k} ${v}`).join(', ') || 'none'}`);
  out.push(`page-type audits: ${r.audits}; victim intact: ${r.victimIntact ? 'yes' : 'NO'}; all frames returned: ${r.framesReturned ? 'yes' : 'NO'}`);
  out.push('');
  out.push('results per hypercall:');
  const names = Object.keys(r.histogram).sort();
  const width = Math.max(...names.map((n) => n.length), 8);
  for (const name of names) {
    const row = Object.entries(r.histogram[name]!).sort((a, b) => b[1] - a[1]).map(([k, v]) => `${k} ${v}`).join(', ');
    out.push(`  ${name.padEnd(width)}  ${row}`);
  }
  out.push('');
  const hostExceptions = r.findings.filter((f) => f.kind === 'host-exception').length;
  const violations = r.findings.length - hostExceptions;
  out.push(`host exceptions: ${hostExceptions}; invariant violations: ${violations}`);
  for (const f of r.findings) {
    const replay = f.index >= 0 ? `npm run fuzz -- --seed ${f.seed} --calls ${f.index + 1} --trace-from ${f.index}` : `npm run fuzz -- --seed ${f.seed} --calls ${r.calls}`;
    out.push(`  ${f.kind} at call ${f.index} (seed ${f.seed}): ${f.message}`);
    out.push(`    replay: ${replay}`);
  }
  return out.join('\n') + '\n';
}
