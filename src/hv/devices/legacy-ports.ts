// The I/O ports a PV domain's `in` and `out` reach (under its virtual
// IOPL, emulate.ts), as Xen's guest_io_read and guest_io_write answer a
// domain that has no physical ports, with one addition: the PIT's counter
// 2 and its control port (0x42, 0x43) and the speaker/gate port (0x61)
// are emulated (devices/pit.ts says why; Xen does so for its hardware
// domain). As Xen: the RTC index port (0x70) reads back the index written,
// without its NMI-mask bit 7; the data port (0x71) reads all ones; a
// 32-bit write to PCI's CONFIG_ADDRESS (0xcf8) is kept and read back (0 at
// first), and CONFIG_DATA (0xcfc-0xcff) reads all ones; every other port
// is absent hardware: reads all ones, writes dropped. A 16- or 32-bit
// access is made of byte accesses to consecutive ports (0xcf8 excepted).
// Linux's boot probes (PIT calibration, i8042, 8250, PIC, CMOS, PCI) each
// end at once against these answers. Inputs: the guest's port numbers and
// data (hostile, any value).

import { Pit2 } from './pit.js';

const CONFIG_ADDRESS = 0xcf8;

/** How many port reads and writes the domain made (`paravane run --stats`). */
export interface PortCounts {
  reads: number;
  writes: number;
}

export class LegacyPorts {
  readonly pit: Pit2;
  /** Port 0x61 bit 1: the speaker's data enable (kept, read back; there is no speaker). */
  private speakerData = false;
  private cmosIndex = 0;
  private pciConfigAddress = 0;
  readonly counts: PortCounts = { reads: 0, writes: 0 };

  /** `now`: the domain's clock, ns (the PIT counts from it; port 0x61's refresh bit toggles with it). */
  constructor(private readonly now: () => bigint) {
    this.pit = new Pit2(now);
  }

  /** `in` of 1, 2 or 4 bytes at `port`: the value, zero-extended. */
  read(port: number, bytes: 1 | 2 | 4): number {
    this.counts.reads++;
    port &= 0xffff;
    if (port === CONFIG_ADDRESS && bytes === 4) return this.pciConfigAddress;
    let value = 0;
    for (let i = 0; i < bytes; i++) value |= this.readByte((port + i) & 0xffff) << (8 * i);
    return value >>> 0;
  }

  /** `out` of 1, 2 or 4 bytes (`data`'s low bytes) at `port`. */
  write(port: number, bytes: 1 | 2 | 4, data: number): void {
    this.counts.writes++;
    port &= 0xffff;
    if (port === CONFIG_ADDRESS && bytes === 4) {
      this.pciConfigAddress = data >>> 0;
      return;
    }
    for (let i = 0; i < bytes; i++) this.writeByte((port + i) & 0xffff, (data >>> (8 * i)) & 0xff);
  }

  private readByte(port: number): number {
    switch (port) {
      case 0x42: return this.pit.readCount();
      case 0x43: return 0; // the control port is write-only (Xen's model reads it as 0)
      case 0x61: {
        // Bit 0 gate 2, bit 1 speaker data, bit 4 the refresh toggle (every ~15 us), bit 5 counter 2's OUT.
        const refresh = Number((this.now() / 15_000n) & 1n);
        return (this.pit.gateOn ? 1 : 0) | (this.speakerData ? 2 : 0) | (refresh << 4) | (this.pit.out() ? 0x20 : 0);
      }
      case 0x70: return this.cmosIndex & 0x7f; // bit 7 is the NMI mask, not part of the index
      default: return 0xff;
    }
  }

  private writeByte(port: number, v: number): void {
    switch (port) {
      case 0x42: return this.pit.writeCount(v);
      case 0x43: return this.pit.writeControl(v);
      case 0x61:
        this.pit.setGate((v & 1) !== 0);
        this.speakerData = (v & 2) !== 0;
        return;
      case 0x70:
        this.cmosIndex = v;
        return;
      default:
        return;
    }
  }
}
