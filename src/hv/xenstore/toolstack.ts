// What Xen's toolstack (libxl) writes into XenStore for a new domU, and
// takes out when it goes: the domain's home /local/domain/<id> (the
// domain may read it; the toolstack owns it) with its name, id, vm path,
// vCPUs, memory, console and store rings, the directories the domain
// writes its own state into (owned by it), the control nodes it watches,
// and /vm/<uuid>. Paravane is the toolstack here (domain 0, privileged).

import { XsdSockmsgType as T } from '../../abi/generated/io-xs-wire.js';
import type { XenstoreServer, XsConnection } from './requests.js';

export interface DomainRecord {
  domid: number;
  name: string;
  /** The domain's handle as a UUID string. */
  uuid: string;
  memoryKiB: number;
  vcpus: number;
  console: { mfn: number; port: number };
  store: { mfn: number; port: number };
}

/** The toolstack's connection: privileged, its replies checked (a refusal here is a paravane bug). */
function toolstack(server: XenstoreServer): (type: number, ...args: string[]) => void {
  const conn: XsConnection = {
    caller: { domid: 0, privileged: true },
    send(type, _reqId, _txId, payload) {
      if (type === T.XS_ERROR) throw new Error(`xenstore refused the toolstack: ${Buffer.from(payload).toString('latin1')}`);
    },
  };
  return (type, ...args) => {
    // XS_WRITE's value goes raw (no NUL), the other strings NUL-terminated.
    const parts = args.map((a, i) => (type === T.XS_WRITE && i === 1 ? a : `${a}\0`));
    server.handle(conn, type, 0, 0, Buffer.from(parts.join(''), 'latin1'));
  };
}

/** Writes a new domain's nodes, as libxl does, and tells @introduceDomain watchers. */
export function introduceDomain(server: XenstoreServer, d: DomainRecord): void {
  const xs = toolstack(server);
  const home = `/local/domain/${d.domid}`;
  const ro = ['n0', `r${d.domid}`]; // the toolstack's; the domain may read
  const rw = [`n${d.domid}`]; // the domain's own
  const node = (path: string, value: string, perms: string[]) => {
    xs(T.XS_WRITE, path, value);
    xs(T.XS_SET_PERMS, path, ...perms);
  };
  node(home, '', ro);
  node(`${home}/vm`, `/vm/${d.uuid}`, ro);
  node(`${home}/name`, d.name, ro);
  node(`${home}/domid`, String(d.domid), ro);
  for (let i = 0; i < d.vcpus; i++) node(`${home}/cpu/${i}/availability`, 'online', ro);
  node(`${home}/memory/static-max`, String(d.memoryKiB), ro);
  node(`${home}/memory/target`, String(d.memoryKiB), ro);
  node(`${home}/device`, '', ro);
  node(`${home}/control`, '', ro);
  for (const c of ['shutdown', 'sysrq', 'feature-poweroff', 'feature-reboot', 'feature-suspend', 'feature-s3', 'feature-s4']) node(`${home}/control/${c}`, '', rw);
  for (const dir of ['data', 'drivers', 'feature', 'attr', 'error']) node(`${home}/${dir}`, '', rw);
  node(`${home}/console`, '', ro);
  node(`${home}/console/ring-ref`, String(d.console.mfn), ro);
  node(`${home}/console/port`, String(d.console.port), ro);
  node(`${home}/console/limit`, '1048576', ro);
  node(`${home}/console/type`, 'xenconsoled', ro);
  node(`${home}/store/ring-ref`, String(d.store.mfn), ro);
  node(`${home}/store/port`, String(d.store.port), ro);
  node(`/vm/${d.uuid}/name`, d.name, ro);
  node(`/vm/${d.uuid}/uuid`, d.uuid, ro);
  server.introduce();
}

/** Takes a gone domain's nodes out, drops its connection's watches and transactions, and tells @releaseDomain watchers. */
export function releaseDomain(server: XenstoreServer, conn: XsConnection, d: { domid: number; uuid: string }): void {
  const xs = toolstack(server);
  xs(T.XS_RM, `/local/domain/${d.domid}`);
  xs(T.XS_RM, `/vm/${d.uuid}`);
  server.release(conn);
}

/**
 * Asks domain `domid` to shut down as xl shutdown does: the toolstack
 * writes control/shutdown ("poweroff", "reboot"), which a PV guest watches
 * (Linux's xenbus does); the guest decides, and one that does not watch
 * goes on.
 */
export function requestShutdown(server: XenstoreServer, domid: number, how: 'poweroff' | 'reboot' = 'poweroff'): void {
  toolstack(server)(T.XS_WRITE, `/local/domain/${domid}/control/shutdown`, how);
}
