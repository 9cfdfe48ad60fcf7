// The CPU thread: one thread per core thread (the JavaScript thread that
// runs vCPUs) issues KVM_RUN for all of that core's vCPUs, one at a time;
// the TypeScript core hands it runs and takes its exits through small
// control blocks, spinning briefly before sleeping.
//
// Why a thread at all: on this host every KVM exit is a world switch that
// leaves the calling thread's caches and predictors cold; the JavaScript
// code between two KVM_RUNs then costs about 2 us (measured with rdtsc,
// 5000 cycles). With the switch on another thread, the core's code stays
// hot. The thread does nothing but KVM_RUN: all exit handling stays in
// TypeScript.
//
// Why one thread for all vCPUs, not one per vCPU: the core runs one vCPU at
// a time, and a handoff between threads is what cost. With a thread per
// vCPU, the next vCPU's thread was asleep (only one may spin on this
// two-CPU host), and waking it made a run of one domain right after
// another's cost ~33 us instead of ~20, and an event round trip between two
// domains ~52 us per side. A vCPU may be run from any thread, but KVM pays a
// synchronize_rcu when a vCPU's thread changes, so each vCPU stays on the
// CPU thread of the core that created it.
//
// The CPU thread's control block (int32 words, read by TypeScript with
// Atomics; one run at a time, so one block serves all its vCPUs, and it
// lives as long as the process: nothing the thread touches after a run can
// have been freed by the core meanwhile):
//   [0] request: the slot + 1 of the vCPU to run next, 0 for none (futex)
//   [1] the CPU thread is sleeping
//   [2] state: 2 once the requested run exited (result valid), else 0 (futex)
//   [3] result: 0, or -errno of KVM_RUN (-EINTR when kicked)
//   [4] the core is sleeping (on state)
//
// A vCPU's slot is its kick registration's index (kick.cc), unique among
// live vCPUs.
//
// Kicks and deadlines are signals to the CPU thread whose handler sets the
// target vCPU's kvm_run.immediate_exit (kick.cc). A signal meant for a vCPU
// that is not the one running interrupts the running one's KVM_RUN too; the
// thread sees that vCPU's immediate_exit clear and enters again.
#include "common.h"

#include <linux/futex.h>
#include <linux/kvm.h>
#include <signal.h>
#include <sys/ioctl.h>
#include <sys/syscall.h>
#include <unistd.h>
#include <atomic>
#include <cerrno>
#include <cstdlib>
#include <mutex>
#include <vector>

namespace pv {
namespace {

constexpr int32_t kExited = 2;  // the state word's value once a run has exited (the core sets it back to 0)
constexpr int kThreadSpins = 20000;
constexpr int kSlots = kKickSlots;

struct WorkerControl {
  std::atomic<int32_t> request;
  std::atomic<int32_t> sleeping;
  std::atomic<int32_t> state;
  std::atomic<int32_t> result;
  std::atomic<int32_t> coreSleeping;
};

struct VcpuThread;

// The CPU thread of one core thread. It lives as long as the process.
struct Worker {
  pthread_t thread;
  pid_t tid;
  pid_t owner;
  WorkerControl *ctl;  // handed to TypeScript
  std::atomic<int32_t> started;
  // The one ArrayBuffer over ctl (V8 refuses a second external buffer over
  // the same memory); it belongs to the owner thread's environment.
  Napi::Reference<Napi::ArrayBuffer> ctlBuffer;
  std::atomic<VcpuThread *> slots[kSlots];
};

// One vCPU's place on its CPU thread; its handle is what TypeScript holds.
struct VcpuThread {
  int fd;
  struct kvm_run *run;
  Worker *worker;
  int slot;
  bool stopped;
};

std::mutex g_lock;
std::vector<Worker *> g_workers;

long Futex(std::atomic<int32_t> *addr, int op, int32_t val) {
  return syscall(SYS_futex, reinterpret_cast<int32_t *>(addr), op, val, nullptr, nullptr, 0);
}

// One KVM_RUN for t; a signal meant for another vCPU of this thread (its
// immediate_exit set, not t's) does not end it.
int RunOnce(VcpuThread *t) {
  for (;;) {
    int r = ioctl(t->fd, KVM_RUN, 0);
    if (r == 0) return 0;
    int e = errno;
    if (e == EINTR && t->run->immediate_exit == 0) continue;
    return -e;
  }
}

void *WorkerMain(void *arg) {
  Worker *w = static_cast<Worker *>(arg);
  // Only kicks reach this thread: a process-directed signal delivered here
  // would cut KVM_RUN short for nothing.
  sigset_t set;
  sigfillset(&set);
  sigdelset(&set, KickSignalNumber());
  pthread_sigmask(SIG_SETMASK, &set, nullptr);
  w->tid = (pid_t)syscall(SYS_gettid);
  w->started.store(1);
  Futex(&w->started, FUTEX_WAKE_PRIVATE, 1);
  WorkerControl *wc = w->ctl;
  // Until a first run the thread sleeps instead of spinning: the core is
  // still setting up, and spinning then only takes a CPU from it.
  int spinLimit = 0;
  for (;;) {
    int32_t req;
    for (int spins = 0;; spins++) {
      req = wc->request.load();
      if (req != 0) break;
      if (spins < spinLimit) {
        __builtin_ia32_pause();
        continue;
      }
      wc->sleeping.store(1);
      if (wc->request.load() == 0) Futex(&wc->request, FUTEX_WAIT_PRIVATE, 0);
      wc->sleeping.store(0);
      spins = 0;
    }
    wc->request.store(0);
    spinLimit = kThreadSpins;
    VcpuThread *t = req > 0 && req <= kSlots ? w->slots[req - 1].load() : nullptr;
    // A request names a live vCPU: the core takes one off only between runs.
    wc->result.store(t ? RunOnce(t) : -EBADF);
    wc->state.store(kExited);
    if (wc->coreSleeping.load()) Futex(&wc->state, FUTEX_WAKE_PRIVATE, 1);
  }
  return nullptr;
}

// When the owner's environment ends (a worker_thread exits): its CPU thread
// is free for the next core thread (its vCPUs are gone with the environment).
void OnOwnerGone(void *arg) {
  Worker *w = static_cast<Worker *>(arg);
  std::lock_guard<std::mutex> guard(g_lock);
  w->ctlBuffer.Reset();
  w->owner = 0;
}

// The calling thread's CPU thread, started on first use; nullptr and errno on failure.
Worker *WorkerForCaller(Napi::Env env, int *err) {
  pid_t me = (pid_t)syscall(SYS_gettid);
  std::lock_guard<std::mutex> guard(g_lock);
  for (Worker *w : g_workers) if (w->owner == me) return w;
  for (Worker *w : g_workers) {
    if (w->owner == 0) {
      w->owner = me;
      napi_add_env_cleanup_hook(env, OnOwnerGone, w);
      return w;
    }
  }
  Worker *w = new Worker();
  w->owner = me;
  w->ctl = static_cast<WorkerControl *>(aligned_alloc(64, 64));
  new (w->ctl) WorkerControl{};
  for (auto &s : w->slots) s.store(nullptr);
  *err = pthread_create(&w->thread, nullptr, WorkerMain, w);
  if (*err != 0) {
    free(w->ctl);
    delete w;
    return nullptr;
  }
  pthread_detach(w->thread);
  while (w->started.load() == 0) Futex(&w->started, FUTEX_WAIT_PRIVATE, 0);
  g_workers.push_back(w);
  napi_add_env_cleanup_hook(env, OnOwnerGone, w);
  return w;
}

// Takes the vCPU off its CPU thread (it is idle: the core waited for its exit).
void StopThread(VcpuThread *t) {
  std::lock_guard<std::mutex> guard(g_lock);
  t->worker->slots[t->slot].store(nullptr);
  t->stopped = true;
}

// When the handle is garbage: take the vCPU off if TypeScript did not.
void Finalize(Napi::Env, VcpuThread *t) {
  if (!t->stopped) StopThread(t);
  delete t;
}

VcpuThread *Lookup(const Napi::CallbackInfo &info, size_t i) {
  if (info.Length() <= i || !info[i].IsExternal()) {
    ThrowArg(info.Env(), "argument must be a vCPU's CPU-thread handle");
    return nullptr;
  }
  VcpuThread *t = info[i].As<Napi::External<VcpuThread>>().Data();
  if (t->stopped) {
    ThrowArg(info.Env(), "the vCPU was taken off its CPU thread");
    return nullptr;
  }
  return t;
}

// vcpuThreadStart(vcpuFd, runBuffer): puts the vCPU on the calling thread's
// CPU thread; returns { handle, control: ArrayBuffer (the CPU thread's
// block, the same for all its vCPUs), kick: kick handle, slot: what to
// write to the block's request word }.
Napi::Value Start(const Napi::CallbackInfo &info) {
  Napi::Env env = info.Env();
  int64_t fd;
  if (!ArgInt(info, 0, INT32_MAX, &fd)) return env.Undefined();
  if (info.Length() < 2 || !info[1].IsArrayBuffer()) return ThrowArg(env, "argument 1 must be the kvm_run ArrayBuffer");
  Napi::ArrayBuffer runAb = info[1].As<Napi::ArrayBuffer>();
  if (runAb.ByteLength() < sizeof(struct kvm_run)) return ThrowArg(env, "buffer is smaller than struct kvm_run");
  int err = 0;
  Worker *w = WorkerForCaller(env, &err);
  if (w == nullptr) return ThrowErrno(env, "pthread_create", err);
  VcpuThread *t = new VcpuThread();
  t->fd = (int)fd;
  t->run = static_cast<struct kvm_run *>(runAb.Data());
  t->worker = w;
  // Kicks and deadline timers go to the CPU thread's id.
  int64_t kick = KickRegister(t->run, w->tid, w->thread);
  if (kick < 0) {
    delete t;
    return ThrowErrno(env, "kick registration", (int)-kick);
  }
  t->slot = (int)(kick % kSlots);
  w->slots[t->slot].store(t);
  Napi::Object out = Napi::Object::New(env);
  out.Set("handle", Napi::External<VcpuThread>::New(env, t, Finalize));
  // The CPU thread's block lives as long as the process.
  if (w->ctlBuffer.IsEmpty()) {
    w->ctlBuffer = Napi::Persistent(Napi::ArrayBuffer::New(env, w->ctl, sizeof(WorkerControl), [](Napi::Env, void *) {}));
    w->ctlBuffer.SuppressDestruct();
  }
  out.Set("control", w->ctlBuffer.Value());
  out.Set("kick", Napi::Number::New(env, (double)kick));
  out.Set("slot", Napi::Number::New(env, (double)(t->slot + 1)));
  return out;
}

// vcpuThreadWorkers(): CPU threads started (one per core thread that ran vCPUs).
Napi::Value Workers(const Napi::CallbackInfo &info) {
  std::lock_guard<std::mutex> guard(g_lock);
  return Napi::Number::New(info.Env(), (double)g_workers.size());
}

// vcpuThreadWake(handle): wakes the vCPU's CPU thread if it sleeps.
napi_value Wake(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1];
  void *data = nullptr;
  if (napi_get_cb_info(env, info, &argc, argv, nullptr, nullptr) != napi_ok || argc < 1 ||
      napi_get_value_external(env, argv[0], &data) != napi_ok) {
    ThrowArg(Napi::Env(env), "argument must be a vCPU's CPU-thread handle");
    return nullptr;
  }
  VcpuThread *t = static_cast<VcpuThread *>(data);
  if (!t->stopped) Futex(&t->worker->ctl->request, FUTEX_WAKE_PRIVATE, 1);
  return nullptr;
}

// vcpuThreadWait(handle): sleeps until the requested run has exited.
Napi::Value Wait(const Napi::CallbackInfo &info) {
  VcpuThread *t = Lookup(info, 0);
  if (!t) return info.Env().Undefined();
  WorkerControl *c = t->worker->ctl;
  c->coreSleeping.store(1);
  for (int32_t s; (s = c->state.load()) != kExited;) Futex(&c->state, FUTEX_WAIT_PRIVATE, s);
  c->coreSleeping.store(0);
  return info.Env().Undefined();
}

// vcpuThreadStop(handle): takes the (idle) vCPU off its CPU thread.
Napi::Value Stop(const Napi::CallbackInfo &info) {
  VcpuThread *t = Lookup(info, 0);
  if (!t) return info.Env().Undefined();
  StopThread(t);
  // The record is freed with the handle (Finalize).
  return info.Env().Undefined();
}

}  // namespace

void InitVcpuThread(Napi::Env env, Napi::Object exports) {
  exports.Set("vcpuThreadStart", Napi::Function::New(env, Start, "vcpuThreadStart"));
  napi_value fn;
  napi_create_function(env, "vcpuThreadWake", NAPI_AUTO_LENGTH, Wake, nullptr, &fn);
  exports.Set("vcpuThreadWake", Napi::Value(env, fn));
  exports.Set("vcpuThreadWait", Napi::Function::New(env, Wait, "vcpuThreadWait"));
  exports.Set("vcpuThreadStop", Napi::Function::New(env, Stop, "vcpuThreadStop"));
  exports.Set("vcpuThreadWorkers", Napi::Function::New(env, Workers, "vcpuThreadWorkers"));
}

}  // namespace pv
