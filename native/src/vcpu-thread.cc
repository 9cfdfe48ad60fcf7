// vCPU threads: a dedicated thread per vCPU issues KVM_RUN, and the
// TypeScript core (on its own thread) hands it runs and takes its exits
// through a small control block, spinning briefly before sleeping.
//
// Why: on this host every KVM exit is a world switch that leaves the
// calling thread's caches and predictors cold; the JavaScript code between
// two KVM_RUNs then costs about 2 us (measured with rdtsc, 5000 cycles).
// With the switch on another thread, the core's code stays hot. The thread
// does nothing but KVM_RUN: all exit handling stays in TypeScript.
//
// Control block (int32 words, read by TypeScript with Atomics):
//   [0] state: 0 idle, 1 run requested, 2 exited (result valid), 3 quit
//   [1] result: 0, or -errno of KVM_RUN (-EINTR when kicked)
//   [2] thread sleeping (futex on state)   [3] core sleeping (futex on state)
//
// One more word is shared by all vCPU threads: the id of the vCPU the core
// last handed a run. A thread spins for its next run only while it is that
// vCPU. With several VMs taking turns, a thread that kept spinning after
// the core moved on took a CPU from the vCPU now running (or from the core)
// on this two-CPU host: a VM's exit right after another VM's run cost
// 530 us instead of 37 us (measured, `npm run bench -- time`).
#include "common.h"

#include <linux/futex.h>
#include <linux/kvm.h>
#include <signal.h>
#include <sys/ioctl.h>
#include <sys/syscall.h>
#include <unistd.h>
#include <atomic>
#include <cstdlib>
#include <mutex>
#include <vector>

namespace pv {
namespace {

enum : int32_t { kIdle = 0, kRun = 1, kExited = 2, kQuit = 3 };
constexpr int kThreadSpins = 20000;
// Threads kept parked for the next vCPU: starting a vCPU then costs no
// pthread_create and no wait for a new thread to be scheduled (on this
// two-CPU host that wait alone varied from 0.1 to 2 ms).
constexpr size_t kMaxParked = 4;

struct Control {
  std::atomic<int32_t> state;
  std::atomic<int32_t> result;
  std::atomic<int32_t> threadSleeping;
  std::atomic<int32_t> coreSleeping;
};

struct Worker;

// The id of the vCPU the core last asked to run (TypeScript writes it).
struct alignas(64) Current {
  std::atomic<int32_t> id;
};
Current g_current;
std::atomic<int32_t> g_nextId{1};

// One vCPU's assignment to a worker thread; its handle is what TypeScript holds.
struct VcpuThread {
  Control *ctl;  // the ArrayBuffer handed to TypeScript starts here
  int fd;
  struct kvm_run *run;
  Worker *worker;
  int32_t id;
  bool stopped;
};

// A thread that runs vCPUs, one assignment after another.
struct Worker {
  pthread_t thread;
  pid_t tid;
  std::atomic<VcpuThread *> job;
  std::atomic<int32_t> jobWord;  // futex: bumped when a job is assigned or the worker must exit
  std::atomic<int32_t> started;
  // Set when the worker has left its current vCPU (after kQuit). It lives in
  // the worker, which outlives every assignment, so the wake-up after the
  // store never touches a record the core may already have freed.
  std::atomic<int32_t> done;
  std::atomic<bool> exit;
};

std::mutex g_poolLock;
std::vector<Worker *> g_parked;

long Futex(std::atomic<int32_t> *addr, int op, int32_t val) {
  return syscall(SYS_futex, reinterpret_cast<int32_t *>(addr), op, val, nullptr, nullptr, 0);
}

// Runs one vCPU until TypeScript stops it.
void RunJob(VcpuThread *t) {
  Control *c = t->ctl;
  // Until its first run the thread sleeps instead of spinning: a new vCPU
  // is still being set up by the core, and spinning then only takes a CPU
  // from the set-up work (on a two-CPU host, half the machine).
  int spinLimit = 0;
  for (;;) {
    int32_t s;
    for (int spins = 0;; spins++) {
      s = c->state.load();
      if (s == kRun || s == kQuit) break;
      if (spins < spinLimit && g_current.id.load(std::memory_order_relaxed) == t->id) {
        __builtin_ia32_pause();
        continue;
      }
      c->threadSleeping.store(1);
      if (c->state.load() == s) Futex(&c->state, FUTEX_WAIT_PRIVATE, s);
      c->threadSleeping.store(0);
      spins = 0;
    }
    if (s == kQuit) return;
    spinLimit = kThreadSpins;
    int r = ioctl(t->fd, KVM_RUN, 0);
    c->result.store(r == 0 ? 0 : -errno);
    int32_t expected = kRun;
    if (!c->state.compare_exchange_strong(expected, kExited)) return;  // quit was asked during the run
    if (c->coreSleeping.load()) Futex(&c->state, FUTEX_WAKE_PRIVATE, 1);
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
  for (;;) {
    int32_t word = w->jobWord.load();
    VcpuThread *t = w->job.exchange(nullptr);
    if (t == nullptr) {
      if (w->exit) return nullptr;
      Futex(&w->jobWord, FUTEX_WAIT_PRIVATE, word);
      continue;
    }
    RunJob(t);
    w->done.store(1);
    Futex(&w->done, FUTEX_WAKE_PRIVATE, 1);
  }
}

// A parked worker, or a new one; nullptr and errno on failure.
Worker *TakeWorker(int *err) {
  {
    std::lock_guard<std::mutex> guard(g_poolLock);
    if (!g_parked.empty()) {
      Worker *w = g_parked.back();
      g_parked.pop_back();
      return w;
    }
  }
  Worker *w = new Worker();
  *err = pthread_create(&w->thread, nullptr, WorkerMain, w);
  if (*err != 0) {
    delete w;
    return nullptr;
  }
  while (w->started.load() == 0) Futex(&w->started, FUTEX_WAIT_PRIVATE, 0);
  return w;
}

// Parks an idle worker, or ends it if enough are parked.
void ReleaseWorker(Worker *w) {
  {
    std::lock_guard<std::mutex> guard(g_poolLock);
    if (g_parked.size() < kMaxParked) {
      g_parked.push_back(w);
      return;
    }
  }
  w->exit = true;
  w->jobWord.fetch_add(1);
  Futex(&w->jobWord, FUTEX_WAKE_PRIVATE, 1);
  pthread_join(w->thread, nullptr);
  delete w;
}

// Stops the vCPU's run loop and parks its worker, or ends it if enough are parked.
void StopThread(VcpuThread *t) {
  Worker *w = t->worker;
  t->ctl->state.store(kQuit);
  Futex(&t->ctl->state, FUTEX_WAKE_PRIVATE, 1);
  while (w->done.load() == 0) Futex(&w->done, FUTEX_WAIT_PRIVATE, 0);
  t->stopped = true;
  ReleaseWorker(w);
}

// When the handle is garbage: stop the vCPU if TypeScript did not, free all.
void Finalize(Napi::Env, VcpuThread *t) {
  if (!t->stopped) StopThread(t);
  free(t->ctl);
  delete t;
}

VcpuThread *Lookup(const Napi::CallbackInfo &info, size_t i) {
  if (info.Length() <= i || !info[i].IsExternal()) {
    ThrowArg(info.Env(), "argument must be a vCPU thread handle");
    return nullptr;
  }
  VcpuThread *t = info[i].As<Napi::External<VcpuThread>>().Data();
  if (t->stopped) {
    ThrowArg(info.Env(), "the vCPU thread was stopped");
    return nullptr;
  }
  return t;
}

// vcpuThreadStart(vcpuFd, runBuffer): hands the vCPU to a worker thread;
// returns { handle, control: ArrayBuffer (16 bytes), kick: kick handle,
// id: the vCPU's id, to store in vcpuThreadCurrent before each run }.
Napi::Value Start(const Napi::CallbackInfo &info) {
  Napi::Env env = info.Env();
  int64_t fd;
  if (!ArgInt(info, 0, INT32_MAX, &fd)) return env.Undefined();
  if (info.Length() < 2 || !info[1].IsArrayBuffer()) return ThrowArg(env, "argument 1 must be the kvm_run ArrayBuffer");
  Napi::ArrayBuffer runAb = info[1].As<Napi::ArrayBuffer>();
  if (runAb.ByteLength() < sizeof(struct kvm_run)) return ThrowArg(env, "buffer is smaller than struct kvm_run");
  int err = 0;
  Worker *w = TakeWorker(&err);
  if (w == nullptr) return ThrowErrno(env, "pthread_create", err);
  VcpuThread *t = new VcpuThread();
  t->ctl = static_cast<Control *>(aligned_alloc(64, 64));
  new (t->ctl) Control{};
  t->fd = (int)fd;
  t->run = static_cast<struct kvm_run *>(runAb.Data());
  t->worker = w;
  t->id = g_nextId.fetch_add(1);
  // Kicks and deadline timers go to the worker's thread id.
  int64_t kick = KickRegister(t->run, w->tid, w->thread);
  if (kick < 0) {
    free(t->ctl);
    delete t;
    ReleaseWorker(w);
    return ThrowErrno(env, "kick registration", (int)-kick);
  }
  w->done.store(0);
  w->job.store(t);
  w->jobWord.fetch_add(1);
  Futex(&w->jobWord, FUTEX_WAKE_PRIVATE, 1);
  Napi::Object out = Napi::Object::New(env);
  out.Set("handle", Napi::External<VcpuThread>::New(env, t, Finalize));
  // The control block lives until the handle is collected; TypeScript drops its view at stop.
  out.Set("control", Napi::ArrayBuffer::New(env, t->ctl, sizeof(Control), [](Napi::Env, void *) {}));
  out.Set("kick", Napi::Number::New(env, (double)kick));
  out.Set("id", Napi::Number::New(env, (double)t->id));
  return out;
}

// vcpuThreadPoolSize(): worker threads parked for the next vCPU.
Napi::Value PoolSize(const Napi::CallbackInfo &info) {
  std::lock_guard<std::mutex> guard(g_poolLock);
  return Napi::Number::New(info.Env(), (double)g_parked.size());
}

// vcpuThreadWake(handle): wakes the thread if it sleeps (after a run request).
napi_value Wake(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1];
  void *data = nullptr;
  if (napi_get_cb_info(env, info, &argc, argv, nullptr, nullptr) != napi_ok || argc < 1 ||
      napi_get_value_external(env, argv[0], &data) != napi_ok) {
    ThrowArg(Napi::Env(env), "argument must be a vCPU thread handle");
    return nullptr;
  }
  VcpuThread *t = static_cast<VcpuThread *>(data);
  if (!t->stopped) Futex(&t->ctl->state, FUTEX_WAKE_PRIVATE, 1);
  return nullptr;
}

// vcpuThreadWait(handle): sleeps until the requested run has exited.
Napi::Value Wait(const Napi::CallbackInfo &info) {
  VcpuThread *t = Lookup(info, 0);
  if (!t) return info.Env().Undefined();
  Control *c = t->ctl;
  c->coreSleeping.store(1);
  for (int32_t s; (s = c->state.load()) != kExited;) Futex(&c->state, FUTEX_WAIT_PRIVATE, s);
  c->coreSleeping.store(0);
  return info.Env().Undefined();
}

// vcpuThreadStop(handle): takes the vCPU off its thread (it must be idle).
Napi::Value Stop(const Napi::CallbackInfo &info) {
  VcpuThread *t = Lookup(info, 0);
  if (!t) return info.Env().Undefined();
  StopThread(t);
  // The record and the control block are freed with the handle (Finalize):
  // TypeScript may still hold a view of the control block until then.
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
  // Created once: V8 refuses a second external buffer over the same memory.
  exports.Set("vcpuThreadCurrent", Napi::ArrayBuffer::New(env, &g_current, sizeof(int32_t), [](Napi::Env, void *) {}));
  exports.Set("vcpuThreadPoolSize", Napi::Function::New(env, PoolSize, "vcpuThreadPoolSize"));
}

}  // namespace pv
