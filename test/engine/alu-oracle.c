/*
 * The host CPU as an oracle for test/engine/soft-alu.test.ts: it runs one
 * integer instruction natively per input line and prints the registers
 * and RFLAGS it leaves, for comparison with the software CPU.
 *
 * Input, one case a line (numbers in hex):
 *   <op> <size> <rax> <rbx> <rcx> <rdx> <rflags in>
 * Output, one line per case:
 *   <rax> <rbx> <rcx> <rdx> <rflags out>
 *
 * Register roles (the test encodes the same instructions by hand):
 *   two-operand ALU, xadd, bt*, imul2, bsf & co.:  dst rax, src rbx
 *   shifts and rotates:                             rax by cl
 *   inc, dec, neg, not:                             rax
 *   mul, imul, div, idiv (one operand):             rdx:rax (ax for bytes) by rbx
 *   cmpxchg:                                        r/m rbx, r rcx, accumulator rax
 *   shld, shrd:                                     dst rax, src rbx, count cl
 * RFLAGS is loaded with popfq right before the instruction and read with
 * pushfq right after it. The caller never sends a division that faults.
 *
 * Build: gcc -O1 -o alu-oracle alu-oracle.c (x86-64 only).
 */
#include <inttypes.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct { uint64_t ax, bx, cx, dx, fl; } regs_t;

/* The red zone below rsp may hold the caller's locals: step over it before pushing. */
#define DEF(fname, insn)                                                           \
  static void fname(regs_t *r) {                                                   \
    uint64_t ax = r->ax, bx = r->bx, cx = r->cx, dx = r->dx, fl = r->fl;           \
    __asm__ volatile("lea -128(%%rsp), %%rsp\n\t"                                  \
                     "push %[f]\n\t"                                               \
                     "popfq\n\t" insn "\n\t"                                       \
                     "pushfq\n\t"                                                  \
                     "pop %[f]\n\t"                                                \
                     "lea 128(%%rsp), %%rsp"                                       \
                     : "+a"(ax), "+b"(bx), "+c"(cx), "+d"(dx), [f] "+r"(fl)        \
                     :                                                             \
                     : "cc", "memory");                                            \
    r->ax = ax; r->bx = bx; r->cx = cx; r->dx = dx; r->fl = fl;                    \
  }

/* op src, dst: rbx into rax. */
#define BIN(n, m)                                   \
  DEF(n##_1, #m "b %%bl, %%al")                     \
  DEF(n##_2, #m "w %%bx, %%ax")                     \
  DEF(n##_4, #m "l %%ebx, %%eax")                   \
  DEF(n##_8, #m "q %%rbx, %%rax")
#define BIN3(n, m)                                  \
  DEF(n##_2, #m "w %%bx, %%ax")                     \
  DEF(n##_4, #m "l %%ebx, %%eax")                   \
  DEF(n##_8, #m "q %%rbx, %%rax")
/* op rax. */
#define UN(n, m)                                    \
  DEF(n##_1, #m "b %%al")                           \
  DEF(n##_2, #m "w %%ax")                           \
  DEF(n##_4, #m "l %%eax")                          \
  DEF(n##_8, #m "q %%rax")
/* op rbx (implicit rax, rdx). */
#define MD(n, m)                                    \
  DEF(n##_1, #m "b %%bl")                           \
  DEF(n##_2, #m "w %%bx")                           \
  DEF(n##_4, #m "l %%ebx")                          \
  DEF(n##_8, #m "q %%rbx")
/* op cl, rax. */
#define SH(n, m)                                    \
  DEF(n##_1, #m "b %%cl, %%al")                     \
  DEF(n##_2, #m "w %%cl, %%ax")                     \
  DEF(n##_4, #m "l %%cl, %%eax")                    \
  DEF(n##_8, #m "q %%cl, %%rax")
/* op cl, rbx, rax. */
#define DSH(n, m)                                   \
  DEF(n##_2, #m "w %%cl, %%bx, %%ax")               \
  DEF(n##_4, #m "l %%cl, %%ebx, %%eax")             \
  DEF(n##_8, #m "q %%cl, %%rbx, %%rax")

BIN(add, add) BIN(adc, adc) BIN(sub, sub) BIN(sbb, sbb)
BIN(and, and) BIN(or, or) BIN(xor, xor) BIN(cmp, cmp)
BIN(xadd, xadd)
UN(inc, inc) UN(dec, dec) UN(neg, neg) UN(not, not)
SH(shl, shl) SH(shr, shr) SH(sar, sar) SH(rol, rol) SH(ror, ror) SH(rcl, rcl) SH(rcr, rcr)
BIN3(imul2, imul)
MD(mul, mul) MD(imul1, imul) MD(div, div) MD(idiv, idiv)
BIN3(bsf, bsf) BIN3(bsr, bsr) BIN3(tzcnt, tzcnt) BIN3(lzcnt, lzcnt) BIN3(popcnt, popcnt)
BIN3(bt, bt) BIN3(bts, bts) BIN3(btr, btr) BIN3(btc, btc)
DSH(shld, shld) DSH(shrd, shrd)
DEF(cmpxchg_1, "cmpxchgb %%cl, %%bl")
DEF(cmpxchg_2, "cmpxchgw %%cx, %%bx")
DEF(cmpxchg_4, "cmpxchgl %%ecx, %%ebx")
DEF(cmpxchg_8, "cmpxchgq %%rcx, %%rbx")

typedef struct { const char *name; int size; void (*fn)(regs_t *); } entry_t;

#define E4(n) {#n, 1, n##_1}, {#n, 2, n##_2}, {#n, 4, n##_4}, {#n, 8, n##_8},
#define E3(n) {#n, 2, n##_2}, {#n, 4, n##_4}, {#n, 8, n##_8},

static const entry_t TABLE[] = {
  E4(add) E4(adc) E4(sub) E4(sbb) E4(and) E4(or) E4(xor) E4(cmp) E4(xadd)
  E4(inc) E4(dec) E4(neg) E4(not)
  E4(shl) E4(shr) E4(sar) E4(rol) E4(ror) E4(rcl) E4(rcr)
  E3(imul2) E4(mul) E4(imul1) E4(div) E4(idiv)
  E3(bsf) E3(bsr) E3(tzcnt) E3(lzcnt) E3(popcnt)
  E3(bt) E3(bts) E3(btr) E3(btc)
  E3(shld) E3(shrd)
  E4(cmpxchg)
};

int main(void) {
  char line[512], op[32];
  int size;
  regs_t r;
  unsigned long n = 0;
  while (fgets(line, sizeof line, stdin)) {
    n++;
    if (sscanf(line, "%31s %d %" SCNx64 " %" SCNx64 " %" SCNx64 " %" SCNx64 " %" SCNx64,
               op, &size, &r.ax, &r.bx, &r.cx, &r.dx, &r.fl) != 7) {
      fprintf(stderr, "alu-oracle: line %lu is malformed: %s", n, line);
      return 2;
    }
    const entry_t *e = NULL;
    for (size_t i = 0; i < sizeof TABLE / sizeof TABLE[0]; i++)
      if (TABLE[i].size == size && strcmp(TABLE[i].name, op) == 0) { e = &TABLE[i]; break; }
    if (!e) {
      fprintf(stderr, "alu-oracle: line %lu: no instruction %s of size %d\n", n, op, size);
      return 2;
    }
    e->fn(&r);
    printf("%" PRIx64 " %" PRIx64 " %" PRIx64 " %" PRIx64 " %" PRIx64 "\n", r.ax, r.bx, r.cx, r.dx, r.fl);
  }
  return 0;
}
