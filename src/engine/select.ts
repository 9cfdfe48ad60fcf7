// Chooses the execution engine for this host: KVM where /dev/kvm exists,
// the portable software engine (an interpreter; see soft/) everywhere
// else, or the one asked for by name.

import { existsSync } from 'node:fs';
import { EngineUnavailableError } from './errors.js';
import { KvmEngine } from './kvm/kvm-engine.js';
import { SoftEngine } from './soft/soft-engine.js';
import type { Engine } from './types.js';

export type EngineName = 'kvm' | 'soft';
/** What a user may ask for: an engine, or 'auto' (KVM if the device exists, else the software engine). */
export type EngineChoice = EngineName | 'auto';
export const ENGINE_CHOICES: readonly EngineChoice[] = ['auto', 'kvm', 'soft'];

export interface EngineProbe {
  name: EngineName;
  available: boolean;
  /** Why not, and how to fix it, when unavailable. */
  reason?: string;
}

/** Which engines this host can run, without keeping any open. */
export function probeEngines(kvmPath = '/dev/kvm'): EngineProbe[] {
  const soft: EngineProbe = { name: 'soft', available: true };
  if (!existsSync(kvmPath)) return [{ name: 'kvm', available: false, reason: `${kvmPath} does not exist` }, soft];
  try {
    new KvmEngine(kvmPath).close();
    return [{ name: 'kvm', available: true }, soft];
  } catch (e) {
    return [{ name: 'kvm', available: false, reason: (e as Error).message }, soft];
  }
}

/** How to open an engine: the KVM device, and where KVM_RUN is issued (see KvmEngineOptions). */
export interface EngineOptions {
  kvmPath?: string;
  runMode?: 'thread' | 'direct';
}

/**
 * Which engine 'auto' means on this host: KVM where its device exists (a
 * device that exists but cannot be opened is an error to report, not a
 * reason to fall back silently), else the software engine.
 */
export function resolveEngine(choice: EngineChoice, kvmPath = '/dev/kvm'): EngineName {
  if (choice === 'auto') return existsSync(kvmPath) ? 'kvm' : 'soft';
  return choice;
}

/**
 * Opens the named engine, or the best one this host offers. Everything
 * outside src/engine/ gets its engine here (the layering test checks it).
 */
export function selectEngine(name: EngineChoice = 'auto', opts: EngineOptions | string = {}): Engine {
  const o = typeof opts === 'string' ? { kvmPath: opts } : opts;
  if (!ENGINE_CHOICES.includes(name)) throw new EngineUnavailableError(`unknown engine ${String(name)} (choose ${ENGINE_CHOICES.join(', ')})`);
  const path = o.kvmPath ?? '/dev/kvm';
  if (resolveEngine(name, path) === 'soft') return new SoftEngine();
  return new KvmEngine({ path, runMode: o.runMode });
}
