// One console per domain, each line once. A Xen guest has two ways out:
// console_io(CONSOLEIO_write), which Xen keeps in its own log (`xl dmesg`),
// and the PV console ring, which is what `xl console` shows. Guests written
// for Xen (XTF, Mini-OS) write each line to both; guests written for
// paravane use console_io alone. So the domain's console shows the ring's
// output once the guest uses its ring, and console_io output only for a
// guest that does not: console_io text is held until the guest makes a
// call that is neither another console write nor an event channel
// operation (the ring's notification is one), or until the domain ends.
// If the ring brings output meanwhile, the held text was that output's
// twin: it stays in the log only, as does all console_io output from then
// on. Every console_io byte goes to the log as it arrives. At most
// HOLD_MAX bytes are held: a guest that writes more without another call
// (hostile, or chatty between event sends) has its text shown at once, so
// what it writes never piles up in the hypervisor.

export interface ConsoleSinks {
  /** What the domain's console shows (`xl console`). */
  console: (bytes: Uint8Array) => void;
  /** The hypervisor's log of the domain's console_io output (`xl dmesg`). */
  log?: (bytes: Uint8Array) => void;
}

/** The most console_io text held for its ring twin (a line is far less; one write is at most 64 KiB). */
export const HOLD_MAX = 64 * 1024;

export class ConsoleMux {
  private held: Uint8Array[] = [];
  private heldBytes = 0;
  private ringSeen = false;

  constructor(private readonly sinks: ConsoleSinks) {}

  /** The guest uses its ring: console_io output is the log's alone from now on. */
  get ringInUse(): boolean {
    return this.ringSeen;
  }

  /** Text is held for a ring twin (what settle() would show). */
  get holding(): boolean {
    return this.heldBytes > 0;
  }

  /** console_io(CONSOLEIO_write) output. */
  consoleIo(bytes: Uint8Array): void {
    const copy = Uint8Array.from(bytes); // not slice(): a Buffer's slice shares its memory
    this.sinks.log?.(copy);
    if (this.ringSeen || !copy.length) return;
    this.held.push(copy);
    this.heldBytes += copy.length;
    if (this.heldBytes > HOLD_MAX) this.settle();
  }

  /** Output the backend took from the guest's console ring. */
  ring(bytes: Uint8Array): void {
    if (!bytes.length) return;
    this.ringSeen = true;
    this.held = [];
    this.heldBytes = 0;
    this.sinks.console(bytes);
  }

  /** The held console_io text goes to the console: the guest moved on without its ring's twin. */
  settle(): void {
    if (!this.held.length) return;
    const held = this.held;
    this.held = [];
    this.heldBytes = 0;
    for (const b of held) this.sinks.console(b);
  }
}
