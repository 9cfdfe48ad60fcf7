// KVM ioctls, one function each, and the layout of KVM's structures (taken
// from <linux/kvm.h> at build time, so TypeScript never types an offset by
// hand). Inputs: file descriptors and buffers from src/engine/kvm/.
#include "common.h"

#include <fcntl.h>
#include <linux/kvm.h>
#include <sys/ioctl.h>
#include <unistd.h>
#include <cstddef>

namespace pv {
namespace {

Napi::Value Open(const Napi::CallbackInfo &info) {
  Napi::Env env = info.Env();
  if (info.Length() < 1 || !info[0].IsString()) return ThrowArg(env, "path must be a string");
  std::string path = info[0].As<Napi::String>();
  int fd = open(path.c_str(), O_RDWR | O_CLOEXEC);
  if (fd < 0) return ThrowErrno(env, ("open " + path).c_str(), errno);
  return Napi::Number::New(env, fd);
}

Napi::Value Close(const Napi::CallbackInfo &info) {
  int64_t fd;
  if (!ArgInt(info, 0, INT32_MAX, &fd)) return info.Env().Undefined();
  if (close((int)fd) < 0) return ThrowErrno(info.Env(), "close", errno);
  return info.Env().Undefined();
}

// ioctl(fd, req, arg) where arg is an integer; returns the ioctl's result.
Napi::Value IntIoctl(const Napi::CallbackInfo &info, unsigned long req, const char *name, bool hasArg) {
  int64_t fd, arg = 0;
  if (!ArgInt(info, 0, INT32_MAX, &fd)) return info.Env().Undefined();
  if (hasArg && !ArgInt(info, 1, INT32_MAX, &arg)) return info.Env().Undefined();
  int r = ioctl((int)fd, req, (unsigned long)arg);
  if (r < 0) return ThrowErrno(info.Env(), name, errno);
  return Napi::Number::New(info.Env(), r);
}

// ioctl(fd, req, buffer) for a fixed-size structure passed as bytes.
Napi::Value StructIoctl(const Napi::CallbackInfo &info, unsigned long req, const char *name, size_t size) {
  int64_t fd;
  uint8_t *data;
  size_t len;
  if (!ArgInt(info, 0, INT32_MAX, &fd) || !ArgBytes(info, 1, size, &data, &len)) return info.Env().Undefined();
  if (ioctl((int)fd, req, data) < 0) return ThrowErrno(info.Env(), name, errno);
  return info.Env().Undefined();
}

#define INT_IOCTL(fn, req, hasArg) \
  Napi::Value fn(const Napi::CallbackInfo &info) { return IntIoctl(info, req, #req, hasArg); }
#define STRUCT_IOCTL(fn, req, type) \
  Napi::Value fn(const Napi::CallbackInfo &info) { return StructIoctl(info, req, #req, sizeof(type)); }

INT_IOCTL(GetApiVersion, KVM_GET_API_VERSION, false)
INT_IOCTL(CheckExtension, KVM_CHECK_EXTENSION, true)
INT_IOCTL(GetVcpuMmapSize, KVM_GET_VCPU_MMAP_SIZE, false)
INT_IOCTL(CreateVm, KVM_CREATE_VM, true)
INT_IOCTL(CreateVcpu, KVM_CREATE_VCPU, true)
INT_IOCTL(GetTscKhz, KVM_GET_TSC_KHZ, false)
INT_IOCTL(SetTscKhz, KVM_SET_TSC_KHZ, true)
STRUCT_IOCTL(GetRegs, KVM_GET_REGS, struct kvm_regs)
STRUCT_IOCTL(SetRegs, KVM_SET_REGS, struct kvm_regs)
STRUCT_IOCTL(GetSregs, KVM_GET_SREGS, struct kvm_sregs)
STRUCT_IOCTL(SetSregs, KVM_SET_SREGS, struct kvm_sregs)
STRUCT_IOCTL(GetFpu, KVM_GET_FPU, struct kvm_fpu)
STRUCT_IOCTL(SetFpu, KVM_SET_FPU, struct kvm_fpu)
STRUCT_IOCTL(GetVcpuEvents, KVM_GET_VCPU_EVENTS, struct kvm_vcpu_events)
STRUCT_IOCTL(SetVcpuEvents, KVM_SET_VCPU_EVENTS, struct kvm_vcpu_events)
STRUCT_IOCTL(EnableCap, KVM_ENABLE_CAP, struct kvm_enable_cap)

// KVM_GET_MSRS / KVM_SET_MSRS: the buffer is a struct kvm_msrs followed by
// nmsrs entries; returns how many entries were processed.
Napi::Value MsrIoctl(const Napi::CallbackInfo &info, unsigned long req, const char *name) {
  int64_t fd;
  uint8_t *data;
  size_t len;
  if (!ArgInt(info, 0, INT32_MAX, &fd) || !ArgBytes(info, 1, sizeof(struct kvm_msrs), &data, &len)) return info.Env().Undefined();
  uint32_t n = reinterpret_cast<struct kvm_msrs *>(data)->nmsrs;
  if (sizeof(struct kvm_msrs) + (size_t)n * sizeof(struct kvm_msr_entry) > len) return ThrowArg(info.Env(), "nmsrs exceeds the buffer");
  int r = ioctl((int)fd, req, data);
  if (r < 0) return ThrowErrno(info.Env(), name, errno);
  return Napi::Number::New(info.Env(), r);
}
Napi::Value GetMsrs(const Napi::CallbackInfo &info) { return MsrIoctl(info, KVM_GET_MSRS, "KVM_GET_MSRS"); }
Napi::Value SetMsrs(const Napi::CallbackInfo &info) { return MsrIoctl(info, KVM_SET_MSRS, "KVM_SET_MSRS"); }

// KVM_SET_CPUID2 / KVM_GET_SUPPORTED_CPUID: struct kvm_cpuid2 + nent entries.
Napi::Value CpuidIoctl(const Napi::CallbackInfo &info, unsigned long req, const char *name) {
  int64_t fd;
  uint8_t *data;
  size_t len;
  if (!ArgInt(info, 0, INT32_MAX, &fd) || !ArgBytes(info, 1, sizeof(struct kvm_cpuid2), &data, &len)) return info.Env().Undefined();
  uint32_t n = reinterpret_cast<struct kvm_cpuid2 *>(data)->nent;
  if (sizeof(struct kvm_cpuid2) + (size_t)n * sizeof(struct kvm_cpuid_entry2) > len) return ThrowArg(info.Env(), "nent exceeds the buffer");
  if (ioctl((int)fd, req, data) < 0) return ThrowErrno(info.Env(), name, errno);
  return info.Env().Undefined();
}
Napi::Value SetCpuid2(const Napi::CallbackInfo &info) { return CpuidIoctl(info, KVM_SET_CPUID2, "KVM_SET_CPUID2"); }
Napi::Value GetSupportedCpuid(const Napi::CallbackInfo &info) { return CpuidIoctl(info, KVM_GET_SUPPORTED_CPUID, "KVM_GET_SUPPORTED_CPUID"); }

// KVM_SET_USER_MEMORY_REGION(vmFd, slot, flags, guestPhys, size, hostAddr).
Napi::Value SetUserMemoryRegion(const Napi::CallbackInfo &info) {
  int64_t fd, slot, flags;
  uint64_t gpa, size, hva;
  if (!ArgInt(info, 0, INT32_MAX, &fd) || !ArgInt(info, 1, UINT32_MAX, &slot) || !ArgInt(info, 2, UINT32_MAX, &flags) ||
      !ArgU64(info, 3, &gpa) || !ArgU64(info, 4, &size) || !ArgU64(info, 5, &hva))
    return info.Env().Undefined();
  struct kvm_userspace_memory_region r = {};
  r.slot = (uint32_t)slot;
  r.flags = (uint32_t)flags;
  r.guest_phys_addr = gpa;
  r.memory_size = size;
  r.userspace_addr = hva;
  if (ioctl((int)fd, KVM_SET_USER_MEMORY_REGION, &r) < 0) return ThrowErrno(info.Env(), "KVM_SET_USER_MEMORY_REGION", errno);
  return info.Env().Undefined();
}

// KVM_GET_DIRTY_LOG(vmFd, slot, bitmap): fills one bit per page of the slot.
Napi::Value GetDirtyLog(const Napi::CallbackInfo &info) {
  int64_t fd, slot;
  uint8_t *data;
  size_t len;
  if (!ArgInt(info, 0, INT32_MAX, &fd) || !ArgInt(info, 1, UINT32_MAX, &slot) || !ArgBytes(info, 2, 8, &data, &len))
    return info.Env().Undefined();
  if (len % 8 != 0) return ThrowArg(info.Env(), "the dirty bitmap must be a multiple of 8 bytes");
  struct kvm_dirty_log d = {};
  d.slot = (uint32_t)slot;
  d.dirty_bitmap = data;
  if (ioctl((int)fd, KVM_GET_DIRTY_LOG, &d) < 0) return ThrowErrno(info.Env(), "KVM_GET_DIRTY_LOG", errno);
  return info.Env().Undefined();
}

// KVM_RUN(vcpuFd): 0 when the vCPU exited (reason in kvm_run), -EINTR when a
// signal (kick or deadline) interrupted it; other failures throw. This is the
// hot path: one number in, one out, written against the plain N-API C
// interface so the call touches as little code as possible (every exit on
// this host flushes the TLB, so each page touched between two KVM_RUNs costs).
napi_value Run(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1];
  int32_t fd = -1;
  napi_valuetype t;
  if (napi_get_cb_info(env, info, &argc, argv, nullptr, nullptr) != napi_ok || argc < 1 ||
      napi_typeof(env, argv[0], &t) != napi_ok || t != napi_number || napi_get_value_int32(env, argv[0], &fd) != napi_ok) {
    ThrowArg(Napi::Env(env), "vcpu fd must be a number");
    return nullptr;
  }
  int r = ioctl(fd, KVM_RUN, 0);
  int err = r == 0 ? 0 : errno;
  if (err != 0 && err != EINTR && err != EAGAIN) {
    ThrowErrno(Napi::Env(env), "KVM_RUN", err);
    return nullptr;
  }
  napi_value out;
  napi_create_int32(env, -err, &out);
  return out;
}

void SetNum(Napi::Env env, Napi::Object o, const char *k, double v) { o.Set(k, Napi::Number::New(env, v)); }

Napi::Object Layout(Napi::Env env) {
  Napi::Object l = Napi::Object::New(env);
#define OFF(name, type, member) SetNum(env, l, name, offsetof(type, member))
#define SIZE(name, type) SetNum(env, l, name, sizeof(type))
  SIZE("kvm_run", struct kvm_run);
  OFF("run.immediate_exit", struct kvm_run, immediate_exit);
  OFF("run.exit_reason", struct kvm_run, exit_reason);
  OFF("run.io.direction", struct kvm_run, io.direction);
  OFF("run.io.size", struct kvm_run, io.size);
  OFF("run.io.port", struct kvm_run, io.port);
  OFF("run.io.count", struct kvm_run, io.count);
  OFF("run.io.data_offset", struct kvm_run, io.data_offset);
  OFF("run.mmio.phys_addr", struct kvm_run, mmio.phys_addr);
  OFF("run.mmio.data", struct kvm_run, mmio.data);
  OFF("run.mmio.len", struct kvm_run, mmio.len);
  OFF("run.mmio.is_write", struct kvm_run, mmio.is_write);
  OFF("run.internal.suberror", struct kvm_run, internal.suberror);
  OFF("run.internal.ndata", struct kvm_run, internal.ndata);
  OFF("run.internal.data", struct kvm_run, internal.data);
  OFF("run.fail_entry.reason", struct kvm_run, fail_entry.hardware_entry_failure_reason);
  OFF("run.system_event.type", struct kvm_run, system_event.type);
  OFF("run.kvm_valid_regs", struct kvm_run, kvm_valid_regs);
  OFF("run.kvm_dirty_regs", struct kvm_run, kvm_dirty_regs);
  OFF("run.s.regs", struct kvm_run, s.regs.regs);
  OFF("run.s.sregs", struct kvm_run, s.regs.sregs);
  OFF("run.s.events", struct kvm_run, s.regs.events);
  SIZE("kvm_regs", struct kvm_regs);
  OFF("regs.rax", struct kvm_regs, rax);
  OFF("regs.rip", struct kvm_regs, rip);
  OFF("regs.rflags", struct kvm_regs, rflags);
  SIZE("kvm_sregs", struct kvm_sregs);
  SIZE("kvm_segment", struct kvm_segment);
  SIZE("kvm_dtable", struct kvm_dtable);
  OFF("sregs.cs", struct kvm_sregs, cs);
  OFF("sregs.ds", struct kvm_sregs, ds);
  OFF("sregs.es", struct kvm_sregs, es);
  OFF("sregs.fs", struct kvm_sregs, fs);
  OFF("sregs.gs", struct kvm_sregs, gs);
  OFF("sregs.ss", struct kvm_sregs, ss);
  OFF("sregs.tr", struct kvm_sregs, tr);
  OFF("sregs.ldt", struct kvm_sregs, ldt);
  OFF("sregs.gdt", struct kvm_sregs, gdt);
  OFF("sregs.idt", struct kvm_sregs, idt);
  OFF("sregs.cr0", struct kvm_sregs, cr0);
  OFF("sregs.cr2", struct kvm_sregs, cr2);
  OFF("sregs.cr3", struct kvm_sregs, cr3);
  OFF("sregs.cr4", struct kvm_sregs, cr4);
  OFF("sregs.cr8", struct kvm_sregs, cr8);
  OFF("sregs.efer", struct kvm_sregs, efer);
  OFF("sregs.apic_base", struct kvm_sregs, apic_base);
  OFF("segment.base", struct kvm_segment, base);
  OFF("segment.limit", struct kvm_segment, limit);
  OFF("segment.selector", struct kvm_segment, selector);
  OFF("segment.type", struct kvm_segment, type);
  OFF("segment.present", struct kvm_segment, present);
  OFF("segment.dpl", struct kvm_segment, dpl);
  OFF("segment.db", struct kvm_segment, db);
  OFF("segment.s", struct kvm_segment, s);
  OFF("segment.l", struct kvm_segment, l);
  OFF("segment.g", struct kvm_segment, g);
  OFF("segment.avl", struct kvm_segment, avl);
  OFF("segment.unusable", struct kvm_segment, unusable);
  OFF("dtable.base", struct kvm_dtable, base);
  OFF("dtable.limit", struct kvm_dtable, limit);
  SIZE("kvm_fpu", struct kvm_fpu);
  OFF("fpu.fpr", struct kvm_fpu, fpr);
  OFF("fpu.fcw", struct kvm_fpu, fcw);
  OFF("fpu.xmm", struct kvm_fpu, xmm);
  OFF("fpu.mxcsr", struct kvm_fpu, mxcsr);
  SIZE("kvm_vcpu_events", struct kvm_vcpu_events);
  OFF("events.exception.injected", struct kvm_vcpu_events, exception.injected);
  OFF("events.exception.nr", struct kvm_vcpu_events, exception.nr);
  OFF("events.exception.has_error_code", struct kvm_vcpu_events, exception.has_error_code);
  OFF("events.exception.error_code", struct kvm_vcpu_events, exception.error_code);
  OFF("events.flags", struct kvm_vcpu_events, flags);
  SIZE("kvm_msrs", struct kvm_msrs);
  SIZE("kvm_msr_entry", struct kvm_msr_entry);
  OFF("msr_entry.index", struct kvm_msr_entry, index);
  OFF("msr_entry.data", struct kvm_msr_entry, data);
  SIZE("kvm_enable_cap", struct kvm_enable_cap);
  OFF("enable_cap.cap", struct kvm_enable_cap, cap);
  OFF("enable_cap.args", struct kvm_enable_cap, args);
  SIZE("kvm_cpuid2", struct kvm_cpuid2);
  SIZE("kvm_cpuid_entry2", struct kvm_cpuid_entry2);
#undef OFF
#undef SIZE
  return l;
}

Napi::Object Constants(Napi::Env env) {
  Napi::Object c = Napi::Object::New(env);
#define K(name) SetNum(env, c, #name, name)
  K(KVM_API_VERSION);
  K(KVM_EXIT_UNKNOWN); K(KVM_EXIT_EXCEPTION); K(KVM_EXIT_IO); K(KVM_EXIT_HYPERCALL); K(KVM_EXIT_DEBUG);
  K(KVM_EXIT_HLT); K(KVM_EXIT_MMIO); K(KVM_EXIT_SHUTDOWN); K(KVM_EXIT_FAIL_ENTRY); K(KVM_EXIT_INTR);
  K(KVM_EXIT_INTERNAL_ERROR); K(KVM_EXIT_SYSTEM_EVENT); K(KVM_EXIT_X86_RDMSR); K(KVM_EXIT_X86_WRMSR);
  K(KVM_EXIT_IO_IN); K(KVM_EXIT_IO_OUT);
  K(KVM_MEM_LOG_DIRTY_PAGES); K(KVM_MEM_READONLY);
  K(KVM_SYNC_X86_REGS); K(KVM_SYNC_X86_SREGS); K(KVM_SYNC_X86_EVENTS);
  K(KVM_CAP_SYNC_REGS); K(KVM_CAP_READONLY_MEM); K(KVM_CAP_IMMEDIATE_EXIT); K(KVM_CAP_NR_MEMSLOTS);
  K(KVM_CAP_MAX_VCPUS); K(KVM_CAP_GET_TSC_KHZ); K(KVM_CAP_TSC_CONTROL); K(KVM_CAP_USER_MEMORY);
  K(KVM_CAP_DESTROY_MEMORY_REGION_WORKS); K(KVM_CAP_VCPU_EVENTS); K(KVM_CAP_EXIT_HYPERCALL);
  K(KVM_CAP_DIRTY_LOG_RING); K(KVM_CAP_X86_USER_SPACE_MSR); K(KVM_CAP_EXT_CPUID); K(KVM_CAP_IOEVENTFD);
  K(KVM_CAP_COALESCED_MMIO); K(KVM_CAP_COALESCED_PIO);
#undef K
  return c;
}

}  // namespace

void InitKvm(Napi::Env env, Napi::Object exports) {
#define F(name, fn) exports.Set(name, Napi::Function::New(env, fn, name))
  F("open", Open);
  F("close", Close);
  F("getApiVersion", GetApiVersion);
  F("checkExtension", CheckExtension);
  F("getVcpuMmapSize", GetVcpuMmapSize);
  F("createVm", CreateVm);
  F("createVcpu", CreateVcpu);
  F("setUserMemoryRegion", SetUserMemoryRegion);
  F("getDirtyLog", GetDirtyLog);
  {
    napi_value fn;
    napi_create_function(env, "run", NAPI_AUTO_LENGTH, Run, nullptr, &fn);
    exports.Set("run", Napi::Value(env, fn));
  }
  F("getRegs", GetRegs);
  F("setRegs", SetRegs);
  F("getSregs", GetSregs);
  F("setSregs", SetSregs);
  F("getFpu", GetFpu);
  F("setFpu", SetFpu);
  F("getVcpuEvents", GetVcpuEvents);
  F("setVcpuEvents", SetVcpuEvents);
  F("getMsrs", GetMsrs);
  F("setMsrs", SetMsrs);
  F("getTscKhz", GetTscKhz);
  F("setTscKhz", SetTscKhz);
  F("enableCap", EnableCap);
  F("setCpuid2", SetCpuid2);
  F("getSupportedCpuid", GetSupportedCpuid);
#undef F
  exports.Set("layout", Layout(env));
  exports.Set("constants", Constants(env));
}

}  // namespace pv
