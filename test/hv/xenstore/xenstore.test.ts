// The XenStore server on its own (no ring, no KVM): the requests a domU's
// xenbus makes, answered as Xen's xenstored answers them: paths relative to
// the domain's home, Xen's permission rules, nodes created with inherited
// permissions owned by their creator, recursive removal, watches (fired at
// once, on changes at or below, relative as given, only where the watcher
// may read), transactions (isolated, committed or aborted, EAGAIN on a
// conflict) and the quotas; the toolstack's requests refused to a domain.

import { describe, expect, it } from 'vitest';
import { XsdSockmsgType as T } from '../../../src/abi/generated/io-xs-wire.js';
import { QUOTA, XenstoreServer, type XsConnection } from '../../../src/hv/xenstore/requests.js';

interface Msg { type: number; reqId: number; txId: number; strings: string[] }

function conn(domid: number, privileged = false): XsConnection & { got: Msg[] } {
  const got: Msg[] = [];
  return {
    caller: { domid, privileged }, got,
    send(type, reqId, txId, payload) {
      const s = Buffer.from(payload).toString('latin1');
      got.push({ type, reqId, txId, strings: s.endsWith('\0') ? s.slice(0, -1).split('\0') : [s] });
    },
  };
}

let reqIds = 1;
/** Sends one request; returns its reply ("ERROR:<errno>" for an error) and clears what the connection got. */
function req(s: XenstoreServer, c: ReturnType<typeof conn>, type: number, args: Array<string | Uint8Array>, tx = 0): string[] {
  const id = reqIds++;
  // Strings go NUL-terminated, but XS_WRITE's value raw, as xenbus sends it.
  const payload = Buffer.concat(args.map((a, i) => (typeof a !== 'string' ? Buffer.from(a)
    : Buffer.from(type === T.XS_WRITE && i === 1 ? a : `${a}\0`, 'latin1'))));
  s.handle(c, type, id, tx, payload);
  const reply = c.got.find((m) => m.reqId === id)!;
  expect(reply.txId).toBe(tx);
  c.got.splice(c.got.indexOf(reply), 1);
  return reply.type === T.XS_ERROR ? [`ERROR:${reply.strings[0]}`] : reply.strings;
}
const events = (c: ReturnType<typeof conn>): string[][] => c.got.splice(0).filter((m) => m.type === T.XS_WATCH_EVENT).map((m) => m.strings);

/** A store as the toolstack sets one up for domain 1 (and 2): its home readable by it, owned by the toolstack. */
function setUp() {
  const s = new XenstoreServer();
  const tools = conn(0, true), d1 = conn(1), d2 = conn(2);
  for (const id of [1, 2]) {
    expect(req(s, tools, T.XS_MKDIR, [`/local/domain/${id}`])).toEqual(['OK']);
    expect(req(s, tools, T.XS_SET_PERMS, [`/local/domain/${id}`, 'n0', `r${id}`])).toEqual(['OK']);
    expect(req(s, tools, T.XS_WRITE, [`/local/domain/${id}/name`, `guest-${id}`])).toEqual(['OK']);
    expect(req(s, tools, T.XS_MKDIR, [`/local/domain/${id}/data`])).toEqual(['OK']);
    expect(req(s, tools, T.XS_SET_PERMS, [`/local/domain/${id}/data`, `n${id}`])).toEqual(['OK']);
  }
  return { s, tools, d1, d2 };
}

describe('XenStore requests', () => {
  it('reads and lists by relative and absolute path, and refuses what the domain may not see', () => {
    const { s, d1 } = setUp();
    expect(req(s, d1, T.XS_READ, ['name'])).toEqual(['guest-1']);
    expect(req(s, d1, T.XS_READ, ['/local/domain/1/name'])).toEqual(['guest-1']);
    expect(req(s, d1, T.XS_DIRECTORY, ['/local/domain/1'])).toEqual(['name', 'data']);
    expect(req(s, d1, T.XS_GET_PERMS, ['/local/domain/1'])).toEqual(['n0', 'r1']);
    expect(req(s, d1, T.XS_READ, ['/local/domain/2/name'])).toEqual(['ERROR:EACCES']);
    expect(req(s, d1, T.XS_READ, ['nothing'])).toEqual(['ERROR:ENOENT']);
    for (const bad of ['a//b', 'a/', '', 'sp ace', '@introduceDomain', `/${'x'.repeat(3072)}`]) expect(req(s, d1, T.XS_READ, [bad]), bad).toEqual(['ERROR:EINVAL']);
    expect(req(s, d1, T.XS_GET_DOMAIN_PATH, ['7'])).toEqual(['/local/domain/7']);
    expect(req(s, d1, T.XS_GET_DOMAIN_PATH, ['x'])).toEqual(['ERROR:EINVAL']);
  });

  it('creates nodes and their parents owned by the writer with inherited permissions, and keeps a value\'s bytes as written', () => {
    const { s, d1, d2 } = setUp();
    expect(req(s, d1, T.XS_WRITE, ['name', 'mine'])).toEqual(['ERROR:EACCES']); // the toolstack's node, read-only to it
    expect(req(s, d1, T.XS_WRITE, ['data/a/b/c', Uint8Array.of(1, 0, 2)])).toEqual(['OK']);
    expect(Buffer.from(req(s, d1, T.XS_READ, ['data/a/b/c'])[0]!, 'latin1')).toEqual(Buffer.from([1, 0, 2]));
    expect(req(s, d1, T.XS_GET_PERMS, ['data/a'])).toEqual(['n1']);
    expect(req(s, d1, T.XS_READ, ['data/a/b'])).toEqual(['']);
    expect(req(s, d2, T.XS_WRITE, ['/local/domain/1/data/x', 'y'])).toEqual(['ERROR:EACCES']);
    // The owner may share a node, not give it away.
    expect(req(s, d1, T.XS_SET_PERMS, ['data/a', 'n1', 'r2'])).toEqual(['OK']);
    expect(req(s, d2, T.XS_READ, ['/local/domain/1/data/a'])).toEqual(['']);
    expect(req(s, d2, T.XS_READ, ['/local/domain/1/data/a/b'])).toEqual(['ERROR:EACCES']); // created before: perms of its own
    expect(req(s, d1, T.XS_SET_PERMS, ['data/a', 'n2'])).toEqual(['ERROR:EPERM']);
    expect(req(s, d2, T.XS_SET_PERMS, ['/local/domain/1/data/a', 'b2'])).toEqual(['ERROR:EACCES']);
    expect(req(s, d1, T.XS_SET_PERMS, ['data/a', 'x1'])).toEqual(['ERROR:EINVAL']);
    // mkdir of an existing node leaves it alone.
    expect(req(s, d1, T.XS_MKDIR, ['data/a/b/c'])).toEqual(['OK']);
    expect(req(s, d1, T.XS_READ, ['data/a/b/c'])).toEqual(['\x01\x00\x02']);
  });

  it('removes a subtree; a missing node under an existing parent is fine, the root is not removable', () => {
    const { s, d1 } = setUp();
    req(s, d1, T.XS_WRITE, ['data/a/b', 'v']);
    expect(req(s, d1, T.XS_RM, ['data/a'])).toEqual(['OK']);
    expect(req(s, d1, T.XS_READ, ['data/a/b'])).toEqual(['ERROR:ENOENT']);
    expect(req(s, d1, T.XS_RM, ['data/a'])).toEqual(['OK']);
    expect(req(s, d1, T.XS_RM, ['data/a/b'])).toEqual(['ERROR:ENOENT']);
    expect(req(s, d1, T.XS_RM, ['/'])).toEqual(['ERROR:EINVAL']);
    expect(req(s, d1, T.XS_RM, ['name'])).toEqual(['ERROR:EACCES']);
  });

  it('fires a watch at once, then on changes at or below it, as the watcher named it, and only for what it may read', () => {
    const { s, tools, d1, d2 } = setUp();
    expect(req(s, d1, T.XS_WATCH, ['data', 'tok'])).toEqual(['OK']);
    expect(events(d1)).toEqual([['data', 'tok']]);
    expect(req(s, d1, T.XS_WATCH, ['data', 'tok'])).toEqual(['ERROR:EEXIST']);
    expect(req(s, d2, T.XS_WATCH, ['/local/domain/1', 't2'])).toEqual(['OK']);
    events(d2);
    req(s, d1, T.XS_WRITE, ['data/k', 'v']);
    expect(events(d1)).toEqual([['data/k', 'tok']]);
    expect(events(d2)).toEqual([]); // domain 2 may not read it
    req(s, tools, T.XS_WRITE, ['/local/domain/1/data/k/deep', 'v']);
    expect(events(d1)).toEqual([['data/k/deep', 'tok']]);
    // A watch below a removed node fires with its own path.
    expect(req(s, d1, T.XS_WATCH, ['/local/domain/1/data/k/deep', 'd'])).toEqual(['OK']);
    events(d1);
    req(s, d1, T.XS_RM, ['data/k']);
    expect(events(d1).sort()).toEqual([['/local/domain/1/data/k/deep', 'd'], ['data/k', 'tok']]);
    expect(req(s, d1, T.XS_UNWATCH, ['data', 'tok'])).toEqual(['OK']);
    expect(req(s, d1, T.XS_UNWATCH, ['data', 'tok'])).toEqual(['ERROR:ENOENT']);
    req(s, d1, T.XS_WRITE, ['data/k2', 'v']);
    expect(events(d1)).toEqual([]);
    // The special watches.
    expect(req(s, d1, T.XS_WATCH, ['@releaseDomain', 'r'])).toEqual(['OK']);
    expect(events(d1)).toEqual([['@releaseDomain', 'r']]);
    expect(req(s, d1, T.XS_WATCH, ['@other', 'r'])).toEqual(['ERROR:EINVAL']);
    s.release(d2);
    expect(events(d1)).toEqual([['@releaseDomain', 'r']]);
  });

  it('isolates a transaction until it commits, fires watches then, aborts cleanly, and answers EAGAIN on a conflict', () => {
    const { s, tools, d1 } = setUp();
    req(s, d1, T.XS_WATCH, ['data', 'w']);
    events(d1);
    const tx = Number(req(s, d1, T.XS_TRANSACTION_START, [''])[0]);
    expect(tx).toBeGreaterThan(0);
    expect(req(s, d1, T.XS_TRANSACTION_START, [''], tx)).toEqual(['ERROR:EBUSY']);
    expect(req(s, d1, T.XS_WRITE, ['data/t', '1'], tx)).toEqual(['OK']);
    expect(req(s, d1, T.XS_READ, ['data/t'], tx)).toEqual(['1']);
    expect(req(s, d1, T.XS_READ, ['data/t'])).toEqual(['ERROR:ENOENT']);
    expect(events(d1)).toEqual([]);
    expect(req(s, d1, T.XS_TRANSACTION_END, ['T'], tx)).toEqual(['OK']);
    expect(req(s, d1, T.XS_READ, ['data/t'])).toEqual(['1']);
    expect(events(d1)).toEqual([['data/t', 'w']]);
    // Abort.
    const t2 = Number(req(s, d1, T.XS_TRANSACTION_START, [''])[0]);
    req(s, d1, T.XS_RM, ['data/t'], t2);
    expect(req(s, d1, T.XS_TRANSACTION_END, ['F'], t2)).toEqual(['OK']);
    expect(req(s, d1, T.XS_READ, ['data/t'])).toEqual(['1']);
    expect(req(s, d1, T.XS_READ, ['data/t'], t2)).toEqual(['ERROR:ENOENT']); // gone
    // A conflict: what it read changed meanwhile.
    const t3 = Number(req(s, d1, T.XS_TRANSACTION_START, [''])[0]);
    expect(req(s, d1, T.XS_READ, ['data/t'], t3)).toEqual(['1']);
    req(s, d1, T.XS_WRITE, ['data/u', 'x'], t3);
    req(s, tools, T.XS_WRITE, ['/local/domain/1/data/t', '2']);
    expect(req(s, d1, T.XS_TRANSACTION_END, ['T'], t3)).toEqual(['ERROR:EAGAIN']);
    expect(req(s, d1, T.XS_READ, ['data/u'])).toEqual(['ERROR:ENOENT']);
    // Another domain's transaction is not this one's.
    const t4 = Number(req(s, tools, T.XS_TRANSACTION_START, [''])[0]);
    expect(req(s, d1, T.XS_READ, ['data/t'], t4)).toEqual(['ERROR:ENOENT']);
    expect(req(s, d1, T.XS_TRANSACTION_END, ['X'], t4)).toEqual(['ERROR:EINVAL']);
    // Ending a transaction outside one.
    expect(req(s, d1, T.XS_TRANSACTION_END, ['T'])).toEqual(['ERROR:ENOENT']);
    expect(req(s, d1, T.XS_TRANSACTION_END, ['F'])).toEqual(['ERROR:ENOENT']);
  });

  it('holds a domain to Xen\'s quotas, and refuses it the toolstack\'s requests', () => {
    const { s, d1 } = setUp();
    expect(req(s, d1, T.XS_WRITE, ['data/big', 'x'.repeat(QUOTA.valueBytes + 1)])).toEqual(['ERROR:ENOSPC']);
    expect(req(s, d1, T.XS_WRITE, ['data/big', 'x'.repeat(QUOTA.valueBytes)])).toEqual(['OK']);
    for (let i = 0; i < QUOTA.transactions; i++) expect(Number(req(s, d1, T.XS_TRANSACTION_START, [''])[0])).toBeGreaterThan(0);
    expect(req(s, d1, T.XS_TRANSACTION_START, [''])).toEqual(['ERROR:ENOSPC']);
    let i = 0;
    while (req(s, d1, T.XS_WRITE, [`data/n${i}`, ''])[0] === 'OK') i++;
    expect(req(s, d1, T.XS_WRITE, [`data/n${i}`, ''])).toEqual(['ERROR:ENOSPC']);
    expect(i).toBeLessThan(QUOTA.nodes);
    // Nor through a transaction, nor a deep path at once.
    req(s, d1, T.XS_RM, ['data/n0']);
    expect(req(s, d1, T.XS_WRITE, ['data/a/b/c', ''])).toEqual(['ERROR:ENOSPC']);
    for (let k = 0; k < QUOTA.transactions; k++) req(s, d1, T.XS_TRANSACTION_END, ['F'], k + 1);
    const t = Number(req(s, d1, T.XS_TRANSACTION_START, [''])[0]);
    expect(req(s, d1, T.XS_WRITE, ['data/m1', ''], t)).toEqual(['OK']);
    expect(req(s, d1, T.XS_WRITE, ['data/m2', ''], t)).toEqual(['ERROR:ENOSPC']);
    for (const t of [T.XS_INTRODUCE, T.XS_RELEASE, T.XS_IS_DOMAIN_INTRODUCED, T.XS_SET_TARGET, T.XS_RESUME, T.XS_CONTROL]) {
      expect(req(s, d1, t, ['1', '2', '3']), String(t)).toEqual(['ERROR:EACCES']);
    }
    expect(req(s, d1, 99, [''])).toEqual(['ERROR:EINVAL']);
    expect(s.store.dump('/local/domain/1')).toContain('name = "guest-1"  (n0,r1)');
  });
});
