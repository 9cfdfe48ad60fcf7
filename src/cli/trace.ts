// `paravane trace FILE`: the summary of a trace `paravane run --trace`
// wrote (src/toolstack/trace-summary.ts), as text or --json; `--elf
// KERNEL` names call sites from the kernel's symbols; `--perfetto OUT`
// writes the trace as Chrome trace-event JSON. Input: the files named
// (untrusted): a bad trace or ELF is one line and status 2.

import * as fs from 'node:fs';
import { readTrace, TraceFileError } from '../toolstack/trace-file.js';
import { elfSymbols, ElfSymbolsError, type ElfSymbol } from '../toolstack/elf-symbols.js';
import { formatSummary, perfetto, summarize } from '../toolstack/trace-summary.js';
import { EXIT } from './exit-status.js';

export interface TraceCommandOptions {
  elf?: string;
  perfetto?: string;
  json?: boolean;
  top?: string;
}

export function traceCommand(file: string, opts: TraceCommandOptions, out: (s: string) => void, err: (s: string) => void): number {
  try {
    const top = opts.top === undefined ? 10 : Number(opts.top);
    if (!Number.isInteger(top) || top < 1 || top > 1000) throw new TraceFileError(`--top ${opts.top}: a whole number from 1 to 1000`);
    const { header, records } = readTrace(read(file, 'trace'));
    let symbols: ElfSymbol[] | undefined;
    if (opts.elf !== undefined) symbols = elfSymbols(read(opts.elf, '--elf'));
    const domains = summarize(header, records, symbols, top);
    if (opts.perfetto !== undefined) fs.writeFileSync(opts.perfetto, JSON.stringify(perfetto(header, records)));
    out(opts.json ? JSON.stringify({ records: records.length, engine: header.engine, paravane: header.paravane, domains }, null, 2) + '\n' : formatSummary(header, domains, records.length));
    return EXIT.POWEROFF;
  } catch (e) {
    if (e instanceof TraceFileError || e instanceof ElfSymbolsError) {
      err(`paravane: ${e instanceof ElfSymbolsError ? `${opts.elf}: ` : `${file}: `}${e.message}\n`);
      return EXIT.USAGE;
    }
    if ((e as NodeJS.ErrnoException).code && (e as NodeJS.ErrnoException).syscall) {
      err(`paravane: ${(e as Error).message}\n`);
      return EXIT.USAGE;
    }
    throw e;
  }
}

function read(file: string, what: string): Uint8Array {
  try {
    return fs.readFileSync(file);
  } catch (e) {
    throw new TraceFileError(`cannot read the ${what} file: ${(e as Error).message}`);
  }
}
