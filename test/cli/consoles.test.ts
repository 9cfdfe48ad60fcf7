// The consoles of several domains on one terminal (src/cli/consoles.ts):
// whole prefixed lines, the live domain's text as it comes (a shell's
// prompt has no newline), and host input moved between domains with
// Ctrl-] commands. Pure: no engine.

import { describe, expect, it } from 'vitest';
import { ConsoleInput, ConsoleOutput, ESCAPE, type InputTarget } from '../../src/cli/consoles.js';

const bytes = (s: string) => Buffer.from(s, 'latin1');

function terminal() {
  let text = '';
  const out = new ConsoleOutput((b) => { text += Buffer.from(b).toString('latin1'); });
  return { out, text: () => text };
}

describe('console output of several domains', () => {
  it('writes whole lines after each domain\'s prefix, holding a partial line until its newline or the end', () => {
    const t = terminal();
    const a = t.out.source('[a] '), b = t.out.source('[b] ');
    a.write(bytes('hel'));
    b.write(bytes('one\n\ntw'));
    a.write(bytes('lo\nwor'));
    expect(t.text()).toBe('[b] one\n[b] \n[a] hello\n');
    a.flush();
    b.flush();
    expect(t.text()).toBe('[b] one\n[b] \n[a] hello\n[a] wor\n[b] tw\n');
  });

  it('streams the live domain\'s text (its prompt) and ends its open line before another domain\'s line', () => {
    const t = terminal();
    const a = t.out.source('[a] '), b = t.out.source('[b] ');
    a.write(bytes('/ # '));
    expect(t.text()).toBe('');
    t.out.setLive(0);
    expect(t.text()).toBe('[a] / # ');
    a.write(bytes('ec'));
    a.write(bytes('ho hi\nhi\n/ # '));
    expect(t.text()).toBe('[a] / # echo hi\n[a] hi\n[a] / # ');
    b.write(bytes('booting\n'));
    a.write(bytes('ls'));
    expect(t.text()).toBe('[a] / # echo hi\n[a] hi\n[a] / # \n[b] booting\n[a] ls');
    a.flush();
    expect(t.text().endsWith('[a] ls\n')).toBe(true);
  });

  it('ends an open prompt before a message of paravane\'s', () => {
    const t = terminal();
    const a = t.out.source('[a] ');
    t.out.source('[b] ');
    t.out.setLive(0);
    a.write(bytes('/ # '));
    t.out.breakLine();
    t.out.breakLine(); // nothing open: nothing written
    expect(t.text()).toBe('[a] / # \n');
  });

  it('gives the live role to another domain: the first one\'s lines are whole again', () => {
    const t = terminal();
    const a = t.out.source('[a] '), b = t.out.source('[b] ');
    t.out.setLive(0);
    a.write(bytes('$ '));
    t.out.setLive(1);
    b.write(bytes('# '));
    a.write(bytes('x'));
    expect(t.text()).toBe('[a] $ \n[b] # ');
  });
});

describe('console input', () => {
  function domains(n: number) {
    const got: string[][] = Array.from({ length: n }, () => []);
    const targets: Array<InputTarget & { running: boolean }> = got.map((g, i) => ({
      name: `dom${i}`, id: i + 1, running: true, input: (b: Uint8Array) => { g.push(Buffer.from(b).toString('latin1')); },
    }));
    const said: string[] = [];
    let stopped = 0;
    const focused: number[] = [];
    const input = new ConsoleInput(targets, {
      say: (l) => said.push(l), xenstore: () => '/local = ""  (n0)\n', stop: () => { stopped++; }, focused: (i) => focused.push(i),
    });
    return { got, targets, said, input, focused, stopped: () => stopped };
  }
  const esc = String.fromCharCode(ESCAPE);

  it('types to the first domain, then to the one Ctrl-] and its number name, a command split across reads too', () => {
    const d = domains(2);
    d.input.feed(bytes('ls\n'));
    d.input.feed(bytes(`x${esc}`));
    d.input.feed(bytes('2uname\n'));
    expect(d.got[0]!.join('')).toBe('ls\nx');
    expect(d.got[1]!.join('')).toBe('uname\n');
    expect(d.focused).toEqual([1]);
    expect(d.said).toEqual(['paravane: input to domain 2 (dom1)']);
  });

  it('sends a Ctrl-] for two, and says what an unknown command or domain is', () => {
    const d = domains(1);
    d.input.feed(bytes(`a${esc}${esc}b${esc}7${esc}z`));
    expect(d.got[0]!.join('')).toBe(`a${esc}b`);
    expect(d.said).toEqual([
      'paravane: there is no domain 7 (1 running; Ctrl-] h for help)',
      'paravane: Ctrl-] "z" is not a console command (Ctrl-] h for help)',
    ]);
    expect(d.input.focused).toBe(0);
  });

  it('prints the XenStore tree, the help, and stops the run', () => {
    const d = domains(1);
    d.input.feed(bytes(`${esc}x${esc}h${esc}q`));
    expect(d.said[0]).toBe('/local = ""  (n0)');
    expect(d.said[1]).toMatch(/^console commands \(Ctrl-\] then\):\n {2}1-9/);
    expect(d.stopped()).toBe(1);
    expect(d.got[0]).toEqual([]);
  });

  it('drops input for a domain that has ended, and says so when switching to it', () => {
    const d = domains(2);
    d.targets[1]!.running = false;
    d.input.feed(bytes(`${esc}2gone`));
    expect(d.got[1]).toEqual([]);
    expect(d.said).toEqual(['paravane: input to domain 2 (dom1), which has ended']);
  });
});
