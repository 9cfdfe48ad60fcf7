// The PV-against-full-virtualization report (src/bench/pvfv-report.ts):
// one chart per workload with a bar per measure and mode on a log scale,
// the modes that did not run named with the reason, and the table; then
// the page opened in a real headless browser (Debian's chromium, which
// .ci/run installs; skipped with the reason where it is missing, failing
// in CI), whose screenshot must show the bars in each mode's colour.

import { describe, expect, it } from 'vitest';
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { PNG } from 'pngjs';
import { MODE_COLOURS, pvfvReport } from '../../src/bench/pvfv-report.js';
import type { PvfvResult } from '../../src/bench/pvfv.js';

const CHROMIUM = ['chromium', 'chromium-browser'].find((c) => spawnSync('sh', ['-c', `command -v ${c}`]).status === 0);
if (!CHROMIUM) {
  const msg = 'chromium is not installed (Debian: chromium): the report is not opened in a browser';
  if (process.env.CI) throw new Error(`${msg} (CI must install it: see .ci/run)`);
  console.warn(`SKIP: ${msg}`);
}

const RESULT: PvfvResult = {
  runs: 3,
  modes: [
    { name: 'pv', what: 'PV under paravane', runs: 3, cycles: { compute: 40_000_000, 'nano in': 60_000, 'ptemod single': 50_000, 'ptemod batch': 900, 'ticks lost': 0 } },
    { name: 'qemu-tcg', what: 'plain under QEMU TCG', runs: 3, cycles: { compute: 38_000_000, 'nano in': 84, 'ptemod single': 283, 'ptemod batch': 37, 'ticks lost': 2 } },
    { name: 'qemu-kvm', what: 'plain under QEMU KVM', runs: 3, skipped: 'no /dev/kvm', cycles: {} },
  ],
};
const HOST = { cpu: 'AMD EPYC', cpus: 2, kvm: 'none (no /dev/kvm)', node: 'v20', date: '2026-12-07' };

/** The bars of the page: mode, measure, cycles and drawn width. */
function bars(html: string) {
  return [...html.matchAll(/<rect class="bar" data-mode="([^"]+)" data-measure="([^"]+)" data-cycles="(\d+)" x="[\d.]+" y="[\d.]+" width="([\d.]+)"/g)]
    .map((m) => ({ mode: m[1]!, measure: m[2]!, cycles: Number(m[3]), width: Number(m[4]) }));
}

describe('the pvfv report', () => {
  it('draws one chart per workload, a bar per measure and mode that ran, longer for more cycles on a log scale', () => {
    const html = pvfvReport(RESULT, HOST);
    expect([...html.matchAll(/<svg class="chart" data-workload="(\w+)"/g)].map((m) => m[1])).toEqual(['compute', 'nano', 'ptemod']);
    const b = bars(html);
    expect(b).toHaveLength(8); // 4 measures x 2 modes that ran; none for qemu-kvm
    expect(b.some((x) => x.mode === 'qemu-kvm')).toBe(false);
    // Within a chart, more cycles draw a longer bar; a 1000x difference is 3 decades, not 1000x the length.
    const w = (mode: string, measure: string) => b.find((x) => x.mode === mode && x.measure === measure)!.width;
    expect(w('pv', 'ptemod single')).toBeGreaterThan(w('qemu-tcg', 'ptemod single'));
    expect(w('pv', 'ptemod single') / w('qemu-tcg', 'ptemod batch')).toBeLessThan(10);
    expect(html).toContain('<b>qemu-kvm</b>: plain under QEMU KVM <i>(not run: no /dev/kvm)</i>');
    expect(html).toContain('<td>50,000</td><td>283 (0.01x)</td>');
    expect(html).toContain('Host: AMD EPYC, 2 CPUs; KVM: none (no /dev/kvm)');
    // The ticks lost are a count: in the table, not drawn on a chart of cycles.
    expect(html).toContain('<tr><td>ticks lost</td><td>0</td><td>2</td></tr>');
  });

  it('escapes what it prints of the modes\' text', () => {
    const html = pvfvReport({ runs: 1, modes: [{ name: 'a<b', what: '"x" & y', runs: 1, problem: '<script>', cycles: {} }] }, HOST);
    expect(html).not.toContain('<script>');
    expect(html).toContain('&lt;script&gt;');
  });

  it.skipIf(!CHROMIUM)('renders in a real headless browser: the screenshot shows each mode\'s bars in its colour', () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'pvfv-report-'));
    try {
      const page = path.join(dir, 'report.html'), shot = path.join(dir, 'shot.png');
      fs.writeFileSync(page, pvfvReport(RESULT, HOST));
      const r = spawnSync(CHROMIUM!, ['--headless', '--no-sandbox', '--disable-gpu', '--hide-scrollbars', '--window-size=900,1400',
        `--screenshot=${shot}`, `file://${page}`], { encoding: 'utf8', timeout: 120_000 });
      expect(fs.existsSync(shot), r.stderr).toBe(true);
      const png = PNG.sync.read(fs.readFileSync(shot));
      const count = (hex: string) => {
        const [cr, cg, cb] = [1, 3, 5].map((i) => parseInt(hex.slice(i, i + 2), 16));
        let n = 0;
        for (let i = 0; i < png.data.length; i += 4) if (png.data[i] === cr && png.data[i + 1] === cg && png.data[i + 2] === cb) n++;
        return n;
      };
      // Four bars of each mode that ran, 16 px high and tens to hundreds of px long, beside a 12x12 legend swatch.
      expect(count(MODE_COLOURS[0]!)).toBeGreaterThan(2000);
      expect(count(MODE_COLOURS[1]!)).toBeGreaterThan(2000);
      // The mode that did not run has its swatch only.
      expect(count(MODE_COLOURS[2]!)).toBeLessThan(400);
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  }, 150_000);
});
