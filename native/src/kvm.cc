// KVM ioctls, one function each, and the layout of KVM's structures (taken
// from <linux/kvm.h> at build time, so TypeScript never types an offset by
// hand). Inputs: file descriptors and buffers from src/engine/kvm/.
#include "common.h"

#include <time.h>

#include <fcntl.h>
#include <linux/kvm.h>
#include <sys/ioctl.h>
#include <unistd.h>
#include <cstddef>
#include "kvm-abi.h"

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

// Every ioctl but KVM_RUN is restarted when a signal interrupts it: vCPU
// kicks, profilers and Node itself send signals to this process, and a VM
// or vCPU set-up call is not meant to be cut short (KVM_RUN's EINTR is a
// kick and is reported).
template <typename T>
int RetryIoctl(int fd, unsigned long req, T arg) {
  int r;
  do r = ioctl(fd, req, arg);
  while (r < 0 && errno == EINTR);
  return r;
}

// RetryIoctl(fd, req, arg) where arg is an integer; returns the ioctl's result.
Napi::Value IntIoctl(const Napi::CallbackInfo &info, unsigned long req, const char *name, bool hasArg) {
  int64_t fd, arg = 0;
  if (!ArgInt(info, 0, INT32_MAX, &fd)) return info.Env().Undefined();
  if (hasArg && !ArgInt(info, 1, INT32_MAX, &arg)) return info.Env().Undefined();
  int r = RetryIoctl((int)fd, req, (unsigned long)arg);
  if (r < 0) return ThrowErrno(info.Env(), name, errno);
  return Napi::Number::New(info.Env(), r);
}

// RetryIoctl(fd, req, buffer) for a fixed-size structure passed as bytes.
Napi::Value StructIoctl(const Napi::CallbackInfo &info, unsigned long req, const char *name, size_t size) {
  int64_t fd;
  uint8_t *data;
  size_t len;
  if (!ArgInt(info, 0, INT32_MAX, &fd) || !ArgBytes(info, 1, size, &data, &len)) return info.Env().Undefined();
  if (RetryIoctl((int)fd, req, data) < 0) return ThrowErrno(info.Env(), name, errno);
  return info.Env().Undefined();
}

#define INT_IOCTL(fn, req, hasArg) \
  Napi::Value fn(const Napi::CallbackInfo &info) { return IntIoctl(info, req, &#req[3], hasArg); }
#define STRUCT_IOCTL(fn, req, type) \
  Napi::Value fn(const Napi::CallbackInfo &info) { return StructIoctl(info, req, &#req[3], sizeof(type)); }

INT_IOCTL(GetApiVersion, pv_KVM_GET_API_VERSION, false)
INT_IOCTL(CheckExtension, pv_KVM_CHECK_EXTENSION, true)
INT_IOCTL(GetVcpuMmapSize, pv_KVM_GET_VCPU_MMAP_SIZE, false)
INT_IOCTL(CreateVm, pv_KVM_CREATE_VM, true)
INT_IOCTL(CreateVcpu, pv_KVM_CREATE_VCPU, true)
INT_IOCTL(GetTscKhz, pv_KVM_GET_TSC_KHZ, false)
INT_IOCTL(SetTscKhz, pv_KVM_SET_TSC_KHZ, true)
STRUCT_IOCTL(GetRegs, pv_KVM_GET_REGS, struct kvm_regs)
STRUCT_IOCTL(SetRegs, pv_KVM_SET_REGS, struct kvm_regs)
STRUCT_IOCTL(GetSregs, pv_KVM_GET_SREGS, struct kvm_sregs)
STRUCT_IOCTL(SetSregs, pv_KVM_SET_SREGS, struct kvm_sregs)
STRUCT_IOCTL(GetFpu, pv_KVM_GET_FPU, struct kvm_fpu)
STRUCT_IOCTL(SetFpu, pv_KVM_SET_FPU, struct kvm_fpu)
STRUCT_IOCTL(GetVcpuEvents, pv_KVM_GET_VCPU_EVENTS, struct kvm_vcpu_events)
STRUCT_IOCTL(SetVcpuEvents, pv_KVM_SET_VCPU_EVENTS, struct kvm_vcpu_events)
STRUCT_IOCTL(GetDebugRegs, pv_KVM_GET_DEBUGREGS, struct kvm_debugregs)
STRUCT_IOCTL(SetDebugRegs, pv_KVM_SET_DEBUGREGS, struct kvm_debugregs)
STRUCT_IOCTL(EnableCap, pv_KVM_ENABLE_CAP, struct kvm_enable_cap)

// KVM_GET_MSRS / KVM_SET_MSRS: the buffer is a struct kvm_msrs followed by
// nmsrs entries; returns how many entries were processed.
Napi::Value MsrIoctl(const Napi::CallbackInfo &info, unsigned long req, const char *name) {
  int64_t fd;
  uint8_t *data;
  size_t len;
  if (!ArgInt(info, 0, INT32_MAX, &fd) || !ArgBytes(info, 1, pv_msrs_entries_off, &data, &len)) return info.Env().Undefined();
  uint32_t n = reinterpret_cast<struct kvm_msrs *>(data)->nmsrs;
  if (pv_msrs_entries_off + (size_t)n * pv_msr_entry_size > len) return ThrowArg(info.Env(), "nmsrs exceeds the buffer");
  int r = RetryIoctl((int)fd, req, data);
  if (r < 0) return ThrowErrno(info.Env(), name, errno);
  return Napi::Number::New(info.Env(), r);
}
Napi::Value GetMsrs(const Napi::CallbackInfo &info) { return MsrIoctl(info, pv_KVM_GET_MSRS, "KVM_GET_MSRS"); }
Napi::Value SetMsrs(const Napi::CallbackInfo &info) { return MsrIoctl(info, pv_KVM_SET_MSRS, "KVM_SET_MSRS"); }

// KVM_SET_CPUID2 / KVM_GET_SUPPORTED_CPUID: struct kvm_cpuid2 + nent entries.
Napi::Value CpuidIoctl(const Napi::CallbackInfo &info, unsigned long req, const char *name) {
  int64_t fd;
  uint8_t *data;
  size_t len;
  if (!ArgInt(info, 0, INT32_MAX, &fd) || !ArgBytes(info, 1, pv_cpuid2_entries_off, &data, &len)) return info.Env().Undefined();
  uint32_t n = reinterpret_cast<struct kvm_cpuid2 *>(data)->nent;
  if (pv_cpuid2_entries_off + (size_t)n * pv_cpuid_entry2_size > len) return ThrowArg(info.Env(), "nent exceeds the buffer");
  if (RetryIoctl((int)fd, req, data) < 0) return ThrowErrno(info.Env(), name, errno);
  return info.Env().Undefined();
}
Napi::Value SetCpuid2(const Napi::CallbackInfo &info) { return CpuidIoctl(info, pv_KVM_SET_CPUID2, "KVM_SET_CPUID2"); }
Napi::Value GetSupportedCpuid(const Napi::CallbackInfo &info) { return CpuidIoctl(info, pv_KVM_GET_SUPPORTED_CPUID, "KVM_GET_SUPPORTED_CPUID"); }

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
  if (RetryIoctl((int)fd, pv_KVM_SET_USER_MEMORY_REGION, &r) < 0) return ThrowErrno(info.Env(), "KVM_SET_USER_MEMORY_REGION", errno);
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
  if (RetryIoctl((int)fd, pv_KVM_GET_DIRTY_LOG, &d) < 0) return ThrowErrno(info.Env(), "KVM_GET_DIRTY_LOG", errno);
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
  int r = ioctl(fd, pv_KVM_RUN, 0);
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
  for (size_t i = 0; i < pv_kvm_layout_count; i++) SetNum(env, l, pv_kvm_layout[i].name, (double)pv_kvm_layout[i].value);
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

// hostTscPair(out: BigInt64Array(2)): the host TSC and CLOCK_MONOTONIC (ns)
// at one instant: rdtsc on both sides of the vDSO clock read, averaged (a
// window of well under a microsecond, where reading a vCPU's TSC MSR takes
// 20-50 us on this host). Returns the window in TSC ticks.
napi_value HostTscPair(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1];
  napi_typedarray_type type;
  size_t length = 0;
  void *data = nullptr;
  if (napi_get_cb_info(env, info, &argc, argv, nullptr, nullptr) != napi_ok || argc < 1 ||
      napi_get_typedarray_info(env, argv[0], &type, &length, &data, nullptr, nullptr) != napi_ok ||
      type != napi_bigint64_array || length < 2) {
    ThrowArg(Napi::Env(env), "argument must be a BigInt64Array of length 2");
    return nullptr;
  }
  struct timespec ts;
  uint64_t before = __builtin_ia32_rdtsc();
  clock_gettime(CLOCK_MONOTONIC, &ts);
  uint64_t after = __builtin_ia32_rdtsc();
  int64_t *out = static_cast<int64_t *>(data);
  out[0] = (int64_t)(before + (after - before) / 2);
  out[1] = (int64_t)ts.tv_sec * 1000000000LL + ts.tv_nsec;
  napi_value r;
  napi_create_double(env, (double)(after - before), &r);
  return r;
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
  F("getDebugRegs", GetDebugRegs);
  F("setDebugRegs", SetDebugRegs);
  F("getMsrs", GetMsrs);
  F("setMsrs", SetMsrs);
  F("getTscKhz", GetTscKhz);
  F("setTscKhz", SetTscKhz);
  {
    napi_value fn;
    napi_create_function(env, "hostTscPair", NAPI_AUTO_LENGTH, HostTscPair, nullptr, &fn);
    exports.Set("hostTscPair", Napi::Value(env, fn));
  }
  F("enableCap", EnableCap);
  F("setCpuid2", SetCpuid2);
  F("getSupportedCpuid", GetSupportedCpuid);
#undef F
  exports.Set("layout", Layout(env));
  exports.Set("constants", Constants(env));
}

}  // namespace pv
