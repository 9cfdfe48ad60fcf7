// The PV console backend: what xenconsoled does for a Xen domU, inside the
// hypervisor. The guest's console page (start_info.console.domU.mfn) holds
// struct xencons_interface: `out` (2048 bytes, guest to host) and `in`
// (1024 bytes, host to guest) rings with free-running 32-bit indices; its
// event channel (start_info.console.domU.evtchn) is connected to this
// backend. On each notification the backend copies what the guest produced
// to the domain's console sink and frees the space; host input is copied
// into `in` as space allows, and each time the guest is notified. Inputs:
// the ring indices and contents (hostile: indices are checked, never
// trusted to stay in range).

import { XenconsInterface } from '../../abi/generated/io-console.js';
import type { EventChannels } from '../events/channels.js';
import { ByteRing } from './byte-ring.js';

const OUT_SIZE = 2048;
const IN_SIZE = 1024;
const O = XenconsInterface.OFFSETS;

export class ConsoleBackend {
  readonly port: number;
  /** The guest's output (we consume) and its input (we produce). */
  private readonly out: ByteRing;
  private readonly in: ByteRing;
  /** Host input not yet in the ring. */
  private pending: number[] = [];

  /** `onNotify` hears the guest's first notification (it uses the ring). */
  constructor(private readonly page: Uint8Array, private readonly events: EventChannels, private readonly sink: (b: Uint8Array) => void,
    private readonly onBadRing: (why: string) => void, onNotify: () => void = () => {}) {
    const view = new DataView(page.buffer, page.byteOffset, XenconsInterface.SIZE);
    this.out = new ByteRing(page, view, O.out, OUT_SIZE, O.out_cons, O.out_prod);
    this.in = new ByteRing(page, view, O.in, IN_SIZE, O.in_cons, O.in_prod);
    this.port = events.bindBackend('console', () => {
      onNotify();
      this.service();
    });
  }

  /** Copies the guest's output out of the ring, moves input in, and notifies the guest. */
  service(): void {
    const bytes = this.out.take(OUT_SIZE);
    if (bytes === undefined) {
      const v = new DataView(this.page.buffer, this.page.byteOffset);
      const cons = v.getUint32(O.out_cons, true), prod = v.getUint32(O.out_prod, true);
      this.onBadRing(`console ring: out_prod ${prod} is ${(prod - cons) >>> 0} bytes past out_cons ${cons} (the ring holds ${OUT_SIZE})`);
      return;
    }
    if (bytes.length) this.sink(bytes);
    if (this.moveInput() || bytes.length) this.events.setPending(this.port);
  }

  /** Host input for the guest (e.g. stdin). */
  input(bytes: Uint8Array): void {
    for (const b of bytes) this.pending.push(b);
    if (this.moveInput()) this.events.setPending(this.port);
  }

  private moveInput(): boolean {
    if (!this.pending.length) return false;
    const n = this.in.put(this.pending); // undefined: the guest broke its indices; nothing more goes in
    if (!n) return false;
    this.pending = this.pending.slice(n);
    return true;
  }
}
