// The hypercall table as paravane fills it: every implemented hypercall,
// by the name the ABI schemas give it, with its handler. This list is the
// index of the hypercall layer: to add a hypercall, declare it in abi/,
// write its handler in the family's module here, and add one line below.

import { HypercallTable, type HypercallHandler } from './table.js';
import { consoleIo, memoryOp, pvbenchOp, schedOp, vmAssist, xenVersion } from './basic.js';
import { mmuextOp, mmuUpdate, multicall, updateVaMapping } from './mmu.js';
import { callbackOp, fpuTaskswitch, iret, setCallbacks, setSegmentBase, setTrapTable, stackSwitch } from './traps.js';
import { eventChannelOp } from './events.js';
import { setTimerOp, vcpuOp } from './vcpu-op.js';
import { physdevOp } from './physdev.js';
import { setGdt, updateDescriptor } from './descriptors.js';
import { grantTableOp } from './grant-table.js';
import { getDebugreg, setDebugreg } from './debugreg.js';

/** Reading path 6: implemented hypercalls, name (as in abi/*.proto) and handler. */
export const HANDLERS: ReadonlyArray<readonly [string, HypercallHandler]> = [
  // Boot and console (basic.ts)
  ['console_io', consoleIo],
  ['xen_version', xenVersion],
  ['sched_op', schedOp],
  ['vm_assist', vmAssist],
  ['memory_op', memoryOp],
  // Memory management (mmu.ts)
  ['mmu_update', mmuUpdate],
  ['update_va_mapping', updateVaMapping],
  ['mmuext_op', mmuextOp],
  ['multicall', multicall],
  // Traps and callbacks (traps.ts)
  ['set_trap_table', setTrapTable],
  ['set_callbacks', setCallbacks],
  ['callback_op', callbackOp],
  ['stack_switch', stackSwitch],
  ['fpu_taskswitch', fpuTaskswitch],
  ['set_segment_base', setSegmentBase],
  ['iret', iret],
  // Debug registers (debugreg.ts)
  ['set_debugreg', setDebugreg],
  ['get_debugreg', getDebugreg],
  // Descriptor tables (descriptors.ts)
  ['set_gdt', setGdt],
  ['update_descriptor', updateDescriptor],
  // Events (events.ts)
  ['event_channel_op', eventChannelOp],
  // Grant tables (grant-table.ts)
  ['grant_table_op', grantTableOp],
  // Devices: the virtual IOPL (physdev.ts)
  ['physdev_op', physdevOp],
  // Time and vCPUs (vcpu-op.ts)
  ['set_timer_op', setTimerOp],
  ['vcpu_op', vcpuOp],
  // paravane's experimental hypercalls (64-127)
  ['pvbench_op', pvbenchOp],
];

/** A table with every implemented hypercall. */
export function createHypercallTable(): HypercallTable {
  const t = new HypercallTable();
  for (const [name, handler] of HANDLERS) t.register(name, handler);
  return t;
}
