/*
 * The boot benchmark's reference: what a minimal C VMM does to start a
 * guest -- memfd and mapping, KVM_CREATE_VM, one memory slot, the page
 * tables, GDT, IDT and TSS, KVM_CREATE_VCPU, registers -- timed up to the
 * guest's first exit (native/guests/exitloop.S: its first instruction is an
 * `out`), then torn down. `npm run bench -- boot` compares paravane's domain
 * creation to first hypercall against it.
 *
 * Usage: boot-ref GUEST_DIR MEMORY_MIB N    Prints: {"mib":M,"ns":[...]}
 */
#include "ref-vm.h"

int main(int argc, char **argv) {
  if (argc != 4) { fprintf(stderr, "usage: boot-ref GUEST_DIR MEMORY_MIB N\n"); return 2; }
  size_t mib = (size_t)atol(argv[2]);
  long n = atol(argv[3]);
  if (mib < 2 || n < 1) { fprintf(stderr, "boot-ref: MEMORY_MIB >= 2 and N >= 1\n"); return 2; }
  int kvm = open("/dev/kvm", O_RDWR | O_CLOEXEC);
  if (kvm < 0) fail("/dev/kvm");
  struct guest_bin stubs = read_guest(argv[1], "stubs"), code = read_guest(argv[1], "exitloop");
  printf("{\"mib\":%zu,\"ns\":[", mib);
  for (long i = 0; i < n; i++) {
    struct ref_vm v;
    uint64_t t0 = now_ns();
    ref_vm_create(&v, kvm, mib << 20, stubs, code);
    if (ioctl(v.vcpu, KVM_RUN, 0) < 0) fail("KVM_RUN");
    uint64_t t1 = now_ns();
    if (v.run->exit_reason != KVM_EXIT_IO || v.run->io.port != 0x10) {
      fprintf(stderr, "boot-ref: unexpected exit %u\n", v.run->exit_reason);
      return 1;
    }
    ref_vm_destroy(&v);
    printf("%s%llu", i ? "," : "", (unsigned long long)(t1 - t0));
  }
  printf("]}\n");
  return 0;
}
