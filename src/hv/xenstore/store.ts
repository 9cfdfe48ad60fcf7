// The XenStore tree, as Xen's xenstored keeps it: nodes with a value, a
// permission list and children; Xen's permission rules; watches; and
// transactions. Callers are connections (a domain, or the toolstack, which
// is privileged); every path given here is already absolute and checked
// (requests.ts). Inputs: values and permissions from guests (hostile:
// sizes and counts are bounded by the caller's quotas).

/** A permission entry: a domain and what it may do ('n' none, 'r' read, 'w' write, 'b' both). */
export interface Perm { domid: number; perm: 'n' | 'r' | 'w' | 'b' }

export class XsError extends Error {
  constructor(readonly errno: 'EINVAL' | 'EACCES' | 'EEXIST' | 'ENOENT' | 'ENOSPC' | 'EAGAIN' | 'E2BIG' | 'EPERM' | 'EBUSY', message = errno) {
    super(message);
    this.name = 'XsError';
  }
}

class Node {
  children = new Map<string, Node>();
  constructor(public value: Uint8Array, public perms: Perm[], public gen: number) {}
  clone(): Node {
    const n = new Node(this.value, this.perms, this.gen);
    for (const [k, c] of this.children) n.children.set(k, c.clone());
    return n;
  }
}

/** Who is asking: a domain, or the toolstack (privileged: Xen's dom0 tools). */
export interface Caller { domid: number; privileged: boolean }

const READ = 1, WRITE = 2, OWNER = 4;

/** What `caller` may do on a node with `perms`, as Xen's perm_for_conn: owners and the privileged everything; else its entry, else the default. */
function allowed(caller: Caller, perms: readonly Perm[]): number {
  if (caller.privileged || perms[0]!.domid === caller.domid) return READ | WRITE | OWNER;
  const e = perms.slice(1).find((p) => p.domid === caller.domid) ?? perms[0]!;
  return (e.perm === 'r' || e.perm === 'b' ? READ : 0) | (e.perm === 'w' || e.perm === 'b' ? WRITE : 0);
}

const split = (path: string): string[] => (path === '/' ? [] : path.slice(1).split('/'));
const parentOf = (path: string): string => path.slice(0, Math.max(1, path.lastIndexOf('/')));

/** A change a watch may see: the path, and whether the change removed the subtree (its watchers below fire too). */
export interface Change { path: string; removed: boolean }

/** A view of the tree: the store's own, or a transaction's copy. */
class Tree {
  /** `maxNodes`: the most nodes a domain may own (Xen's quota; the toolstack has none). */
  constructor(public root: Node, private readonly nextGen: () => number, private readonly maxNodes: number) {}

  get(path: string): Node | undefined {
    let n: Node | undefined = this.root;
    for (const part of split(path)) {
      n = n.children.get(part);
      if (!n) return undefined;
    }
    return n;
  }

  /** The node, if `caller` may access it as `need` asks (ENOENT, EACCES). */
  check(caller: Caller, path: string, need: number): Node {
    const n = this.get(path);
    if (!n) throw new XsError('ENOENT');
    if ((allowed(caller, n.perms) & need) !== need) throw new XsError('EACCES');
    return n;
  }

  /**
   * Writes `value` at `path`, creating it and its missing ancestors: each
   * new node inherits its parent's permissions, owned by the caller if it
   * is a domain (Xen). Needs write on the node, or on the nearest existing
   * ancestor when creating. Returns the nodes created (top first).
   */
  write(caller: Caller, path: string, value: Uint8Array | undefined): string[] {
    const n = this.get(path);
    if (n) {
      if (!(allowed(caller, n.perms) & WRITE)) throw new XsError('EACCES');
      if (value !== undefined) {
        n.value = value;
        n.gen = this.nextGen();
      }
      return [];
    }
    const parts = split(path);
    let at = this.root, i = 0;
    for (; i < parts.length; i++) {
      const c = at.children.get(parts[i]!);
      if (!c) break;
      at = c;
    }
    if (!(allowed(caller, at.perms) & WRITE)) throw new XsError('EACCES');
    // Every node it would create counts against the domain's quota, in a transaction and at its commit alike.
    if (!caller.privileged && this.count(caller.domid) + (parts.length - i) > this.maxNodes) throw new XsError('ENOSPC');
    const created: string[] = [];
    const gen = this.nextGen();
    at.gen = gen; // a new child changes its parent's directory
    for (; i < parts.length; i++) {
      const perms = at.perms.map((p) => ({ ...p }));
      if (!caller.privileged) perms[0] = { domid: caller.domid, perm: perms[0]!.perm };
      const c = new Node(i === parts.length - 1 && value !== undefined ? value : new Uint8Array(0), perms, gen);
      at.children.set(parts[i]!, c);
      at = c;
      created.push('/' + parts.slice(0, i + 1).join('/'));
    }
    return created;
  }

  /** Removes `path` and everything under it; needs write on it. false: it was not there (its parent was). */
  rm(caller: Caller, path: string): boolean {
    if (path === '/') throw new XsError('EINVAL');
    const n = this.get(path);
    if (!n) {
      if (!this.get(parentOf(path))) throw new XsError('ENOENT');
      return false;
    }
    if (!(allowed(caller, n.perms) & WRITE)) throw new XsError('EACCES');
    const parent = this.get(parentOf(path))!;
    parent.children.delete(path.slice(path.lastIndexOf('/') + 1));
    parent.gen = this.nextGen();
    return true;
  }

  setPerms(caller: Caller, path: string, perms: Perm[]): void {
    const n = this.check(caller, path, WRITE | OWNER);
    // An unprivileged domain may not give its node away (Xen refuses a change of owner).
    if (!caller.privileged && perms[0]!.domid !== n.perms[0]!.domid) throw new XsError('EPERM');
    n.perms = perms;
    n.gen = this.nextGen();
  }

  count(domid: number, n: Node = this.root): number {
    let c = n.perms[0]!.domid === domid ? 1 : 0;
    for (const ch of n.children.values()) c += this.count(domid, ch);
    return c;
  }
}

/** The most changes one transaction may hold. */
const TRANSACTION_OPS = 1024;

type Op = { kind: 'write'; path: string; value: Uint8Array | undefined } | { kind: 'rm'; path: string } | { kind: 'perms'; path: string; perms: Perm[] };

/** A transaction: a copy of the tree taken at its start, the generation of each node it touched, and its changes to replay. */
interface Transaction {
  owner: number;
  tree: Tree;
  seen: Map<string, number | undefined>;
  ops: Op[];
}

export class XenStore {
  private gen = 1;
  private readonly tree: Tree;
  private readonly transactions = new Map<number, Transaction>();
  private nextTx = 1;

  /** `changed` is told of every committed change (watches fire from it); a domain owns at most `maxNodes` nodes. */
  constructor(private readonly changed: (c: Change, by: Caller) => void = () => {}, private readonly maxNodes = Infinity) {
    this.tree = new Tree(new Node(new Uint8Array(0), [{ domid: 0, perm: 'n' }], 0), () => this.gen++, maxNodes);
  }

  private view(tx: number, caller: Caller): { tree: Tree; t?: Transaction } {
    if (tx === 0) return { tree: this.tree };
    const t = this.transactions.get(tx);
    if (!t || t.owner !== caller.domid) throw new XsError('ENOENT');
    return { tree: t.tree, t };
  }

  /** A change in a transaction: at most TRANSACTION_OPS of them (Xen bounds a transaction's nodes too). */
  private changing(t: Transaction | undefined, caller: Caller): void {
    if (t && !caller.privileged && t.ops.length >= TRANSACTION_OPS) throw new XsError('ENOSPC');
  }

  /** Notes the generation a transaction saw of `path` (and, for a change, of its parent). */
  private touch(t: Transaction | undefined, path: string): void {
    if (!t || t.seen.has(path)) return;
    t.seen.set(path, t.tree.get(path)?.gen);
  }

  read(caller: Caller, tx: number, path: string): Uint8Array {
    const { tree, t } = this.view(tx, caller);
    this.touch(t, path);
    return tree.check(caller, path, READ).value;
  }

  directory(caller: Caller, tx: number, path: string): string[] {
    const { tree, t } = this.view(tx, caller);
    this.touch(t, path);
    return [...tree.check(caller, path, READ).children.keys()];
  }

  getPerms(caller: Caller, tx: number, path: string): Perm[] {
    const { tree, t } = this.view(tx, caller);
    this.touch(t, path);
    return tree.check(caller, path, READ).perms.map((p) => ({ ...p }));
  }

  exists(path: string): boolean {
    return this.tree.get(path) !== undefined;
  }

  /** XS_WRITE (a value) or XS_MKDIR (undefined: an existing node is left as it is). */
  write(caller: Caller, tx: number, path: string, value: Uint8Array | undefined): void {
    const { tree, t } = this.view(tx, caller);
    // The node and every ancestor: creating checks the nearest existing one, which a replay must find unchanged.
    for (let p = path; ; p = parentOf(p)) {
      this.touch(t, p);
      if (p === '/') break;
    }
    this.changing(t, caller);
    const existed = tree.get(path) !== undefined;
    tree.write(caller, path, value);
    if (t) t.ops.push({ kind: 'write', path, value });
    else if (!existed || value !== undefined) this.changed({ path, removed: false }, caller);
  }

  rm(caller: Caller, tx: number, path: string): void {
    const { tree, t } = this.view(tx, caller);
    this.touch(t, path);
    this.touch(t, parentOf(path));
    this.changing(t, caller);
    const removed = tree.rm(caller, path);
    if (t) t.ops.push({ kind: 'rm', path });
    else if (removed) this.changed({ path, removed: true }, caller);
  }

  setPerms(caller: Caller, tx: number, path: string, perms: Perm[]): void {
    const { tree, t } = this.view(tx, caller);
    this.touch(t, path);
    this.changing(t, caller);
    tree.setPerms(caller, path, perms);
    if (t) t.ops.push({ kind: 'perms', path, perms });
    else this.changed({ path, removed: false }, caller);
  }

  /** XS_TRANSACTION_START: a new transaction of `caller`'s. */
  start(caller: Caller): number {
    const id = this.nextTx;
    this.nextTx = this.nextTx >= 0x7fffffff ? 1 : this.nextTx + 1;
    this.transactions.set(id, { owner: caller.domid, tree: new Tree(this.tree.root.clone(), () => this.gen, this.maxNodes), seen: new Map(), ops: [] });
    return id;
  }

  /** How many transactions `domid` has open. */
  openTransactions(domid: number): number {
    let n = 0;
    for (const t of this.transactions.values()) if (t.owner === domid) n++;
    return n;
  }

  /**
   * XS_TRANSACTION_END: commit (EAGAIN if a node it touched changed since
   * it began: the caller retries, as Xen's clients do) or abort.
   */
  end(caller: Caller, tx: number, commit: boolean): void {
    const { t } = this.view(tx, caller);
    if (!t) throw new XsError('ENOENT'); // outside a transaction
    this.transactions.delete(tx);
    if (!commit) return;
    for (const [path, gen] of t.seen) if (this.tree.get(path)?.gen !== gen) throw new XsError('EAGAIN');
    // Nothing it saw changed: replaying its changes on the store gives what it saw.
    for (const op of t.ops) {
      if (op.kind === 'write') this.write(caller, 0, op.path, op.value);
      else if (op.kind === 'rm') this.rm(caller, 0, op.path);
      else this.setPerms(caller, 0, op.path, op.perms);
    }
  }

  /** Drops `domid`'s transactions (its connection went away or was reset). */
  dropTransactions(domid: number): void {
    for (const [id, t] of this.transactions) if (t.owner === domid) this.transactions.delete(id);
  }

  /** Whether `caller` may read `path` (watch events go only to those who may). */
  canRead(caller: Caller, path: string): boolean {
    const n = this.tree.get(path);
    return n !== undefined && (allowed(caller, n.perms) & READ) !== 0;
  }

  /** The whole tree as `xenstore-ls -p` prints it, for debugging. */
  dump(path = '/', indent = ''): string {
    const n = this.tree.get(path);
    if (!n) return '';
    let out = '';
    for (const [name, c] of n.children) {
      const full = path === '/' ? `/${name}` : `${path}/${name}`;
      out += `${indent}${name} = "${Buffer.from(c.value).toString('latin1')}"  (${c.perms.map((p) => `${p.perm}${p.domid}`).join(',')})\n`;
      out += this.dump(full, indent + ' ');
    }
    return out;
  }
}
