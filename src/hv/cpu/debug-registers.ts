// A vCPU's debug registers as Xen gives them to a PV guest (set_debugreg,
// get_debugreg, and `mov` to and from DR0-DR7 through the emulator): the
// breakpoint addresses must be the guest's (never the hypervisor's area:
// -EPERM), DR6 and DR7 keep their architectural reserved bits, DR7's
// general-detect bit is refused (-EPERM), and an I/O breakpoint needs the
// guest's CR4.DE. The values are the guest's virtual ones; what a vCPU
// may really break on is loaded into the engine. Inputs: register numbers
// and values from the guest (hostile, checked here).

import type { Vcpu } from '../../engine/types.js';
import { errno } from '../hypercalls/context.js';
import { guestRangeOk } from '../mm/guest-access.js';

/** DR6's reserved bits: 4-11 and 16-31 read as one, 12 and 32-63 as zero. */
const DR6_ONES = 0xffff0ff0n, DR6_ZEROES = 0xffffffff_00001000n;
/** DR7's reserved bits: 10 reads as one, 11, 12, 14, 15 and 32-63 as zero. */
const DR7_ONE = 0x400n, DR7_KEEP = 0xffff27ffn;
const DR7_GD = 1n << 13n;
/** L0-L3 and G0-G3: any breakpoint enabled. */
const DR7_ENABLES = 0xffn;
const CR4_DE = 0x8n;
const DR_IO = 2n;

export class VcpuDebugRegisters {
  readonly dr: [bigint, bigint, bigint, bigint] = [0n, 0n, 0n, 0n];
  dr6 = DR6_ONES;
  dr7 = DR7_ONE;
  /** I/O breakpoints the guest enabled (kept from the hardware, which cannot do them for a PV guest). */
  private dr7Io = 0n;

  /** `cr4` is the guest's virtual CR4 (DE decides DR4/DR5 and I/O breakpoints). */
  constructor(private readonly engine: Vcpu, private readonly cr4: () => bigint) {}

  /** set_debugreg(reg, value): 0 or Xen's errno. */
  set(reg: number, value: bigint): bigint {
    const de = (this.cr4() & CR4_DE) !== 0n;
    switch (reg) {
      case 0: case 1: case 2: case 3:
        // Xen's breakpoint_addr_ok: the address is the guest's (its length is not counted).
        if (!guestRangeOk(value, 1)) return errno('XEN_EPERM');
        this.dr[reg] = value;
        break;
      case 4: case 6:
        if (reg === 4 && de) return errno('XEN_ENODEV');
        this.dr6 = (value & ~DR6_ZEROES) | DR6_ONES;
        break;
      case 5: case 7: {
        if (reg === 5 && de) return errno('XEN_ENODEV');
        let v = (value & DR7_KEEP) | DR7_ONE;
        if (v & DR7_GD) return errno('XEN_EPERM');
        let io = 0n;
        if (v & DR7_ENABLES) {
          for (let i = 0n; i < 4n; i++) {
            if (((v >> (16n + 4n * i)) & 3n) !== DR_IO) continue;
            if (!de) return errno('XEN_EPERM');
            io |= v & (3n << (2n * i));
          }
        }
        this.dr7Io = io;
        v &= ~io;
        this.dr7 = v;
        break;
      }
      default:
        return errno('XEN_EINVAL');
    }
    this.load();
    return 0n;
  }

  /** get_debugreg(reg): the value, or Xen's errno for a register that does not exist. */
  get(reg: number): bigint {
    const de = (this.cr4() & CR4_DE) !== 0n;
    switch (reg) {
      case 0: case 1: case 2: case 3:
        return this.dr[reg];
      case 4: case 6:
        return reg === 4 && de ? errno('XEN_ENODEV') : this.dr6;
      case 5: case 7:
        return reg === 5 && de ? errno('XEN_ENODEV') : this.dr7 | this.dr7Io;
      default:
        return errno('XEN_EINVAL');
    }
  }

  /**
   * A #DB reached the guest: what the hardware's DR6 says happened is added
   * to the guest's DR6 (as Xen does), and the hardware's is reset.
   */
  debugException(): void {
    const hw = this.engine.getDebugRegisters();
    this.dr6 |= hw.dr6 & ~DR6_ONES;
    this.engine.setDebugRegisters({ ...hw, dr6: DR6_ONES });
  }

  private load(): void {
    this.engine.setDebugRegisters({ db: [...this.dr], dr6: this.dr6, dr7: this.dr7 });
  }
}
