/*
 * What a host-built workload (host/host.c) sees of <paravane/guest.h>:
 * fixed-width integers, printk and an opaque start_info. Found first on
 * the include path of a host build.
 */
#ifndef __PARAVANE_GUEST_H__
#define __PARAVANE_GUEST_H__

#include <stdint.h>
#include <stddef.h>

typedef struct start_info start_info_t;
int printk(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

#endif
