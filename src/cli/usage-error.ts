// The error for bad input to a command: the CLI prints its message as one
// line (`paravane: ...`) and exits with status 2. Messages name the
// argument, flag, file or config entry at fault.

export class UsageError extends Error {
  override readonly name = 'UsageError';
}
