// XenStore requests (xs_wire), as Xen's xenstored answers a domain: each
// request's payload parsed (NUL-separated strings), its path made absolute
// and checked, the store asked, and the reply or XS_ERROR with the errno's
// name sent back; watches registered per connection and fired on changes
// the watcher may read, with the path as it watched it (relative if it
// gave a relative one). Toolstack-only requests (introduce, release, ...)
// are EACCES for a domain. Inputs: every request from a guest (hostile:
// paths, sizes, counts and quotas checked here).

import { XenstoreLimit, XsdSockmsgType as T } from '../../abi/generated/io-xs-wire.js';
import { XenStore, XsError, type Caller, type Change, type Perm } from './store.js';

/** Xen's default quotas for a domain. */
export const QUOTA = { nodes: 1000, valueBytes: 2048, watches: 128, transactions: 10 } as const;

/** One side of the store: a domain's ring, or the toolstack. */
export interface XsConnection {
  readonly caller: Caller;
  /** Sends a message (a reply, or an XS_WATCH_EVENT with req_id and tx_id 0). */
  send(type: number, reqId: number, txId: number, payload: Uint8Array): void;
}

interface Watch { conn: XsConnection; path: string; abs: string; token: string }

const enc = new TextEncoder();
const strings = (...parts: string[]): Uint8Array => enc.encode(parts.map((p) => `${p}\0`).join(''));
const OK = strings('OK');
const VALID = /^[A-Za-z0-9\-/_@]+$/;

/** The NUL-terminated strings of a payload (a last one without its NUL too, as xenstored reads them). */
function parts(payload: Uint8Array): string[] {
  const s = Buffer.from(payload).toString('latin1');
  const out = s.split('\0');
  if (s.endsWith('\0')) out.pop();
  return out;
}

/** The absolute path of `path` for `domid`, checked as xenstored checks it (EINVAL). */
export function absolutePath(domid: number, path: string): string {
  if (path.startsWith('@')) throw new XsError('EINVAL'); // special watch paths are not nodes
  const abs = path.startsWith('/') ? path : `/local/domain/${domid}/${path}`;
  const max = path.startsWith('/') ? XenstoreLimit.XENSTORE_ABS_PATH_MAX : XenstoreLimit.XENSTORE_REL_PATH_MAX;
  if (path.length === 0 || path.length > max || !VALID.test(abs) || abs.includes('//') || (abs.length > 1 && abs.endsWith('/'))) {
    throw new XsError('EINVAL');
  }
  return abs;
}

function parsePerms(list: string[]): Perm[] {
  if (list.length === 0) throw new XsError('EINVAL');
  return list.map((p) => {
    const perm = p[0], domid = Number(p.slice(1));
    if (!/^[nrwb]\d{1,5}$/.test(p) || domid > 0xffff) throw new XsError('EINVAL');
    return { domid, perm: perm as Perm['perm'] };
  });
}

export class XenstoreServer {
  readonly store: XenStore;
  private readonly watches: Watch[] = [];

  constructor() {
    this.store = new XenStore((c, by) => this.fire(c, by), QUOTA.nodes);
  }

  /** Handles one request from `conn` and sends its reply. */
  handle(conn: XsConnection, type: number, reqId: number, txId: number, payload: Uint8Array): void {
    let reply: { type: number; payload: Uint8Array };
    try {
      reply = { type, payload: this.answer(conn, type, txId, payload) };
    } catch (e) {
      if (!(e instanceof XsError)) throw e;
      reply = { type: T.XS_ERROR, payload: strings(e.errno) };
    }
    conn.send(reply.type, reqId, txId, reply.payload);
    // What comes after the reply (a new watch's first event).
    for (const f of this.afterReply.splice(0)) f();
  }

  private readonly afterReply: Array<() => void> = [];

  private answer(conn: XsConnection, type: number, tx: number, payload: Uint8Array): Uint8Array {
    const who = conn.caller;
    const args = parts(payload);
    const path = (i = 0): string => {
      if (args[i] === undefined) throw new XsError('EINVAL');
      return absolutePath(who.domid, args[i]!);
    };
    const st = this.store;
    switch (type) {
      case T.XS_READ:
        return st.read(who, tx, path());
      case T.XS_DIRECTORY:
        return strings(...st.directory(who, tx, path()));
      case T.XS_GET_PERMS:
        return strings(...st.getPerms(who, tx, path()).map((p) => `${p.perm}${p.domid}`));
      case T.XS_WRITE: {
        // "path\0value": the value is every byte after the first NUL, NULs included.
        const nul = payload.indexOf(0);
        if (nul < 0) throw new XsError('EINVAL');
        const value = payload.slice(nul + 1);
        if (!who.privileged && value.length > QUOTA.valueBytes) throw new XsError('ENOSPC');
        st.write(who, tx, absolutePath(who.domid, Buffer.from(payload.subarray(0, nul)).toString('latin1')), value);
        return OK;
      }
      case T.XS_MKDIR:
        st.write(who, tx, path(), undefined);
        return OK;
      case T.XS_RM:
        st.rm(who, tx, path());
        return OK;
      case T.XS_SET_PERMS:
        st.setPerms(who, tx, path(), parsePerms(args.slice(1)));
        return OK;
      case T.XS_WATCH:
        this.watch(conn, args);
        return OK;
      case T.XS_UNWATCH: {
        const i = this.watches.findIndex((w) => w.conn === conn && w.path === args[0] && w.token === args[1]);
        if (i < 0) throw new XsError('ENOENT');
        this.watches.splice(i, 1);
        return OK;
      }
      case T.XS_TRANSACTION_START:
        if (tx !== 0) throw new XsError('EBUSY');
        if (!who.privileged && st.openTransactions(who.domid) >= QUOTA.transactions) throw new XsError('ENOSPC');
        return strings(String(st.start(who)));
      case T.XS_TRANSACTION_END:
        if (args[0] !== 'T' && args[0] !== 'F') throw new XsError('EINVAL');
        st.end(who, tx, args[0] === 'T');
        return OK;
      case T.XS_GET_DOMAIN_PATH: {
        const id = args[0];
        if (id === undefined || !/^\d{1,5}$/.test(id)) throw new XsError('EINVAL');
        return strings(`/local/domain/${Number(id)}`);
      }
      case T.XS_RESET_WATCHES:
        this.disconnect(conn);
        return OK;
      case T.XS_INTRODUCE:
      case T.XS_RELEASE:
      case T.XS_IS_DOMAIN_INTRODUCED:
      case T.XS_RESUME:
      case T.XS_SET_TARGET:
      case T.XS_CONTROL:
        // The toolstack's: paravane itself introduces and releases domains (introduce/release below).
        throw new XsError('EACCES');
      default:
        throw new XsError('EINVAL');
    }
  }

  private watch(conn: XsConnection, args: string[]): void {
    const [path, token] = args;
    if (path === undefined || token === undefined) throw new XsError('EINVAL');
    const abs = path.startsWith('@') ? path : absolutePath(conn.caller.domid, path);
    if (path.startsWith('@') && path !== '@introduceDomain' && path !== '@releaseDomain') throw new XsError('EINVAL');
    if (this.watches.some((w) => w.conn === conn && w.path === path && w.token === token)) throw new XsError('EEXIST');
    if (!conn.caller.privileged && this.watches.filter((w) => w.conn === conn).length >= QUOTA.watches) throw new XsError('E2BIG');
    const w = { conn, path, abs, token };
    this.watches.push(w);
    // As Xen: a new watch fires once, right after the reply, so the watcher reads the state it starts from.
    this.afterReply.push(() => this.event(w, path));
  }

  private event(w: Watch, path: string): void {
    w.conn.send(T.XS_WATCH_EVENT, 0, 0, strings(path, w.token));
  }

  /**
   * A committed change: watches on the path or an ancestor fire with the
   * changed path, those below a removed one with their own; a domain hears
   * only of nodes it may read (a removed node's, of its parent).
   */
  private fire(c: Change, _by: Caller): void {
    for (const w of [...this.watches]) {
      if (w.abs.startsWith('@')) continue;
      const above = c.path === w.abs || c.path.startsWith(w.abs === '/' ? '/' : `${w.abs}/`);
      const below = c.removed && w.abs.startsWith(`${c.path}/`);
      if (!above && !below) continue;
      const node = c.removed ? c.path.slice(0, Math.max(1, c.path.lastIndexOf('/'))) : c.path;
      if (!this.store.canRead(w.conn.caller, node)) continue;
      const shown = below ? w.abs : c.path;
      this.event(w, w.path.startsWith('/') ? shown : shown.slice(`/local/domain/${w.conn.caller.domid}/`.length));
    }
  }

  /** A domain came up (the toolstack's XS_INTRODUCE): @introduceDomain fires. */
  introduce(): void {
    for (const w of this.watches.filter((x) => x.path === '@introduceDomain')) this.event(w, w.path);
  }

  /** A domain went: its connection's watches and transactions go, and @releaseDomain fires. */
  release(conn: XsConnection): void {
    this.disconnect(conn);
    for (const w of this.watches.filter((x) => x.path === '@releaseDomain')) this.event(w, w.path);
  }

  /** Drops a connection's watches and transactions (XS_RESET_WATCHES, a ring reset, a domain's end). */
  disconnect(conn: XsConnection): void {
    for (let i = this.watches.length - 1; i >= 0; i--) if (this.watches[i]!.conn === conn) this.watches.splice(i, 1);
    this.store.dropTransactions(conn.caller.domid);
  }
}
