/* KVM layouts and ioctl numbers computed by the C compiler (see kvm-abi.c). */
#pragma once
#include <stddef.h>
#ifdef __cplusplus
extern "C" {
#endif
struct pv_kvm_entry { const char *name; size_t value; };
extern const struct pv_kvm_entry pv_kvm_layout[];
extern const size_t pv_kvm_layout_count;
extern const unsigned long pv_KVM_GET_API_VERSION;
extern const unsigned long pv_KVM_CHECK_EXTENSION;
extern const unsigned long pv_KVM_GET_VCPU_MMAP_SIZE;
extern const unsigned long pv_KVM_CREATE_VM;
extern const unsigned long pv_KVM_CREATE_VCPU;
extern const unsigned long pv_KVM_GET_TSC_KHZ;
extern const unsigned long pv_KVM_SET_TSC_KHZ;
extern const unsigned long pv_KVM_GET_REGS;
extern const unsigned long pv_KVM_SET_REGS;
extern const unsigned long pv_KVM_GET_SREGS;
extern const unsigned long pv_KVM_SET_SREGS;
extern const unsigned long pv_KVM_GET_FPU;
extern const unsigned long pv_KVM_SET_FPU;
extern const unsigned long pv_KVM_GET_VCPU_EVENTS;
extern const unsigned long pv_KVM_SET_VCPU_EVENTS;
extern const unsigned long pv_KVM_GET_DEBUGREGS;
extern const unsigned long pv_KVM_SET_DEBUGREGS;
extern const unsigned long pv_KVM_ENABLE_CAP;
extern const unsigned long pv_KVM_GET_MSRS;
extern const unsigned long pv_KVM_SET_MSRS;
extern const unsigned long pv_KVM_SET_CPUID2;
extern const unsigned long pv_KVM_GET_SUPPORTED_CPUID;
extern const unsigned long pv_KVM_SET_USER_MEMORY_REGION;
extern const unsigned long pv_KVM_GET_DIRTY_LOG;
extern const unsigned long pv_KVM_RUN;
extern const size_t pv_msrs_entries_off, pv_msr_entry_size, pv_cpuid2_entries_off, pv_cpuid_entry2_size;
#ifdef __cplusplus
}
#endif
