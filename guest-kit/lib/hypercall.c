/*
 * The name of the hypercall transport this library was built for (one
 * library per transport: guest.mk compiles it under obj-$(HYPERCALL)/).
 */
#include <paravane/hypercall.h>

const char *hypercall_transport(void)
{
    return HYPERCALL_TRANSPORT;
}
