// Entry point of the paravane KVM addon: one function per ioctl or system
// call, typed by native/index.d.ts. Called only from src/engine/kvm/.
#include "common.h"

static Napi::Object Init(Napi::Env env, Napi::Object exports) {
  pv::InitKvm(env, exports);
  pv::InitMemory(env, exports);
  pv::InitKick(env, exports);
  pv::InitVcpuThread(env, exports);
  return exports;
}

NODE_API_MODULE(paravane_kvm, Init)
