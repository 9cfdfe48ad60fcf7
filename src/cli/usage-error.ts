// The error for bad input to a command: printed as one line (`paravane: ...`),
// status 2. Its message names the argument, flag, file or config entry at
// fault, and may quote untrusted input.

export class UsageError extends Error {
  override readonly name = 'UsageError';
}
