/*
 * The guest kit in one include: Xen's PV ABI and paravane's extensions
 * (<paravane/abi.h>, generated), hypercalls, console, boot contract and
 * string helpers. See docs/guest-kit.md.
 */
#ifndef __PARAVANE_GUEST_H__
#define __PARAVANE_GUEST_H__

#include <stdint.h>
#include <stddef.h>
#include <paravane/abi.h>
#ifndef GUEST_NATIVE
/* A plain kernel (PLATFORM=native) makes no hypercalls: their wrappers are not there to call. */
#include <paravane/hypercall.h>
#endif
#include <paravane/console.h>
#include <paravane/start.h>
#include <paravane/string.h>

#define ARRAY_SIZE(a) (sizeof(a) / sizeof((a)[0]))

#endif /* __PARAVANE_GUEST_H__ */
