// Calls into the KVM addon, with its failures turned into the engine's
// error types (EngineCallError with the errno, EngineUsageError).

import { fromNative } from '../errors.js';

/** Runs an addon call; a failure is rethrown as the engine's error. */
export function call<T>(fn: () => T): T {
  try {
    return fn();
  } catch (e) {
    throw fromNative(e);
  }
}
