/*
 * KVM's structure layouts and ioctl request numbers, compiled as C.
 *
 * <linux/kvm.h> declares some structures with flexible array members that
 * C++ lays out differently (struct kvm_msrs is 8 bytes in C, 16 in g++), and
 * the _IOW/_IOR request numbers encode those sizes. The kernel speaks C, so
 * every number the addon passes to the kernel or hands to TypeScript comes
 * from here.
 */
#include <linux/kvm.h>
#include <stddef.h>
#include "kvm-abi.h"

const struct pv_kvm_entry pv_kvm_layout[] = {
  {"kvm_run", sizeof(struct kvm_run)},
  {"run.immediate_exit", offsetof(struct kvm_run, immediate_exit)},
  {"run.exit_reason", offsetof(struct kvm_run, exit_reason)},
  {"run.io.direction", offsetof(struct kvm_run, io.direction)},
  {"run.io.size", offsetof(struct kvm_run, io.size)},
  {"run.io.port", offsetof(struct kvm_run, io.port)},
  {"run.io.count", offsetof(struct kvm_run, io.count)},
  {"run.io.data_offset", offsetof(struct kvm_run, io.data_offset)},
  {"run.mmio.phys_addr", offsetof(struct kvm_run, mmio.phys_addr)},
  {"run.mmio.data", offsetof(struct kvm_run, mmio.data)},
  {"run.mmio.len", offsetof(struct kvm_run, mmio.len)},
  {"run.mmio.is_write", offsetof(struct kvm_run, mmio.is_write)},
  {"run.internal.suberror", offsetof(struct kvm_run, internal.suberror)},
  {"run.internal.ndata", offsetof(struct kvm_run, internal.ndata)},
  {"run.internal.data", offsetof(struct kvm_run, internal.data)},
  {"run.fail_entry.reason", offsetof(struct kvm_run, fail_entry.hardware_entry_failure_reason)},
  {"run.system_event.type", offsetof(struct kvm_run, system_event.type)},
  {"run.kvm_valid_regs", offsetof(struct kvm_run, kvm_valid_regs)},
  {"run.kvm_dirty_regs", offsetof(struct kvm_run, kvm_dirty_regs)},
  {"run.s.regs", offsetof(struct kvm_run, s.regs.regs)},
  {"run.s.sregs", offsetof(struct kvm_run, s.regs.sregs)},
  {"run.s.events", offsetof(struct kvm_run, s.regs.events)},
  {"kvm_regs", sizeof(struct kvm_regs)},
  {"regs.rax", offsetof(struct kvm_regs, rax)},
  {"regs.rip", offsetof(struct kvm_regs, rip)},
  {"regs.rflags", offsetof(struct kvm_regs, rflags)},
  {"kvm_sregs", sizeof(struct kvm_sregs)},
  {"kvm_segment", sizeof(struct kvm_segment)},
  {"kvm_dtable", sizeof(struct kvm_dtable)},
  {"sregs.cs", offsetof(struct kvm_sregs, cs)},
  {"sregs.ds", offsetof(struct kvm_sregs, ds)},
  {"sregs.es", offsetof(struct kvm_sregs, es)},
  {"sregs.fs", offsetof(struct kvm_sregs, fs)},
  {"sregs.gs", offsetof(struct kvm_sregs, gs)},
  {"sregs.ss", offsetof(struct kvm_sregs, ss)},
  {"sregs.tr", offsetof(struct kvm_sregs, tr)},
  {"sregs.ldt", offsetof(struct kvm_sregs, ldt)},
  {"sregs.gdt", offsetof(struct kvm_sregs, gdt)},
  {"sregs.idt", offsetof(struct kvm_sregs, idt)},
  {"sregs.cr0", offsetof(struct kvm_sregs, cr0)},
  {"sregs.cr2", offsetof(struct kvm_sregs, cr2)},
  {"sregs.cr3", offsetof(struct kvm_sregs, cr3)},
  {"sregs.cr4", offsetof(struct kvm_sregs, cr4)},
  {"sregs.cr8", offsetof(struct kvm_sregs, cr8)},
  {"sregs.efer", offsetof(struct kvm_sregs, efer)},
  {"sregs.apic_base", offsetof(struct kvm_sregs, apic_base)},
  {"segment.base", offsetof(struct kvm_segment, base)},
  {"segment.limit", offsetof(struct kvm_segment, limit)},
  {"segment.selector", offsetof(struct kvm_segment, selector)},
  {"segment.type", offsetof(struct kvm_segment, type)},
  {"segment.present", offsetof(struct kvm_segment, present)},
  {"segment.dpl", offsetof(struct kvm_segment, dpl)},
  {"segment.db", offsetof(struct kvm_segment, db)},
  {"segment.s", offsetof(struct kvm_segment, s)},
  {"segment.l", offsetof(struct kvm_segment, l)},
  {"segment.g", offsetof(struct kvm_segment, g)},
  {"segment.avl", offsetof(struct kvm_segment, avl)},
  {"segment.unusable", offsetof(struct kvm_segment, unusable)},
  {"dtable.base", offsetof(struct kvm_dtable, base)},
  {"dtable.limit", offsetof(struct kvm_dtable, limit)},
  {"kvm_fpu", sizeof(struct kvm_fpu)},
  {"fpu.fpr", offsetof(struct kvm_fpu, fpr)},
  {"fpu.fcw", offsetof(struct kvm_fpu, fcw)},
  {"fpu.xmm", offsetof(struct kvm_fpu, xmm)},
  {"fpu.mxcsr", offsetof(struct kvm_fpu, mxcsr)},
  {"kvm_vcpu_events", sizeof(struct kvm_vcpu_events)},
  {"kvm_debugregs", sizeof(struct kvm_debugregs)},
  {"debugregs.db", offsetof(struct kvm_debugregs, db)},
  {"debugregs.dr6", offsetof(struct kvm_debugregs, dr6)},
  {"debugregs.dr7", offsetof(struct kvm_debugregs, dr7)},
  {"events.exception.injected", offsetof(struct kvm_vcpu_events, exception.injected)},
  {"events.exception.nr", offsetof(struct kvm_vcpu_events, exception.nr)},
  {"events.exception.has_error_code", offsetof(struct kvm_vcpu_events, exception.has_error_code)},
  {"events.exception.error_code", offsetof(struct kvm_vcpu_events, exception.error_code)},
  {"events.flags", offsetof(struct kvm_vcpu_events, flags)},
  {"kvm_msrs", sizeof(struct kvm_msrs)},
  {"msrs.entries", offsetof(struct kvm_msrs, entries)},
  {"kvm_msr_entry", sizeof(struct kvm_msr_entry)},
  {"msr_entry.index", offsetof(struct kvm_msr_entry, index)},
  {"msr_entry.data", offsetof(struct kvm_msr_entry, data)},
  {"kvm_enable_cap", sizeof(struct kvm_enable_cap)},
  {"enable_cap.cap", offsetof(struct kvm_enable_cap, cap)},
  {"enable_cap.args", offsetof(struct kvm_enable_cap, args)},
  {"kvm_cpuid2", sizeof(struct kvm_cpuid2)},
  {"cpuid2.entries", offsetof(struct kvm_cpuid2, entries)},
  {"kvm_cpuid_entry2", sizeof(struct kvm_cpuid_entry2)},
};
const size_t pv_kvm_layout_count = sizeof(pv_kvm_layout) / sizeof(pv_kvm_layout[0]);

const unsigned long pv_KVM_GET_API_VERSION = KVM_GET_API_VERSION;
const unsigned long pv_KVM_CHECK_EXTENSION = KVM_CHECK_EXTENSION;
const unsigned long pv_KVM_GET_VCPU_MMAP_SIZE = KVM_GET_VCPU_MMAP_SIZE;
const unsigned long pv_KVM_CREATE_VM = KVM_CREATE_VM;
const unsigned long pv_KVM_CREATE_VCPU = KVM_CREATE_VCPU;
const unsigned long pv_KVM_GET_TSC_KHZ = KVM_GET_TSC_KHZ;
const unsigned long pv_KVM_SET_TSC_KHZ = KVM_SET_TSC_KHZ;
const unsigned long pv_KVM_GET_REGS = KVM_GET_REGS;
const unsigned long pv_KVM_SET_REGS = KVM_SET_REGS;
const unsigned long pv_KVM_GET_SREGS = KVM_GET_SREGS;
const unsigned long pv_KVM_SET_SREGS = KVM_SET_SREGS;
const unsigned long pv_KVM_GET_FPU = KVM_GET_FPU;
const unsigned long pv_KVM_SET_FPU = KVM_SET_FPU;
const unsigned long pv_KVM_GET_VCPU_EVENTS = KVM_GET_VCPU_EVENTS;
const unsigned long pv_KVM_SET_VCPU_EVENTS = KVM_SET_VCPU_EVENTS;
const unsigned long pv_KVM_GET_DEBUGREGS = KVM_GET_DEBUGREGS;
const unsigned long pv_KVM_SET_DEBUGREGS = KVM_SET_DEBUGREGS;
const unsigned long pv_KVM_ENABLE_CAP = KVM_ENABLE_CAP;
const unsigned long pv_KVM_GET_MSRS = KVM_GET_MSRS;
const unsigned long pv_KVM_SET_MSRS = KVM_SET_MSRS;
const unsigned long pv_KVM_SET_CPUID2 = KVM_SET_CPUID2;
const unsigned long pv_KVM_GET_SUPPORTED_CPUID = KVM_GET_SUPPORTED_CPUID;
const unsigned long pv_KVM_SET_USER_MEMORY_REGION = KVM_SET_USER_MEMORY_REGION;
const unsigned long pv_KVM_GET_DIRTY_LOG = KVM_GET_DIRTY_LOG;
const unsigned long pv_KVM_RUN = KVM_RUN;
const size_t pv_msrs_entries_off = offsetof(struct kvm_msrs, entries);
const size_t pv_msr_entry_size = sizeof(struct kvm_msr_entry);
const size_t pv_cpuid2_entries_off = offsetof(struct kvm_cpuid2, entries);
const size_t pv_cpuid_entry2_size = sizeof(struct kvm_cpuid_entry2);
