// Kicking a running vCPU out of KVM_RUN: a real-time signal whose handler
// sets kvm_run.immediate_exit (a signal alone is lost when it lands while the
// thread is outside KVM_RUN; immediate_exit alone is only read at entry).
// Deadlines are per-vCPU POSIX timers aimed at the thread that runs the vCPU
// (SIGEV_THREAD_ID): the CPU thread, which runs other vCPUs too, so a signal
// may interrupt another vCPU's run (vcpu-thread.cc enters again).
// Node uses SIGUSR1 for its inspector, hence SIGRTMIN+3.
#include "common.h"

#include <linux/kvm.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>
#include <atomic>
#include <mutex>

namespace pv {
namespace {

constexpr int kSlots = kKickSlots;

struct Slot {
  std::atomic<struct kvm_run *> run{nullptr};
  std::atomic<uint32_t> gen{0};
  // Handlers between loading `run` and writing through it: kickFree waits
  // for zero before returning, so the kvm_run area is never unmapped under
  // a handler that already holds its address.
  std::atomic<int32_t> inHandler{0};
  pthread_t thread{};
  timer_t timer{};
  bool used = false;
};

Slot g_slots[kSlots];
std::mutex g_lock;
bool g_installed = false;

int KickSignal() { return SIGRTMIN + 3; }

// handle = slot index | generation << 12; a stale handle (slot reused) is ignored.
void OnKick(int, siginfo_t *si, void *) {
  uint32_t h = (uint32_t)si->si_value.sival_int;
  Slot &s = g_slots[h % kSlots];
  s.inHandler.fetch_add(1);
  if (s.gen.load() == (h / kSlots)) {
    struct kvm_run *r = s.run.load();
    if (r) r->immediate_exit = 1;
  }
  s.inHandler.fetch_sub(1);
}

Slot *Lookup(Napi::Env env, const Napi::CallbackInfo &info, uint32_t *handle) {
  int64_t h;
  if (!ArgInt(info, 0, UINT32_MAX, &h)) return nullptr;
  Slot &s = g_slots[h % kSlots];
  if (!s.used || s.gen.load() != (uint32_t)(h / kSlots)) { ThrowArg(env, "not a live kick handle"); return nullptr; }
  *handle = (uint32_t)h;
  return &s;
}

}  // namespace

// Registers a kvm_run area for kicks aimed at thread `tid`/`thread` and
// creates its deadline timer. Returns the handle, or -errno.
int64_t KickRegister(struct kvm_run *run, pid_t tid, pthread_t thread) {
  std::lock_guard<std::mutex> guard(g_lock);
  if (!g_installed) {
    struct sigaction sa = {};
    sa.sa_sigaction = OnKick;
    sa.sa_flags = SA_SIGINFO | SA_RESTART;
    sigemptyset(&sa.sa_mask);
    if (sigaction(KickSignal(), &sa, nullptr) < 0) return -errno;
    g_installed = true;
  }
  int idx = -1;
  for (int i = 0; i < kSlots; i++) if (!g_slots[i].used) { idx = i; break; }
  if (idx < 0) return -ENOSPC;
  Slot &s = g_slots[idx];
  uint32_t gen = (s.gen.load() + 1) % (UINT32_MAX / kSlots);
  uint32_t handle = (uint32_t)idx + gen * kSlots;
  struct sigevent se = {};
  se.sigev_notify = SIGEV_THREAD_ID;
  se.sigev_signo = KickSignal();
  se.sigev_value.sival_int = (int)handle;
  se._sigev_un._tid = tid;
  if (timer_create(CLOCK_MONOTONIC, &se, &s.timer) < 0) return -errno;
  s.thread = thread;
  s.used = true;
  s.gen.store(gen, std::memory_order_release);
  s.run.store(run, std::memory_order_release);
  return handle;
}

int KickSignalNumber() { return KickSignal(); }

namespace {

// kickInit(runBuffer): registers a vCPU's kvm_run area for kicks to the
// calling thread (the one that will call run) and creates its deadline timer.
Napi::Value KickInit(const Napi::CallbackInfo &info) {
  Napi::Env env = info.Env();
  if (info.Length() < 1 || !info[0].IsArrayBuffer()) return ThrowArg(env, "argument must be the kvm_run ArrayBuffer");
  Napi::ArrayBuffer ab = info[0].As<Napi::ArrayBuffer>();
  if (ab.ByteLength() < sizeof(struct kvm_run)) return ThrowArg(env, "buffer is smaller than struct kvm_run");
  int64_t h = KickRegister(static_cast<struct kvm_run *>(ab.Data()), (pid_t)syscall(SYS_gettid), pthread_self());
  if (h < 0) return ThrowErrno(env, "kickInit", (int)-h);
  return Napi::Number::New(env, (double)h);
}

// kickFree(handle): deletes the timer; later kicks with this handle do nothing.
Napi::Value KickFree(const Napi::CallbackInfo &info) {
  Napi::Env env = info.Env();
  std::lock_guard<std::mutex> guard(g_lock);
  uint32_t h;
  Slot *s = Lookup(env, info, &h);
  if (!s) return env.Undefined();
  timer_delete(s->timer);
  s->run.store(nullptr);
  s->gen.store((s->gen.load() + 1) % (UINT32_MAX / kSlots));
  // A handler that loaded the old area before the store above finishes now.
  while (s->inHandler.load() != 0) sched_yield();
  s->used = false;
  return env.Undefined();
}

// setDeadline(handle, absNs): kick at CLOCK_MONOTONIC time absNs (a bigint);
// 0 cancels.
Napi::Value SetDeadline(const Napi::CallbackInfo &info) {
  Napi::Env env = info.Env();
  uint32_t h;
  Slot *s = Lookup(env, info, &h);
  uint64_t ns;
  if (!s || !ArgU64(info, 1, &ns)) return env.Undefined();
  struct itimerspec its = {};
  its.it_value.tv_sec = (time_t)(ns / 1000000000ULL);
  its.it_value.tv_nsec = (long)(ns % 1000000000ULL);
  if (timer_settime(s->timer, TIMER_ABSTIME, &its, nullptr) < 0) return ThrowErrno(env, "timer_settime", errno);
  return env.Undefined();
}

// kick(handle): from any thread; the vCPU leaves KVM_RUN now or, if it is not
// in it, at its next entry.
Napi::Value Kick(const Napi::CallbackInfo &info) {
  Napi::Env env = info.Env();
  uint32_t h;
  Slot *s = Lookup(env, info, &h);
  if (!s) return env.Undefined();
  union sigval v;
  v.sival_int = (int)h;
  int err = pthread_sigqueue(s->thread, KickSignal(), v);
  if (err != 0) return ThrowErrno(env, "pthread_sigqueue", err);
  return env.Undefined();
}

}  // namespace

void InitKick(Napi::Env env, Napi::Object exports) {
  exports.Set("kickInit", Napi::Function::New(env, KickInit, "kickInit"));
  exports.Set("kickFree", Napi::Function::New(env, KickFree, "kickFree"));
  exports.Set("setDeadline", Napi::Function::New(env, SetDeadline, "setDeadline"));
  exports.Set("kick", Napi::Function::New(env, Kick, "kick"));
  exports.Set("kickSignal", Napi::Number::New(env, KickSignal()));
}

}  // namespace pv
