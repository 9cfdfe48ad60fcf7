// Errors of the engine layer. Three kinds stay apart: the host cannot run
// guests (EngineUnavailableError), a system call failed (EngineCallError),
// and the caller misused the API (EngineUsageError).

/** The host cannot run guests with this engine; the message says how to fix it. */
export class EngineUnavailableError extends Error {
  readonly code = 'ERR_KVM_UNAVAILABLE';
  constructor(message: string, cause?: unknown) {
    super(message, { cause });
    this.name = 'EngineUnavailableError';
  }
}

/** An ioctl or system call failed. */
export class EngineCallError extends Error {
  readonly code = 'ERR_KVM_CALL';
  constructor(readonly syscall: string, readonly errno: number, readonly errnoName: string, message: string) {
    super(message);
    this.name = 'EngineCallError';
  }
}

/** Bad argument or use after destroy. */
export class EngineUsageError extends Error {
  constructor(readonly code: 'ERR_INVALID_ARG' | 'ERR_ENGINE_DESTROYED', message: string) {
    super(message);
    this.name = 'EngineUsageError';
  }
}

/** Converts an addon error into an EngineCallError; anything else is rethrown as is. */
export function fromNative(e: unknown): Error {
  const n = e as { code?: string; syscall?: string; errno?: number; errnoName?: string; message?: string };
  if (n && n.code === 'ERR_KVM_CALL') return new EngineCallError(n.syscall ?? '?', n.errno ?? 0, n.errnoName ?? '?', n.message ?? 'call failed');
  if (n && n.code === 'ERR_INVALID_ARG') return new EngineUsageError('ERR_INVALID_ARG', n.message ?? 'invalid argument');
  return e as Error;
}

export function usage(message: string): EngineUsageError {
  return new EngineUsageError('ERR_INVALID_ARG', message);
}

export function destroyed(what: string): EngineUsageError {
  return new EngineUsageError('ERR_ENGINE_DESTROYED', `${what} was destroyed`);
}
