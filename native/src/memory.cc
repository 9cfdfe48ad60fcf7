// Machine memory: memfd-backed shared mappings handed to TypeScript as
// ArrayBuffers (zero copy both ways) and to KVM by host address.
// munmap() unmaps at once and detaches the ArrayBuffer, so a destroyed
// domain's memory is gone without waiting for the garbage collector.
#include "common.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <unistd.h>
#include <mutex>
#include <unordered_map>

namespace pv {
namespace {

struct Mapping {
  void *addr;
  size_t len;
  bool live;
};

std::mutex g_lock;
std::unordered_map<void *, Mapping *> g_mappings;

// Runs when the garbage collector frees the ArrayBuffer, which may be long
// after munmap(): by then the address may belong to a newer mapping, so the
// registry entry is removed only if it is still this one.
void Finalize(Napi::Env, void *, Mapping *m) {
  std::lock_guard<std::mutex> guard(g_lock);
  if (m->live) {
    munmap(m->addr, m->len);
    auto it = g_mappings.find(m->addr);
    if (it != g_mappings.end() && it->second == m) g_mappings.erase(it);
  }
  delete m;
}

// memfdCreate(name, size): an anonymous file of `size` bytes; returns its fd.
Napi::Value MemfdCreate(const Napi::CallbackInfo &info) {
  Napi::Env env = info.Env();
  if (info.Length() < 1 || !info[0].IsString()) return ThrowArg(env, "name must be a string");
  uint64_t size;
  if (!ArgU64(info, 1, &size)) return env.Undefined();
  std::string name = info[0].As<Napi::String>();
  int fd = memfd_create(name.c_str(), MFD_CLOEXEC);
  if (fd < 0) return ThrowErrno(env, "memfd_create", errno);
  if (ftruncate(fd, (off_t)size) < 0) {
    int err = errno;
    close(fd);
    return ThrowErrno(env, "ftruncate", err);
  }
  return Napi::Number::New(env, fd);
}

// punchHole(fd, offset, length): frees that range of a memfd; it reads as
// zeros afterwards, and the host gets the memory back until it is touched.
Napi::Value PunchHole(const Napi::CallbackInfo &info) {
  Napi::Env env = info.Env();
  int64_t fd;
  uint64_t offset, length;
  if (!ArgInt(info, 0, INT32_MAX, &fd) || !ArgU64(info, 1, &offset) || !ArgU64(info, 2, &length)) return env.Undefined();
  if (fallocate((int)fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, (off_t)offset, (off_t)length) < 0) {
    return ThrowErrno(env, "fallocate", errno);
  }
  return env.Undefined();
}

// mmap(fd, size, offset): a shared read/write mapping as an ArrayBuffer.
Napi::Value Mmap(const Napi::CallbackInfo &info) {
  Napi::Env env = info.Env();
  int64_t fd;
  uint64_t size, offset;
  if (!ArgInt(info, 0, INT32_MAX, &fd) || !ArgU64(info, 1, &size) || !ArgU64(info, 2, &offset)) return env.Undefined();
  if (size == 0) return ThrowArg(env, "cannot map 0 bytes");
  void *p = mmap(nullptr, size, PROT_READ | PROT_WRITE, MAP_SHARED, (int)fd, (off_t)offset);
  if (p == MAP_FAILED) return ThrowErrno(env, "mmap", errno);
  Mapping *m = new Mapping{p, size, true};
  {
    std::lock_guard<std::mutex> guard(g_lock);
    g_mappings[p] = m;
  }
  return Napi::ArrayBuffer::New(env, p, size, Finalize, m);
}

// munmap(buffer): unmaps a buffer made by mmap() and detaches it.
Napi::Value Munmap(const Napi::CallbackInfo &info) {
  Napi::Env env = info.Env();
  if (info.Length() < 1 || !info[0].IsArrayBuffer()) return ThrowArg(env, "argument must be an ArrayBuffer from mmap()");
  Napi::ArrayBuffer ab = info[0].As<Napi::ArrayBuffer>();
  void *p = ab.Data();
  {
    std::lock_guard<std::mutex> guard(g_lock);
    auto it = g_mappings.find(p);
    if (p == nullptr || it == g_mappings.end() || !it->second->live) return ThrowArg(env, "not a live mapping from mmap()");
    if (munmap(p, it->second->len) < 0) return ThrowErrno(env, "munmap", errno);
    it->second->live = false;
    g_mappings.erase(it);
  }
  ab.Detach();
  return env.Undefined();
}

// dontNeed(buffer, offset, length): madvise(MADV_DONTNEED) on that page-aligned
// range of a mapping from mmap(). The memfd keeps the contents (the mapping is
// shared); only the host page-table entries go, and with them, through the MMU
// notifier, every translation KVM cached to those pages in any VM.
Napi::Value DontNeed(const Napi::CallbackInfo &info) {
  Napi::Env env = info.Env();
  if (info.Length() < 1 || !info[0].IsArrayBuffer()) return ThrowArg(env, "argument must be an ArrayBuffer from mmap()");
  Napi::ArrayBuffer ab = info[0].As<Napi::ArrayBuffer>();
  uint64_t off, len;
  if (!ArgU64(info, 1, &off) || !ArgU64(info, 2, &len)) return env.Undefined();
  if ((off | len) & 4095) return ThrowArg(env, "offset and length must be page-aligned");
  if (off > ab.ByteLength() || len > ab.ByteLength() - off) return ThrowArg(env, "range is outside the buffer");
  if (len && madvise((char *)ab.Data() + off, len, MADV_DONTNEED) < 0) return ThrowErrno(env, "madvise", errno);
  return env.Undefined();
}

// address(buffer[, offset]): the host virtual address of a byte, as a bigint.
Napi::Value Address(const Napi::CallbackInfo &info) {
  Napi::Env env = info.Env();
  if (info.Length() < 1 || !info[0].IsArrayBuffer()) return ThrowArg(env, "argument must be an ArrayBuffer");
  Napi::ArrayBuffer ab = info[0].As<Napi::ArrayBuffer>();
  uint64_t off = 0;
  if (info.Length() > 1 && !ArgU64(info, 1, &off)) return env.Undefined();
  if (off > ab.ByteLength()) return ThrowArg(env, "offset is past the end of the buffer");
  return Napi::BigInt::New(env, (uint64_t)(uintptr_t)ab.Data() + off);
}

}  // namespace

void InitMemory(Napi::Env env, Napi::Object exports) {
  exports.Set("memfdCreate", Napi::Function::New(env, MemfdCreate, "memfdCreate"));
  exports.Set("punchHole", Napi::Function::New(env, PunchHole, "punchHole"));
  exports.Set("mmap", Napi::Function::New(env, Mmap, "mmap"));
  exports.Set("munmap", Napi::Function::New(env, Munmap, "munmap"));
  exports.Set("dontNeed", Napi::Function::New(env, DontNeed, "dontNeed"));
  exports.Set("address", Napi::Function::New(env, Address, "address"));
}

}  // namespace pv
