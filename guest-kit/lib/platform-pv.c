/*
 * <paravane/platform.h> for the PV build.
 */
#include <paravane/guest.h>
#include <paravane/platform.h>

const char *platform_name(void)
{
    return "pv";
}

long platform_io_init(void)
{
    struct physdev_set_iopl iopl = { .iopl = 1 };

    return HYPERVISOR_physdev_op(PHYSDEVOP_set_iopl, &iopl);
}
