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

const OUT_SIZE = 2048;
const IN_SIZE = 1024;
const O = XenconsInterface.OFFSETS;

export class ConsoleBackend {
  readonly port: number;
  private readonly view: DataView;
  /** Host input not yet in the ring. */
  private pending: number[] = [];

  /** `onNotify` hears the guest's first notification (it uses the ring). */
  constructor(private readonly page: Uint8Array, private readonly events: EventChannels, private readonly sink: (b: Uint8Array) => void,
    private readonly onBadRing: (why: string) => void, onNotify: () => void = () => {}) {
    this.view = new DataView(page.buffer, page.byteOffset, XenconsInterface.SIZE);
    this.port = events.bindBackend('console', () => {
      onNotify();
      this.service();
    });
  }

  /** Copies the guest's output out of the ring, moves input in, and notifies the guest. */
  service(): void {
    const v = this.view;
    const cons = v.getUint32(O.out_cons, true);
    const prod = v.getUint32(O.out_prod, true);
    const n = (prod - cons) >>> 0;
    if (n > OUT_SIZE) {
      this.onBadRing(`console ring: out_prod ${prod} is ${n} bytes past out_cons ${cons} (the ring holds ${OUT_SIZE})`);
      return;
    }
    let notify = false;
    if (n) {
      const bytes = new Uint8Array(n);
      for (let i = 0; i < n; i++) bytes[i] = this.page[O.out + ((cons + i) % OUT_SIZE)]!;
      v.setUint32(O.out_cons, prod, true);
      this.sink(bytes);
      notify = true;
    }
    if (this.moveInput()) notify = true;
    if (notify) this.events.setPending(this.port);
  }

  /** Host input for the guest (e.g. stdin). */
  input(bytes: Uint8Array): void {
    for (const b of bytes) this.pending.push(b);
    if (this.moveInput()) this.events.setPending(this.port);
  }

  private moveInput(): boolean {
    if (!this.pending.length) return false;
    const v = this.view;
    const cons = v.getUint32(O.in_cons, true);
    let prod = v.getUint32(O.in_prod, true);
    const used = (prod - cons) >>> 0;
    if (used > IN_SIZE) return false; // the guest broke its indices: take nothing more
    const n = Math.min(IN_SIZE - used, this.pending.length);
    if (!n) return false;
    for (let i = 0; i < n; i++) this.page[O.in + ((prod + i) % IN_SIZE)] = this.pending[i]!;
    prod = (prod + n) >>> 0;
    v.setUint32(O.in_prod, prod, true);
    this.pending = this.pending.slice(n);
    return true;
  }
}
