// Exit counts per domain, by kind (`paravane run --stats`): counting is on
// every exit's path, so the counts live in a typed array indexed by kind.
// Inputs: none from guests.

/** Exit kinds, in the order --stats prints them. */
export const EXIT_KINDS = ['hypercall (page)', 'hypercall (syscall)', 'hypercall (vmcall)', 'page-table write', 'privileged instruction', 'exception', 'interrupted', 'exception delivered', 'event upcall', 'timer wait in guest', 'run started at wake-up'] as const;
/** Index of each kind in EXIT_KINDS. */
export const EXIT = { page: 0, syscall: 1, vmcall: 2, ptwr: 3, emulated: 4, exception: 5, interrupted: 6, bounce: 7, upcall: 8, timerWait: 9, wakeStart: 10 } as const;

export class ExitCounts {
  readonly n = new Float64Array(EXIT_KINDS.length);
  get(kind: (typeof EXIT_KINDS)[number]): number {
    return this.n[EXIT_KINDS.indexOf(kind)]!;
  }
  /** The kinds seen, with their counts. */
  entries(): Array<[string, number]> {
    return EXIT_KINDS.flatMap((k, i) => (this.n[i] ? [[k, this.n[i]!] as [string, number]] : []));
  }
}
