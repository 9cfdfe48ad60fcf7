/*
 * The C reference VM shared by the benchmark programs: the same machine the
 * TypeScript probe guests run on (src/engine/probe-guest.ts and
 * native/guests/layout.h): identity-mapped page tables for 0-2 MiB with
 * 4 KiB user pages, a flat GDT, a TSS whose I/O bitmap opens ports
 * 0x10-0x1f, an IDT of ring-0 stubs, and one vCPU at CPL 3 whose registers
 * are synced through kvm_run (KVM_CAP_SYNC_REGS).
 */
#ifndef PARAVANE_REF_VM_H
#define PARAVANE_REF_VM_H
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

/* Same layout as native/guests/layout.h and src/engine/probe-guest.ts. */
enum { PML4 = 0x1000, PDPT = 0x2000, PD = 0x3000, PT = 0x4000, GDT = 0x5000, IDT = 0x6000,
       STUBS = 0x7000, TSS = 0x8000, CODE = 0x10000, USER_STACK = 0x20000, KSTACK = 0x30000 };
#define TABLES_END (2u << 20)

static void fail(const char *what) { fprintf(stderr, "%s: %s: %s\n", program_invocation_short_name, what, strerror(errno)); exit(1); }

/* A guest binary (native/build/guests/NAME.bin) as loaded into guest memory. */
struct guest_bin { uint8_t *bytes; size_t len; };

static struct guest_bin read_guest(const char *dir, const char *name) {
  char path[4096];
  snprintf(path, sizeof path, "%s/%s.bin", dir, name);
  FILE *f = fopen(path, "rb");
  if (!f) fail(path);
  static uint8_t buf[2][65536];
  static int used;
  struct guest_bin g = { buf[used++ & 1], 0 };
  g.len = fread(g.bytes, 1, sizeof buf[0], f);
  fclose(f);
  if (g.len == 0) fail("empty guest binary");
  return g;
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

struct ref_vm { int vm, vcpu, mfd, runsz; uint8_t *mem; size_t size; struct kvm_run *run; };

/* Creates memory (size >= 2 MiB), the VM, its tables and one vCPU ready to run `code` at CPL 3. */
static void ref_vm_create(struct ref_vm *v, int kvm, size_t size, struct guest_bin stubs, struct guest_bin code) {
  v->size = size;
  v->vm = ioctl(kvm, KVM_CREATE_VM, 0);
  if (v->vm < 0) fail("KVM_CREATE_VM");
  v->mfd = memfd_create("ref-vm", MFD_CLOEXEC);
  if (v->mfd < 0 || ftruncate(v->mfd, (off_t)size) < 0) fail("memfd");
  uint8_t *mem = v->mem = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED, v->mfd, 0);
  if (mem == MAP_FAILED) fail("mmap");
  struct kvm_userspace_memory_region r = { .slot = 0, .guest_phys_addr = 0, .memory_size = size, .userspace_addr = (uint64_t)mem };
  if (ioctl(v->vm, KVM_SET_USER_MEMORY_REGION, &r) < 0) fail("KVM_SET_USER_MEMORY_REGION");

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
  for (int vec = 0; vec < 256; vec++) {
    uint64_t h = STUBS + 16 * vec;
    put64(mem, IDT + 16 * vec, (h & 0xffff) | (0x08ull << 16) | (0x8eull << 40) | (((h >> 16) & 0xffff) << 48));
    put64(mem, IDT + 16 * vec + 8, h >> 32);
  }
  memcpy(mem + STUBS, stubs.bytes, stubs.len);
  memcpy(mem + CODE, code.bytes, code.len);

  v->vcpu = ioctl(v->vm, KVM_CREATE_VCPU, 0);
  if (v->vcpu < 0) fail("KVM_CREATE_VCPU");
  v->runsz = ioctl(kvm, KVM_GET_VCPU_MMAP_SIZE, 0);
  v->run = mmap(NULL, (size_t)v->runsz, PROT_READ | PROT_WRITE, MAP_SHARED, v->vcpu, 0);
  if (v->run == MAP_FAILED) fail("mmap kvm_run");
  struct kvm_sregs s;
  if (ioctl(v->vcpu, KVM_GET_SREGS, &s) < 0) fail("KVM_GET_SREGS");
  s.cs = seg(0x23, 1);
  s.ds = s.es = s.fs = s.gs = s.ss = seg(0x1b, 0);
  s.tr = (struct kvm_segment){ .base = TSS, .limit = lim, .selector = 0x28, .type = 11, .present = 1 };
  s.gdt.base = GDT; s.gdt.limit = 7 * 8 - 1;
  s.idt.base = IDT; s.idt.limit = 256 * 16 - 1;
  s.cr0 = 0x80010033; s.cr3 = PML4; s.cr4 = 0x620; s.efer = 0x501;
  if (ioctl(v->vcpu, KVM_SET_SREGS, &s) < 0) fail("KVM_SET_SREGS");
  struct kvm_regs g = { .rip = CODE, .rsp = USER_STACK, .rflags = 2 };
  if (ioctl(v->vcpu, KVM_SET_REGS, &g) < 0) fail("KVM_SET_REGS");
  v->run->kvm_valid_regs = KVM_SYNC_X86_REGS;
}

static void ref_vm_destroy(struct ref_vm *v) {
  munmap(v->run, (size_t)v->runsz);
  munmap(v->mem, v->size);
  close(v->vcpu);
  close(v->vm);
  close(v->mfd);
}

#endif
