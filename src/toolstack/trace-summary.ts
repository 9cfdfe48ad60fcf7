// `paravane trace FILE`: what a trace says. Per domain: each hypercall's
// count and the host time its handler took (total, and the 50th, 90th
// and 99th percentiles and the slowest), exits by kind, upcalls, and the
// guest call sites that made the most hypercalls (named from the kernel's
// symbols when given its ELF). `--perfetto` turns the trace into the
// Chrome trace-event JSON that Perfetto and chrome://tracing open: one
// process per domain, one thread per vCPU, a slice per hypercall (its
// handler's time), an instant per exit and upcall.

import { HYPERCALLS } from '../abi/generated/hypercalls.js';
import type { TraceHeader, TraceRecord } from './trace-file.js';
import { symbolize, type ElfSymbol } from './elf-symbols.js';

export interface HypercallSummary {
  nr: number;
  name: string;
  count: number;
  totalNs: number;
  p50Ns: number;
  p90Ns: number;
  p99Ns: number;
  maxNs: number;
}

export interface DomainSummary {
  id: number;
  name: string;
  hypercalls: HypercallSummary[];
  exits: Record<string, number>;
  upcalls: number;
  /** Call sites by hypercalls made, most first (at most `top`). */
  sites: Array<{ site: string; symbol?: string; count: number }>;
}

export const hypercallName = (nr: number): string => HYPERCALLS.find((h) => h.nr === nr)?.name ?? `#${nr}`;

/** The value at percentile `p` (0-100) of sorted `xs` (nearest rank). */
function percentile(xs: readonly number[], p: number): number {
  if (!xs.length) return 0;
  return xs[Math.min(xs.length - 1, Math.max(0, Math.ceil((p / 100) * xs.length) - 1))]!;
}

export function summarize(header: TraceHeader, records: readonly TraceRecord[], symbols?: readonly ElfSymbol[], top = 10): DomainSummary[] {
  const ids = [...new Set([...header.domains.map((d) => d.id), ...records.map((r) => r.domain)])].sort((a, b) => a - b);
  return ids.map((id) => {
    const mine = records.filter((r) => r.domain === id);
    const byNr = new Map<number, number[]>();
    const exits: Record<string, number> = {};
    const sites = new Map<bigint, number>();
    let upcalls = 0;
    for (const r of mine) {
      const e = r.event;
      if (e.kind === 'hypercall') {
        const l = byNr.get(e.nr);
        if (l) l.push(Number(e.handlerNs)); else byNr.set(e.nr, [Number(e.handlerNs)]);
        sites.set(e.site, (sites.get(e.site) ?? 0) + 1);
      } else if (e.kind === 'exit') {
        exits[e.exit] = (exits[e.exit] ?? 0) + 1;
      } else {
        upcalls++;
      }
    }
    const hypercalls = [...byNr].sort((a, b) => a[0] - b[0]).map(([nr, ns]) => {
      const sorted = [...ns].sort((a, b) => a - b);
      return {
        nr, name: hypercallName(nr), count: ns.length, totalNs: ns.reduce((a, b) => a + b, 0),
        p50Ns: percentile(sorted, 50), p90Ns: percentile(sorted, 90), p99Ns: percentile(sorted, 99), maxNs: sorted[sorted.length - 1]!,
      };
    });
    const topSites = [...sites].sort((a, b) => b[1] - a[1] || (a[0] < b[0] ? -1 : 1)).slice(0, top).map(([site, count]) => {
      const symbol = symbols ? symbolize(symbols, site) : undefined;
      return { site: `0x${site.toString(16)}`, count, ...(symbol ? { symbol } : {}) };
    });
    return { id, name: header.domains.find((d) => d.id === id)?.name ?? `domain-${id}`, hypercalls, exits, upcalls, sites: topSites };
  });
}

const us = (ns: number): string => (ns / 1000).toFixed(1);

export function formatSummary(header: TraceHeader, domains: readonly DomainSummary[], records: number): string {
  const lines = [`trace: ${records} records, paravane ${header.paravane} on the ${header.engine} engine`];
  for (const d of domains) {
    lines.push(`domain ${d.id} (${d.name})`);
    lines.push(`  ${'hypercall'.padEnd(22)}${'calls'.padStart(10)}${'total ms'.padStart(11)}${'p50 us'.padStart(9)}${'p90 us'.padStart(9)}${'p99 us'.padStart(9)}${'max us'.padStart(10)}`);
    if (!d.hypercalls.length) lines.push('  (none)');
    for (const h of d.hypercalls) {
      lines.push(`  ${h.name.padEnd(22)}${String(h.count).padStart(10)}${(h.totalNs / 1e6).toFixed(2).padStart(11)}${us(h.p50Ns).padStart(9)}${us(h.p90Ns).padStart(9)}${us(h.p99Ns).padStart(9)}${us(h.maxNs).padStart(10)}`);
    }
    lines.push(`  exits: ${Object.entries(d.exits).map(([k, n]) => `${k} ${n}`).join(', ') || 'none'}; upcalls: ${d.upcalls}`);
    if (d.sites.length) {
      lines.push('  call sites (hypercalls made):');
      for (const s of d.sites) lines.push(`    ${s.site.padEnd(20)}${String(s.count).padStart(10)}  ${s.symbol ?? ''}`.trimEnd());
    }
  }
  return lines.join('\n') + '\n';
}

/** The Chrome trace-event JSON (Perfetto, chrome://tracing): timestamps in microseconds from the trace's start. */
export function perfetto(header: TraceHeader, records: readonly TraceRecord[]): { traceEvents: unknown[]; displayTimeUnit: string } {
  const events: unknown[] = [];
  for (const d of header.domains) events.push({ name: 'process_name', ph: 'M', pid: d.id, args: { name: `domain ${d.id} (${d.name})` } });
  for (const r of records) {
    const base = { pid: r.domain, tid: r.vcpu };
    const e = r.event;
    if (e.kind === 'hypercall') {
      const dur = Number(e.handlerNs) / 1000;
      events.push({ ...base, name: hypercallName(e.nr), cat: 'hypercall', ph: 'X', ts: Number(r.hostNs) / 1000 - dur, dur,
        args: { result: e.result.toString(), site: `0x${e.site.toString(16)}`, transport: e.transport, guest_ns: r.guestNs.toString() } });
    } else if (e.kind === 'exit') {
      events.push({ ...base, name: `exit ${e.exit}`, cat: 'exit', ph: 'i', s: 't', ts: Number(r.hostNs) / 1000, args: { detail: e.detail, rip: `0x${e.rip.toString(16)}` } });
    } else {
      events.push({ ...base, name: 'upcall', cat: 'upcall', ph: 'i', s: 't', ts: Number(r.hostNs) / 1000, args: { rip: `0x${e.rip.toString(16)}` } });
    }
  }
  return { traceEvents: events, displayTimeUnit: 'ns' };
}
