// Shared helpers of the paravane KVM addon: argument checks and errors that
// carry the failing call's name and errno. No policy lives in this addon;
// TypeScript validates arguments first, these checks are a second line.
#pragma once

#include <napi.h>
#include <cerrno>
#include <cstdint>
#include <cstring>
#include <string>
#include <pthread.h>
#include <sys/types.h>

struct kvm_run;

namespace pv {

// Throws an Error with code, syscall name and errno; returns undefined.
inline Napi::Value ThrowErrno(Napi::Env env, const char *call, int err) {
  std::string msg = std::string(call) + " failed: " + strerror(err);
  Napi::Error e = Napi::Error::New(env, msg);
  e.Set("code", Napi::String::New(env, "ERR_KVM_CALL"));
  e.Set("syscall", Napi::String::New(env, call));
  e.Set("errno", Napi::Number::New(env, err));
  const char *name = strerrorname_np(err);
  e.Set("errnoName", Napi::String::New(env, name ? name : "E?"));
  e.ThrowAsJavaScriptException();
  return env.Undefined();
}

inline Napi::Value ThrowArg(Napi::Env env, const std::string &msg) {
  Napi::TypeError e = Napi::TypeError::New(env, msg);
  e.Set("code", Napi::String::New(env, "ERR_INVALID_ARG"));
  e.ThrowAsJavaScriptException();
  return env.Undefined();
}

// Reads argument i as a non-negative int32 (file descriptors, slots, ids).
inline bool ArgInt(const Napi::CallbackInfo &info, size_t i, int64_t max, int64_t *out) {
  if (info.Length() <= i || !info[i].IsNumber()) {
    ThrowArg(info.Env(), "argument " + std::to_string(i) + " must be a number");
    return false;
  }
  double d = info[i].As<Napi::Number>().DoubleValue();
  if (!(d >= 0 && d <= (double)max) || d != (double)(int64_t)d) {
    ThrowArg(info.Env(), "argument " + std::to_string(i) + " must be an integer in 0.." + std::to_string(max));
    return false;
  }
  *out = (int64_t)d;
  return true;
}

// Reads argument i as an unsigned 64-bit value given as a bigint or a safe integer.
inline bool ArgU64(const Napi::CallbackInfo &info, size_t i, uint64_t *out) {
  if (info.Length() > i && info[i].IsBigInt()) {
    bool lossless = false;
    *out = info[i].As<Napi::BigInt>().Uint64Value(&lossless);
    if (!lossless) { ThrowArg(info.Env(), "argument " + std::to_string(i) + " does not fit in 64 bits"); return false; }
    return true;
  }
  int64_t v;
  if (!ArgInt(info, i, (int64_t)1 << 53, &v)) return false;
  *out = (uint64_t)v;
  return true;
}

// Argument i as writable bytes (a TypedArray or an ArrayBuffer) of at least `need` bytes.
inline bool ArgBytes(const Napi::CallbackInfo &info, size_t i, size_t need, uint8_t **data, size_t *len) {
  if (info.Length() > i && info[i].IsTypedArray()) {
    Napi::TypedArray ta = info[i].As<Napi::TypedArray>();
    *data = static_cast<uint8_t *>(ta.ArrayBuffer().Data()) + ta.ByteOffset();
    *len = ta.ByteLength();
  } else if (info.Length() > i && info[i].IsArrayBuffer()) {
    Napi::ArrayBuffer ab = info[i].As<Napi::ArrayBuffer>();
    *data = static_cast<uint8_t *>(ab.Data());
    *len = ab.ByteLength();
  } else {
    ThrowArg(info.Env(), "argument " + std::to_string(i) + " must be a Uint8Array or ArrayBuffer");
    return false;
  }
  if (*len < need) {
    ThrowArg(info.Env(), "argument " + std::to_string(i) + " holds " + std::to_string(*len) + " bytes; " + std::to_string(need) + " needed");
    return false;
  }
  return true;
}

void InitKvm(Napi::Env env, Napi::Object exports);
void InitVcpuThread(Napi::Env env, Napi::Object exports);
// kick.cc: registers kvm_run for kicks aimed at a thread; returns a handle or -errno.
// handle % kKickSlots is a small index unique among live registrations.
constexpr int kKickSlots = 4096;
int64_t KickRegister(struct kvm_run *run, pid_t tid, pthread_t thread);
int KickSignalNumber();
void InitMemory(Napi::Env env, Napi::Object exports);
void InitKick(Napi::Env env, Napi::Object exports);

}  // namespace pv
