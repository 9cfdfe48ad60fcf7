// `npm run bench -- pvfv --report FILE.html`: the benchmark's results as
// one self-contained HTML page: the host it ran on, one chart per workload
// (a horizontal bar per measure and mode, on a log scale, since the modes
// differ by orders of magnitude), and the table. The charts are plain SVG
// written here: a few rectangles and labels need no chart library, the
// page then renders without scripts in any browser or viewer, and it
// stays a few kilobytes.

import * as os from 'node:os';
import { targetLines, type PvfvResult } from './pvfv.js';

/** The host, as the report describes it. */
export interface ReportHost {
  cpu: string;
  cpus: number;
  /** What KVM is here: "none", or the device and what doctor found. */
  kvm: string;
  node: string;
  date: string;
}

export function describeHost(kvm: string): ReportHost {
  const cpus = os.cpus();
  return { cpu: cpus[0]?.model ?? 'unknown', cpus: cpus.length, kvm, node: process.version, date: new Date().toISOString().slice(0, 10) };
}

/** One colour per mode, in order (colour-blind safe: Tableau 10). */
export const MODE_COLOURS = ['#4e79a7', '#f28e2b', '#59a14f', '#e15759', '#76b7b2', '#edc948', '#b07aa1', '#9c755f'];

const esc = (s: string): string => s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;').replace(/"/g, '&quot;');

/** Measures that are counts, not cycles: the ticks lost, alone or beside busy neighbours. */
const isCount = (measure: string): boolean => measure.startsWith('ticks lost');

/** The workload a measure belongs to: its first word ("nano divide error" -> "nano"). */
const workloadOf = (measure: string): string => measure.split(' ')[0]!;

const CHART_WIDTH = 760, LABEL_WIDTH = 170, BAR = 16, GAP = 6, GROUP_GAP = 14, AXIS = 28;

/**
 * The chart of one workload: per measure a group of bars, one per mode
 * that measured it, the bar's length log10 of the cycles over a scale
 * shared by the chart, the value written after it.
 */
export function workloadChart(workload: string, measures: string[], modes: PvfvResult['modes']): string {
  const ran = modes.map((m, i) => ({ m, colour: MODE_COLOURS[i % MODE_COLOURS.length]! })).filter(({ m }) => !m.skipped && !m.problem);
  const values = measures.flatMap((k) => ran.map(({ m }) => m.cycles[k]).filter((v): v is number => v !== undefined && v > 0));
  const max = Math.max(10, ...values);
  const decades = Math.ceil(Math.log10(max));
  const plot = CHART_WIDTH - LABEL_WIDTH - 90;
  const x = (v: number): number => (Math.log10(Math.max(v, 1)) / decades) * plot;
  let y = 8;
  const parts: string[] = [];
  for (const k of measures) {
    const top = y;
    for (const { m, colour } of ran) {
      const v = m.cycles[k];
      if (v === undefined) continue;
      const w = Math.max(1, x(v));
      parts.push(`<rect class="bar" data-mode="${esc(m.name)}" data-measure="${esc(k)}" data-cycles="${v}" x="${LABEL_WIDTH}" y="${y}" width="${w.toFixed(1)}" height="${BAR}" fill="${colour}"/>`);
      parts.push(`<text x="${(LABEL_WIDTH + w + 4).toFixed(1)}" y="${y + BAR - 4}" font-size="11">${v.toLocaleString('en-US')}</text>`);
      y += BAR + GAP;
    }
    parts.push(`<text x="${LABEL_WIDTH - 8}" y="${((top + y - GAP) / 2 + 4).toFixed(1)}" font-size="12" text-anchor="end">${esc(k.slice(workload.length + 1) || k)}</text>`);
    y += GROUP_GAP;
  }
  // The log axis: a tick per decade.
  for (let d = 0; d <= decades; d++) {
    const tx = LABEL_WIDTH + (d / decades) * plot;
    parts.push(`<line x1="${tx.toFixed(1)}" y1="4" x2="${tx.toFixed(1)}" y2="${y}" stroke="#ccc" stroke-width="1"/>`);
    parts.push(`<text x="${tx.toFixed(1)}" y="${y + 14}" font-size="10" text-anchor="middle">1e${d}</text>`);
  }
  const height = y + AXIS;
  return `<figure><figcaption>${esc(workload)}: TSC cycles, log scale</figcaption>`
    + `<svg class="chart" data-workload="${esc(workload)}" xmlns="http://www.w3.org/2000/svg" width="${CHART_WIDTH}" height="${height}" viewBox="0 0 ${CHART_WIDTH} ${height}">`
    + parts.join('') + '</svg></figure>';
}

export function pvfvReport(r: PvfvResult, host: ReportHost): string {
  const measures = [...new Set(r.modes.flatMap((m) => Object.keys(m.cycles)))];
  // Charts are of cycles; the ticks lost (a count) are in the table only.
  const workloads = [...new Set(measures.filter((k) => !isCount(k)).map(workloadOf))];
  const ran = r.modes.filter((m) => !m.skipped && !m.problem);
  const pv = r.modes.find((m) => m.name === 'pv');
  const pvSoft = r.modes.find((m) => m.name === 'pv-soft');
  const targets = targetLines(r).slice(1);
  const legend = r.modes.map((m, i) => `<li><span class="swatch" style="background:${MODE_COLOURS[i % MODE_COLOURS.length]}"></span><b>${esc(m.name)}</b>: ${esc(m.what)}`
    + `${m.skipped ? ` <i>(not run: ${esc(m.skipped)})</i>` : m.problem ? ` <i>(failed: ${esc(m.problem)})</i>` : ''}</li>`).join('');
  const rows = measures.map((k) => `<tr><td>${esc(k)}</td>${ran.map((m) => {
    const v = m.cycles[k];
    const against = m.name === 'fv-trap-soft' ? pvSoft : pv;
    const base = against?.cycles[k];
    return `<td>${v === undefined ? '-' : v.toLocaleString('en-US')}${v !== undefined && m !== against && base ? ` (${(v / base).toFixed(2)}x)` : ''}</td>`;
  }).join('')}</tr>`).join('');
  return `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>paravane: PV against full virtualization</title>
<style>
body { font-family: system-ui, sans-serif; margin: 24px; color: #222; max-width: 820px; }
figure { margin: 18px 0; } figcaption { font-weight: 600; margin-bottom: 4px; }
table { border-collapse: collapse; } td, th { border: 1px solid #ccc; padding: 3px 8px; text-align: right; } td:first-child, th:first-child { text-align: left; }
.swatch { display: inline-block; width: 12px; height: 12px; margin-right: 6px; vertical-align: middle; }
ul { padding-left: 18px; }
</style></head><body>
<h1>PV against full virtualization</h1>
<p>The guest kit's workloads, each built as a PV kernel and as a plain kernel, in every mode this host offers: TSC cycles as each workload reports them (the ticks lost by a 1 kHz tick in 300 ms: a count), medians of ${r.runs} runs (x: against pv; fv-trap-soft against pv-soft, the same engine and TSC).</p>
<p>Host: ${esc(host.cpu)}, ${host.cpus} CPUs; KVM: ${esc(host.kvm)}; Node.js ${esc(host.node)}; ${esc(host.date)}.</p>
<ul>${legend}</ul>
${workloads.map((w) => workloadChart(w, measures.filter((k) => workloadOf(k) === w), r.modes)).join('\n')}
<table><tr><th>measure</th>${ran.map((m) => `<th>${esc(m.name)}</th>`).join('')}</tr>${rows}</table>
${targets.length ? `<h2>Yardsticks</h2><ul>${targets.map((t) => `<li>${esc(t.trim())}</li>`).join('')}</ul>` : ''}
</body></html>
`;
}
