// Loads the KVM addon (native/build/Release/paravane_kvm.node). Only
// src/engine/kvm/ imports this module.

import { createRequire } from 'node:module';
import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import type { KvmAddon } from '../../../native/index.js';
import { EngineUnavailableError } from '../errors.js';

const ADDON = fileURLToPath(new URL('../../../native/build/Release/paravane_kvm.node', import.meta.url));

let addon: KvmAddon | undefined;

export function loadAddon(): KvmAddon {
  if (addon) return addon;
  if (!existsSync(ADDON)) {
    throw new EngineUnavailableError(`the KVM addon is not built (${ADDON}); run \`npm run build:native\``);
  }
  addon = createRequire(import.meta.url)(ADDON) as KvmAddon;
  return addon;
}

export function addonPath(): string {
  return ADDON;
}
