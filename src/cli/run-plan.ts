// What `paravane run` checks before it opens the engine, so that bad input is
// status 2 on any host: settings, kernels (read, parsed), initrds, command
// lines, each domain's boot layout, and the host's memory. Input: the user's
// arguments and files (untrusted).

import { totalmem } from 'node:os';
import { XenLimits } from '../abi/generated/xen.js';
import { BuildError, planBootLayout } from '../hv/domain/builder.js';
import { GuestElfError, MAX_IMAGE_BYTES, parseGuestKernel } from '../hv/domain/elf.js';
import { kernelImage } from '../hv/domain/kernel-image.js';
import { machineBytesFor } from '../hv/hypervisor.js';
import { domainSpecs, MAX_CONFIG_BYTES, type DomainSpec, type SpecFlags } from './config.js';
import { formatSize, readInputFile } from './input-files.js';
import { parseSeconds } from './numbers.js';
import { UsageError } from './usage-error.js';

const MIB = 1 << 20;
const PAGE = 4096;

/** The longest command line, in UTF-8 bytes: start_info's array less its NUL. */
export const MAX_CMDLINE_BYTES = XenLimits.MAX_GUEST_CMDLINE - 1;

/**
 * The id a new Hypervisor gives its first domain (Xen's first domU id);
 * the rest follow in order. The plan resolves ${domid:NAME} with these,
 * and the run checks that the domains got them.
 */
export const FIRST_DOMID = 1;

export interface RunFlags extends SpecFlags {
  timeout?: string;
  /** fv-trap: the kernels are plain ones (no Xen notes required). */
  mode?: string;
}

/** One domain, checked and ready to build. */
export interface PlannedDomain {
  spec: DomainSpec;
  id: number;
  kernelFile: Uint8Array;
  memoryBytes: number;
  /** The command line with ${domid:NAME} replaced; fits start_info in UTF-8. */
  cmdline?: string;
  initrd?: Uint8Array;
}

export interface RunPlan {
  domains: PlannedDomain[];
  timeoutSeconds?: number;
  /** Machine memory for the whole run, a multiple of the page size. */
  machineBytes: number;
}

/** What the host can give: the most memory all domains together may have. */
export interface HostLimits {
  memoryBytes: number;
}

export const hostLimits = (): HostLimits => ({ memoryBytes: totalmem() });

/** Machine memory for domains of these sizes and initrds (each initrd counted in whole pages). */
export function machineBytesForRun(domains: ReadonlyArray<{ memoryBytes: number; initrdBytes?: number }>): number {
  return domains.reduce((sum, d) => sum + machineBytesFor(d.memoryBytes) + Math.ceil((d.initrdBytes ?? 0) / PAGE) * PAGE, 0);
}

/** Replaces ${domid:NAME} in a command line with that domain's id. */
function substituteDomids(cmdline: string, ids: Map<string, number>, label: string): string {
  return cmdline.replace(/\$\{domid:([^}]*)\}/g, (_, n: string) => {
    const id = ids.get(n);
    if (id === undefined) throw new UsageError(`${label}: the command line names domain "${n}", which is not being run`);
    return String(id);
  });
}

/** Checks that a command line can go into start_info: UTF-8, no NUL, at most MAX_CMDLINE_BYTES. */
export function checkCmdline(cmdline: string, label: string): void {
  if (/[\uD800-\uDBFF](?![\uDC00-\uDFFF])|(?<![\uD800-\uDBFF])[\uDC00-\uDFFF]/.test(cmdline)) {
    throw new UsageError(`${label} is not valid Unicode (it holds a lone surrogate)`);
  }
  if (cmdline.includes('\0')) throw new UsageError(`${label} holds a NUL character, which would end it early`);
  const bytes = Buffer.byteLength(cmdline, 'utf8');
  if (bytes > MAX_CMDLINE_BYTES) {
    throw new UsageError(`${label} is ${bytes} bytes in UTF-8; at most ${MAX_CMDLINE_BYTES} fit in start_info (Xen's MAX_GUEST_CMDLINE, ${XenLimits.MAX_GUEST_CMDLINE} with its NUL)`);
  }
}

/** Checks every input of a run, reading and parsing the files; throws UsageError at the first problem. */
export function planRun(kernels: string[], flags: RunFlags, host: HostLimits = hostLimits()): RunPlan {
  const specs = domainSpecs(kernels, flags, Math.floor(host.memoryBytes / MIB));
  const timeoutSeconds = flags.timeout === undefined ? undefined : parseSeconds(flags.timeout, '--timeout');
  const ids = new Map(specs.map((sp, i) => [sp.name, FIRST_DOMID + i]));

  // Each file is read once, however many domains use it; a bzImage is decompressed once, and the
  // plan keeps the ELF it holds.
  const kernelFiles = new Map<string, Uint8Array>();
  const initrds = new Map<string, Uint8Array>();
  const initrdCap = new Map<string, number>();
  for (const sp of specs) if (sp.initrd !== undefined) initrdCap.set(sp.initrd, Math.max(initrdCap.get(sp.initrd) ?? 0, sp.memoryMib * MIB));

  const domains = specs.map((spec): PlannedDomain => {
    const where = spec.entry ?? spec.kernel;
    let kernelFile = kernelFiles.get(spec.kernel);
    let kernel;
    try {
      if (kernelFile === undefined) {
        const file = readInputFile('kernel', spec.kernel, { bytes: MAX_IMAGE_BYTES, why: `a kernel file may be at most ${formatSize(MAX_IMAGE_BYTES)}` });
        kernelFile = kernelImage(file).elf;
        kernelFiles.set(spec.kernel, kernelFile);
      }
      kernel = parseGuestKernel(kernelFile, flags.mode === 'fv-trap' ? 'plain' : 'pv');
    } catch (e) {
      if (e instanceof GuestElfError) throw new UsageError(`${spec.kernel}: ${e.message}`);
      throw e;
    }
    let initrd: Uint8Array | undefined;
    if (spec.initrd !== undefined) {
      initrd = initrds.get(spec.initrd);
      if (initrd === undefined) {
        const cap = initrdCap.get(spec.initrd)!;
        initrd = readInputFile('initrd', spec.initrd, { bytes: cap, why: `it must fit in its domain's memory (${formatSize(cap)})` });
        initrds.set(spec.initrd, initrd);
      }
    }
    let cmdline: string | undefined;
    if (spec.cmdline !== undefined) {
      cmdline = substituteDomids(spec.cmdline, ids, spec.cmdlineLabel);
      checkCmdline(cmdline, spec.cmdlineLabel);
    }
    // Multiplied, not shifted: a shift would wrap at 2048 MiB.
    const memoryBytes = spec.memoryMib * MIB;
    try {
      // A PV kernel's boot layout (start_info, tables, stack) must fit; a plain kernel's image is checked as it is loaded.
      if (flags.mode !== 'fv-trap') planBootLayout(kernel, memoryBytes, initrd?.length);
    } catch (e) {
      if (e instanceof BuildError) throw new UsageError(`${where}: ${e.message}`);
      throw e;
    }
    return { spec, id: ids.get(spec.name)!, kernelFile, memoryBytes, ...(cmdline === undefined ? {} : { cmdline }), ...(initrd === undefined ? {} : { initrd }) };
  });

  const machineBytes = machineBytesForRun(domains.map((d) => ({ memoryBytes: d.memoryBytes, initrdBytes: d.initrd?.length })));
  if (machineBytes > host.memoryBytes) {
    throw new UsageError(`the domains need ${formatSize(machineBytes)} of machine memory in all (with the hypervisor's share); this host has ${formatSize(host.memoryBytes)}`);
  }
  return { domains, ...(timeoutSeconds === undefined ? {} : { timeoutSeconds }), machineBytes };
}

/** The limits, for `paravane run --help` (README.md says the same). */
export const RUN_LIMITS_HELP = `Limits: --memory at most this host's memory (all domains together too); a
kernel file at most ${formatSize(MAX_IMAGE_BYTES)}, an initrd at most its domain's memory, a config
file at most ${formatSize(MAX_CONFIG_BYTES)}, each a regular file; the command line at most ${MAX_CMDLINE_BYTES} bytes in
UTF-8 (Xen's MAX_GUEST_CMDLINE, ${XenLimits.MAX_GUEST_CMDLINE} with its NUL). Numbers are decimal digits
(no sign, no 0x); --timeout may have a fraction.
`;
