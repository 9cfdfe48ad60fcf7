/*
 * The exit benchmark's reference: the same guest (native/guests/exitloop.S,
 * an `out` to port 0x10 in a loop) on the same transport (port I/O through
 * the TSS bitmap, registers synced through kvm_run with KVM_CAP_SYNC_REGS),
 * driven by a C loop that only resumes. `npm run bench -- exit` compares the
 * TypeScript engine against it.
 *
 * Usage: exit-ref GUEST_DIR EXITS    Prints: {"exits":N,"ns_per_exit":X}
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <linux/kvm.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#define MEM (2u << 20)
/* Same layout as native/guests/layout.h and src/engine/probe-guest.ts. */
enum { PML4 = 0x1000, PDPT = 0x2000, PD = 0x3000, PT = 0x4000, GDT = 0x5000, IDT = 0x6000,
       STUBS = 0x7000, TSS = 0x8000, CODE = 0x10000, USER_STACK = 0x20000, KSTACK = 0x30000 };

static void fail(const char *what) { fprintf(stderr, "exit-ref: %s: %s\n", what, strerror(errno)); exit(1); }

static void load(uint8_t *mem, const char *dir, const char *name, uint64_t at) {
  char path[4096];
  snprintf(path, sizeof path, "%s/%s.bin", dir, name);
  FILE *f = fopen(path, "rb");
  if (!f) fail(path);
  size_t n = fread(mem + at, 1, MEM - at, f);
  fclose(f);
  if (n == 0) fail("empty guest binary");
}

static void put64(uint8_t *m, uint64_t at, uint64_t v) { memcpy(m + at, &v, 8); }

static struct kvm_segment seg(uint16_t sel, int code) {
  struct kvm_segment s = { .base = 0, .limit = 0xffffffff, .selector = sel, .type = code ? 11 : 3, .present = 1,
                           .dpl = sel & 3, .db = !code, .s = 1, .l = code, .g = 1 };
  return s;
}

static uint64_t now_ns(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return (uint64_t)t.tv_sec * 1000000000ull + (uint64_t)t.tv_nsec;
}

int main(int argc, char **argv) {
  if (argc != 3) { fprintf(stderr, "usage: exit-ref GUEST_DIR EXITS\n"); return 2; }
  long exits = atol(argv[2]);
  int kvm = open("/dev/kvm", O_RDWR | O_CLOEXEC);
  if (kvm < 0) fail("/dev/kvm");
  int vm = ioctl(kvm, KVM_CREATE_VM, 0);
  if (vm < 0) fail("KVM_CREATE_VM");
  int mfd = memfd_create("exit-ref", MFD_CLOEXEC);
  if (mfd < 0 || ftruncate(mfd, MEM) < 0) fail("memfd");
  uint8_t *mem = mmap(NULL, MEM, PROT_READ | PROT_WRITE, MAP_SHARED, mfd, 0);
  if (mem == MAP_FAILED) fail("mmap");
  struct kvm_userspace_memory_region r = { .slot = 0, .guest_phys_addr = 0, .memory_size = MEM, .userspace_addr = (uint64_t)mem };
  if (ioctl(vm, KVM_SET_USER_MEMORY_REGION, &r) < 0) fail("KVM_SET_USER_MEMORY_REGION");

  /* Page tables: 0..2 MiB identity mapped with 4 KiB user pages, page 0 absent. */
  put64(mem, PML4, PDPT | 7);
  put64(mem, PDPT, PD | 7);
  put64(mem, PD, PT | 7);
  for (int i = 1; i < 512; i++) put64(mem, PT + 8 * i, (uint64_t)i * 0x1000 + 7);
  uint64_t gdt[] = { 0, 0x00af9a000000ffffull, 0x00cf92000000ffffull, 0x00cff2000000ffffull, 0x00affa000000ffffull };
  memcpy(mem + GDT, gdt, sizeof gdt);
  uint64_t lim = 0x68 + 8192;
  put64(mem, GDT + 40, (lim & 0xffff) | ((uint64_t)(TSS & 0xffffff) << 16) | (0x89ull << 40) | (((lim >> 16) & 0xf) << 48));
  put64(mem, GDT + 48, 0);
  put64(mem, TSS + 4, KSTACK);
  uint16_t iomap = 0x68;
  memcpy(mem + TSS + 0x66, &iomap, 2);
  memset(mem + TSS + 0x68, 0xff, 8192 + 1);
  mem[TSS + 0x68 + 2] = 0;
  mem[TSS + 0x68 + 3] = 0;
  for (int v = 0; v < 256; v++) {
    uint64_t h = STUBS + 16 * v;
    put64(mem, IDT + 16 * v, (h & 0xffff) | (0x08ull << 16) | (0x8eull << 40) | (((h >> 16) & 0xffff) << 48));
    put64(mem, IDT + 16 * v + 8, h >> 32);
  }
  load(mem, argv[1], "stubs", STUBS);
  load(mem, argv[1], "exitloop", CODE);

  int vcpu = ioctl(vm, KVM_CREATE_VCPU, 0);
  if (vcpu < 0) fail("KVM_CREATE_VCPU");
  int runsz = ioctl(kvm, KVM_GET_VCPU_MMAP_SIZE, 0);
  struct kvm_run *run = mmap(NULL, runsz, PROT_READ | PROT_WRITE, MAP_SHARED, vcpu, 0);
  if (run == MAP_FAILED) fail("mmap kvm_run");
  struct kvm_sregs s;
  if (ioctl(vcpu, KVM_GET_SREGS, &s) < 0) fail("KVM_GET_SREGS");
  s.cs = seg(0x23, 1);
  s.ds = s.es = s.fs = s.gs = s.ss = seg(0x1b, 0);
  s.tr = (struct kvm_segment){ .base = TSS, .limit = lim, .selector = 0x28, .type = 11, .present = 1 };
  s.gdt.base = GDT; s.gdt.limit = 7 * 8 - 1;
  s.idt.base = IDT; s.idt.limit = 256 * 16 - 1;
  s.cr0 = 0x80010033; s.cr3 = PML4; s.cr4 = 0x620; s.efer = 0x501;
  if (ioctl(vcpu, KVM_SET_SREGS, &s) < 0) fail("KVM_SET_SREGS");
  struct kvm_regs g = { .rip = CODE, .rsp = USER_STACK, .rflags = 2 };
  if (ioctl(vcpu, KVM_SET_REGS, &g) < 0) fail("KVM_SET_REGS");
  run->kvm_valid_regs = KVM_SYNC_X86_REGS;

  long warm = exits / 10 + 1;
  uint64_t t0 = 0;
  for (long i = 0; i < warm + exits; i++) {
    if (i == warm) t0 = now_ns();
    if (ioctl(vcpu, KVM_RUN, 0) < 0) fail("KVM_RUN");
    if (run->exit_reason != KVM_EXIT_IO || run->io.port != 0x10) {
      fprintf(stderr, "exit-ref: unexpected exit %u\n", run->exit_reason);
      return 1;
    }
  }
  double per = (double)(now_ns() - t0) / (double)exits;
  printf("{\"exits\":%ld,\"ns_per_exit\":%.1f}\n", exits, per);
  return 0;
}
