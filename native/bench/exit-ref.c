/*
 * The exit benchmark's reference: the same guest (native/guests/exitloop.S,
 * an `out` to port 0x10 in a loop) on the same transport (port I/O through
 * the TSS bitmap, registers synced through kvm_run with KVM_CAP_SYNC_REGS),
 * driven by a C loop that only resumes. `npm run bench -- exit` and
 * `-- hypercall` compare paravane against it.
 *
 * Usage: exit-ref GUEST_DIR EXITS    Prints: {"exits":N,"ns_per_exit":X}
 */
#include "ref-vm.h"

int main(int argc, char **argv) {
  if (argc != 3) { fprintf(stderr, "usage: exit-ref GUEST_DIR EXITS\n"); return 2; }
  long exits = atol(argv[2]);
  int kvm = open("/dev/kvm", O_RDWR | O_CLOEXEC);
  if (kvm < 0) fail("/dev/kvm");
  struct ref_vm v;
  ref_vm_create(&v, kvm, TABLES_END, read_guest(argv[1], "stubs"), read_guest(argv[1], "exitloop"));

  long warm = exits / 10 + 1;
  uint64_t t0 = 0;
  for (long i = 0; i < warm + exits; i++) {
    if (i == warm) t0 = now_ns();
    if (ioctl(v.vcpu, KVM_RUN, 0) < 0) fail("KVM_RUN");
    if (v.run->exit_reason != KVM_EXIT_IO || v.run->io.port != 0x10) {
      fprintf(stderr, "exit-ref: unexpected exit %u\n", v.run->exit_reason);
      return 1;
    }
  }
  double per = (double)(now_ns() - t0) / (double)exits;
  printf("{\"exits\":%ld,\"ns_per_exit\":%.1f}\n", exits, per);
  ref_vm_destroy(&v);
  return 0;
}
