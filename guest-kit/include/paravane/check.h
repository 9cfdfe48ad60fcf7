/*
 * Checks for test and example guests: each check prints "ok <what>" or
 * "FAIL <what>: got <x> expected <y>" and is counted; a guest ends with a
 * summary line of its own using check_passed and check_failed. Hypercall
 * results print with their errno name ("-EFAULT (-14)").
 */
#ifndef __PARAVANE_CHECK_H__
#define __PARAVANE_CHECK_H__

#include <stdint.h>

extern unsigned int check_passed, check_failed;

/* Counts one check and prints its line. */
void check_record(int ok, const char *what, const char *got, const char *expected);
/* got == expected, as numbers (errno values named). */
void check_eq(const char *what, long got, long expected);
/* got == expected, in hexadecimal. */
void check_hex(const char *what, uint64_t got, uint64_t expected);
/* got >= least. */
void check_ge(const char *what, long got, long least);

#endif /* __PARAVANE_CHECK_H__ */
