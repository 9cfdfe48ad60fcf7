// The consoles of the domains `paravane run` runs, on one terminal.
//
// Output: with several domains each line goes out after its domain's
// `[name] `, whole, so that lines of different domains do not mix. The
// domain being typed to (the live one) is the exception: its text goes
// out as it comes, a prompt without its newline included, because someone
// is waiting for it; a line of another domain that completes meanwhile
// ends the live line first, and the live domain's text then goes on after
// its prefix again.
//
// Input: host input goes to one domain at a time, the first at the start.
// Ctrl-] begins a command, as the escape of `xl console`: a digit 1-9
// gives the input to that domain (in the order they were named), `x`
// prints the XenStore tree, `q` stops the run, `h` or `?` lists the
// commands, and a second Ctrl-] sends one to the domain. Inputs: the
// user's bytes (anything) and the guests' output (anything).

/** Ctrl-], the escape byte. */
export const ESCAPE = 0x1d;

/** One domain's console output on a ConsoleOutput. */
export interface ConsoleSink {
  write(b: Uint8Array): void;
  /** The domain ended: its last partial line goes out, ended. */
  flush(): void;
}

export class ConsoleOutput {
  /** Per source: its prefix, and its text since its last newline not yet written. */
  private readonly sources: Array<{ prefix: string; partial: string }> = [];
  /** The source whose line is open (written without its newline) on the output. */
  private open: number | undefined;
  private live: number | undefined;

  constructor(private readonly out: (b: Uint8Array) => void) {}

  /** A source whose lines go out after `prefix`; its id is its index (the order of creation). */
  source(prefix: string): ConsoleSink {
    const id = this.sources.length;
    this.sources.push({ prefix, partial: '' });
    return { write: (b) => this.write(id, Buffer.from(b).toString('latin1')), flush: () => this.flush(id) };
  }

  /** Makes source `id` (or none) the live one: its partial line goes out now, and its text as it comes. */
  setLive(id: number | undefined): void {
    this.live = id;
    const s = id === undefined ? undefined : this.sources[id];
    if (s?.partial) {
      const text = s.partial;
      s.partial = '';
      this.stream(id!, text);
    }
  }

  private write(id: number, text: string): void {
    if (id === this.live) {
      this.stream(id, text);
      return;
    }
    const s = this.sources[id]!;
    const buf = s.partial + text;
    const last = buf.lastIndexOf('\n');
    if (last < 0) {
      s.partial = buf;
      return;
    }
    s.partial = buf.slice(last + 1);
    // Whole lines, each after the prefix; the live domain's open line is ended first.
    this.breakLine();
    this.emit(buf.slice(0, last + 1).split(/(?<=\n)/).map((line) => s.prefix + line).join(''));
  }

  /** Text of the live source, as it comes: its prefix at the start of each of its lines. */
  private stream(id: number, text: string): void {
    if (this.open !== id) this.breakLine();
    const { prefix } = this.sources[id]!;
    let out = '';
    for (const piece of text.split(/(?<=\n)/)) {
      if (!piece) continue;
      if (this.open !== id) out += prefix;
      out += piece;
      this.open = piece.endsWith('\n') ? undefined : id;
    }
    this.emit(out);
  }

  /** Ends the line open on the output, if any, so that what comes next (another domain's line, a message of paravane's) starts a line of its own. */
  breakLine(): void {
    if (this.open === undefined) return;
    this.open = undefined;
    this.emit('\n');
  }

  private flush(id: number): void {
    const s = this.sources[id]!;
    if (s.partial) {
      const rest = s.partial;
      s.partial = '';
      this.breakLine();
      this.emit(`${s.prefix}${rest}\n`);
    } else if (this.open === id) {
      this.breakLine();
    }
  }

  private emit(s: string): void {
    if (s) this.out(Buffer.from(s, 'latin1'));
  }
}

/** A domain as the console input sees it. */
export interface InputTarget {
  readonly name: string;
  readonly id: number;
  readonly running: boolean;
  input(b: Uint8Array): void;
}

/** What the console's commands do besides moving the input. */
export interface InputActions {
  /** A message for the user (stderr), one line. */
  say(line: string): void;
  /** The XenStore tree, as `xenstore-ls -p` prints it. */
  xenstore(): string;
  /** Ends the run (every domain), as a signal would. */
  stop(): void;
  /** The input moved to target `index`. */
  focused?(index: number): void;
}

export const CONSOLE_HELP = [
  'console commands (Ctrl-] then):',
  '  1-9     type to that domain (in the order they were named)',
  '  x       print the XenStore tree',
  '  q       stop the run (every domain)',
  '  h, ?    this help',
  '  Ctrl-]  send a Ctrl-] to the domain',
];

export class ConsoleInput {
  private focus = 0;
  private escaped = false;

  constructor(private readonly targets: readonly InputTarget[], private readonly actions: InputActions) {}

  /** The index of the domain input goes to. */
  get focused(): number {
    return this.focus;
  }

  /** Host input: bytes for the focused domain, and commands after Ctrl-]. */
  feed(bytes: Uint8Array): void {
    let start = 0;
    for (let i = 0; i < bytes.length; i++) {
      const b = bytes[i]!;
      if (this.escaped) {
        this.escaped = false;
        start = i + 1;
        if (b === ESCAPE) this.send(Uint8Array.of(ESCAPE));
        else this.command(b);
      } else if (b === ESCAPE) {
        this.send(bytes.subarray(start, i));
        this.escaped = true;
        start = i + 1;
      }
    }
    if (!this.escaped) this.send(bytes.subarray(start));
  }

  private send(b: Uint8Array): void {
    const t = this.targets[this.focus]!;
    if (b.length && t.running) t.input(b);
  }

  private command(b: number): void {
    const c = String.fromCharCode(b);
    if (c >= '1' && c <= '9') {
      const i = b - 0x31;
      const t = this.targets[i];
      if (!t) {
        this.actions.say(`paravane: there is no domain ${c} (${this.targets.length} running; Ctrl-] h for help)`);
        return;
      }
      this.focus = i;
      this.actions.focused?.(i);
      this.actions.say(`paravane: input to domain ${t.id} (${t.name})${t.running ? '' : ', which has ended'}`);
      return;
    }
    switch (c) {
      case 'x':
        this.actions.say(this.actions.xenstore().replace(/\n$/, ''));
        return;
      case 'q':
        this.actions.stop();
        return;
      case 'h': case '?':
        this.actions.say(CONSOLE_HELP.join('\n'));
        return;
      default:
        this.actions.say(`paravane: Ctrl-] ${JSON.stringify(c)} is not a console command (Ctrl-] h for help)`);
    }
  }
}
