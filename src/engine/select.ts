// Chooses the execution engine for this host. Today only KVM exists; the
// portable software engine will be the fallback when it lands.

import { existsSync } from 'node:fs';
import { EngineUnavailableError } from './errors.js';
import { KvmEngine } from './kvm/kvm-engine.js';
import type { Engine } from './types.js';

export type EngineName = 'kvm';

export interface EngineProbe {
  name: EngineName;
  available: boolean;
  /** Why not, and how to fix it, when unavailable. */
  reason?: string;
}

/** Which engines this host can run, without keeping any open. */
export function probeEngines(kvmPath = '/dev/kvm'): EngineProbe[] {
  if (!existsSync(kvmPath)) return [{ name: 'kvm', available: false, reason: `${kvmPath} does not exist` }];
  try {
    new KvmEngine(kvmPath).close();
    return [{ name: 'kvm', available: true }];
  } catch (e) {
    return [{ name: 'kvm', available: false, reason: (e as Error).message }];
  }
}

/** How to open an engine: the KVM device, and where KVM_RUN is issued (see KvmEngineOptions). */
export interface EngineOptions {
  kvmPath?: string;
  runMode?: 'thread' | 'direct';
}

/**
 * Opens the named engine, or the best one this host offers. Everything
 * outside src/engine/ gets its engine here (the layering test checks it).
 */
export function selectEngine(name?: EngineName, opts: EngineOptions | string = {}): Engine {
  if (name !== undefined && name !== 'kvm') throw new EngineUnavailableError(`unknown engine ${String(name)}`);
  const o = typeof opts === 'string' ? { kvmPath: opts } : opts;
  return new KvmEngine({ path: o.kvmPath ?? '/dev/kvm', runMode: o.runMode });
}
