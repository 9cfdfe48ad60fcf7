// A domain's XenStore ring: what xenstored does for a domU's connection,
// inside the hypervisor. The store page (start_info.store_mfn) holds
// struct xenstore_domain_interface: a request stream (guest to xenstored)
// and a reply stream (replies and watch events), each a 1024-byte ring
// with free-running 32-bit indices; the page's event channel
// (start_info.store_evtchn) is connected to this backend. On each
// notification whole requests are taken from the ring and answered
// (requests.ts); replies go into the reply ring as space allows, the rest
// when the guest has read more. A guest may reset the connection
// (XENSTORE_RECONNECT). Inputs: indices and messages (hostile: an index
// past the ring or a payload over XENSTORE_PAYLOAD_MAX stops the
// connection with Xen's error code, the domain's own problem).

import { XenstoreConnection, XenstoreDomainInterface, XenstoreError, XenstoreLimit, XenstoreServerFeature, XsdSockmsgType } from '../../abi/generated/io-xs-wire.js';
import type { EventChannels } from '../events/channels.js';
import type { XenstoreServer, XsConnection } from './requests.js';
import { ByteRing } from '../domain/byte-ring.js';

const SIZE = XenstoreLimit.XENSTORE_RING_SIZE;
const O = XenstoreDomainInterface.OFFSETS;
const HEADER = 16;
/** Reply bytes held for a guest that does not read them, past which its watch events are dropped. */
const MAX_PENDING_EVENTS_BYTES = 64 * 1024;

export class XenstoreRing implements XsConnection {
  readonly port: number;
  readonly caller: { domid: number; privileged: boolean };
  private readonly view: DataView;
  /** Requests (we consume) and replies (we produce). */
  private readonly req: ByteRing;
  private readonly rsp: ByteRing;
  /** Reply bytes not yet in the ring (it was full). */
  private out: number[] = [];
  private stopped = false;

  constructor(page: Uint8Array, private readonly events: EventChannels, private readonly server: XenstoreServer, domid: number) {
    this.caller = { domid, privileged: false };
    this.view = new DataView(page.buffer, page.byteOffset, XenstoreDomainInterface.SIZE);
    this.req = new ByteRing(page, this.view, O.req, SIZE, O.req_cons, O.req_prod);
    this.rsp = new ByteRing(page, this.view, O.rsp, SIZE, O.rsp_cons, O.rsp_prod);
    this.view.setUint32(O.server_features, XenstoreServerFeature.XENSTORE_SERVER_FEATURE_RECONNECTION | XenstoreServerFeature.XENSTORE_SERVER_FEATURE_ERROR, true);
    this.port = events.bindBackend('xenstore', () => this.service());
  }

  /** The guest notified: a reset if it asked for one, then its requests, then replies as space allows. */
  service(): void {
    const v = this.view;
    if (v.getUint32(O.connection, true) === XenstoreConnection.XENSTORE_RECONNECT) this.reconnect();
    if (this.stopped) return;
    let notify = this.takeRequests();
    if (this.flush()) notify = true;
    if (notify) this.events.setPending(this.port);
  }

  /** XsConnection: queues a message for the guest (a reply, or a watch event). */
  send(type: number, reqId: number, txId: number, payload: Uint8Array): void {
    // Watch events for a guest that does not read them are dropped past a bound (Xen bounds them too).
    if (type === XsdSockmsgType.XS_WATCH_EVENT && this.out.length > MAX_PENDING_EVENTS_BYTES) return;
    const h = new DataView(new ArrayBuffer(HEADER));
    h.setUint32(0, type, true);
    h.setUint32(4, reqId, true);
    h.setUint32(8, txId, true);
    h.setUint32(12, payload.length, true);
    for (const b of new Uint8Array(h.buffer)) this.out.push(b);
    for (const b of payload) this.out.push(b);
    // A watch event from another domain's change arrives outside service(): deliver it now.
    if (!this.serving && this.flush()) this.events.setPending(this.port);
  }

  private serving = false;

  /** The request being read: a message may be longer than the ring, and arrive in pieces (as Linux's xb_write sends it). */
  private inbuf: number[] = [];

  /**
   * Takes request bytes from the ring and answers each request once it is
   * whole; true if any byte was taken (a guest waiting for room is then
   * notified). As Xen's xenstored, nothing more is taken while an earlier
   * reply is not yet in the reply ring: a guest that does not read its
   * replies stops being served, and holds at most one reply here.
   */
  private takeRequests(): boolean {
    let took = false;
    this.serving = true;
    try {
      for (;;) {
        this.flush();
        if (this.out.length || this.stopped) return took;
        // As much of the current message as has come: its header, then its payload.
        const have = this.inbuf.length;
        const bytes = this.req.take(have < HEADER ? HEADER - have : HEADER + this.inbufWord(12) - have);
        if (bytes === undefined) return this.fail(XenstoreError.XENSTORE_ERROR_RINGIDX) || took;
        if (!bytes.length) return took;
        for (const b of bytes) this.inbuf.push(b);
        took = true;
        if (this.inbuf.length === HEADER && this.inbufWord(12) > XenstoreLimit.XENSTORE_PAYLOAD_MAX) {
          return this.fail(XenstoreError.XENSTORE_ERROR_PROTO) || took;
        }
        if (this.inbuf.length < HEADER || this.inbuf.length < HEADER + this.inbufWord(12)) continue;
        const msg = Uint8Array.from(this.inbuf);
        this.inbuf = [];
        this.server.handle(this, this.inbufWordOf(msg, 0), this.inbufWordOf(msg, 4), this.inbufWordOf(msg, 8), msg.subarray(HEADER));
      }
    } finally {
      this.serving = false;
    }
  }

  private inbufWord(at: number): number {
    return this.inbufWordOf(this.inbuf, at);
  }

  private inbufWordOf(b: ArrayLike<number>, at: number): number {
    return (b[at]! | (b[at + 1]! << 8) | (b[at + 2]! << 16)) + b[at + 3]! * 2 ** 24;
  }

  /** Moves queued reply bytes into the reply ring; true if any moved. */
  private flush(): boolean {
    if (!this.out.length || this.stopped) return false;
    const n = this.rsp.put(this.out);
    if (n === undefined) return this.fail(XenstoreError.XENSTORE_ERROR_RINGIDX);
    if (!n) return false;
    this.out = this.out.slice(n);
    return true;
  }

  /** Stops serving, with Xen's error code in the page for the guest to see. */
  private fail(code: number): false {
    this.view.setUint32(O.error, code, true);
    this.stopped = true;
    this.out = [];
    this.inbuf = [];
    return false;
  }

  /** XENSTORE_RECONNECT: both rings emptied, the connection's watches and transactions dropped, connected again. */
  private reconnect(): void {
    const v = this.view;
    this.server.disconnect(this);
    this.out = [];
    this.inbuf = [];
    for (const at of [O.req_cons, O.req_prod, O.rsp_cons, O.rsp_prod, O.error]) v.setUint32(at, 0, true);
    this.stopped = false;
    v.setUint32(O.connection, XenstoreConnection.XENSTORE_CONNECTED, true);
    this.events.setPending(this.port);
  }
}
