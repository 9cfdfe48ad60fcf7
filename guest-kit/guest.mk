# Make rules for one guest-kit guest. A guest's Makefile sets these and
# includes this file:
#
#   GUEST_KIT  path to guest-kit/ (required)
#   NAME       the kernel's name: the output is $(OUT)/$(NAME).elf (required)
#   SRCS       the guest's own .c and .S files (required)
#   OUT        output directory (default: build)
#   HYPERCALL  transport: page (default), vmcall or syscall
#   PLATFORM   pv (default): a Xen PV kernel; native: a plain kernel with
#              Xen's PVH entry (QEMU's -kernel boots it), $(NAME)-native.elf,
#              for guests written only against the kit's console, string and
#              start contract (see docs/guest-kit.md)
#   EXTRA_CFLAGS, EXTRA_ASFLAGS, EXTRA_LDFLAGS  the guest's own additions
#
# Objects go to $(OUT)/obj-$(HYPERCALL)/ (obj-native/ for native): the kit's
# library under lib/ and native/, the guest's under $(NAME)/, so transports
# never share an object. Guests built
# into one OUT share the library objects: build them one after another.
# Warnings are errors. `make V=1` shows the commands, `make -s` nothing.

ifndef GUEST_KIT
$(error GUEST_KIT must be set to the guest-kit directory)
endif
ifndef NAME
$(error NAME must be set to the guest's name)
endif

# Absolute, so the flags (and so the objects) do not depend on who calls.
override GUEST_KIT := $(abspath $(GUEST_KIT))
OUT ?= build
HYPERCALL ?= page

GUEST_TRANSPORTS := page vmcall syscall
ifeq ($(filter $(HYPERCALL),$(GUEST_TRANSPORTS)),)
$(error HYPERCALL=$(HYPERCALL): use one of $(GUEST_TRANSPORTS))
endif
GUEST_DEFINE_page := -DGUEST_HYPERCALL_PAGE
GUEST_DEFINE_vmcall := -DGUEST_HYPERCALL_VMCALL
GUEST_DEFINE_syscall := -DGUEST_HYPERCALL_SYSCALL

GUEST_CC ?= gcc
GUEST_LD ?= ld

GUEST_CPPFLAGS := -I$(GUEST_KIT)/include $(GUEST_DEFINE_$(HYPERCALL))
GUEST_CFLAGS := -ffreestanding -fno-pic -fno-pie -mcmodel=kernel -mno-red-zone \
	-mno-sse -mno-mmx -mno-sse2 -mno-avx -fno-stack-protector -fno-builtin \
	-fno-asynchronous-unwind-tables -fno-unwind-tables -fno-common \
	-nostdlib -static -O2 -g -Wall -Wextra -Werror -std=gnu11 -Wa,--fatal-warnings -MMD -MP
GUEST_ASFLAGS := -D__ASSEMBLY__ -g -Wall -Wextra -Werror -Wa,--fatal-warnings -MMD -MP
PLATFORM ?= pv
ifeq ($(PLATFORM),native)
override NAME := $(NAME)-native
GUEST_LDS := $(GUEST_KIT)/native/native.lds
GUEST_CPPFLAGS += -DGUEST_NATIVE
else ifeq ($(PLATFORM),pv)
GUEST_LDS := $(GUEST_KIT)/lib/guest.lds
else
$(error PLATFORM=$(PLATFORM): use pv or native)
endif
GUEST_LDFLAGS := -nostdlib -static -no-pie -T $(GUEST_LDS) \
	-z noexecstack -z max-page-size=4096 --no-warn-rwx-segments --build-id=none \
	--fatal-warnings

ifeq ($(PLATFORM),native)
# The plain kernel's platform (PVH entry, serial console, isa-debug-exit) and the kit's formatter and strings.
GUEST_LIB_SRCS := native/entry-pvh.S native/platform.c native/traps.c native/traps-entry.S native/user.c native/user.S lib/printf.c lib/string.c lib/trap-report.c
GUEST_OBJ := $(OUT)/obj-native
else
GUEST_LIB_SRCS := $(addprefix lib/,entry.S start.c shutdown.c hypercall.c console.c printf.c string.c mmu.c check.c trap-report.c platform-pv.c \
	traps.c traps-entry.S events.c time.c user.c)
GUEST_OBJ := $(OUT)/obj-$(HYPERCALL)
endif
GUEST_LIB_OBJS := $(GUEST_LIB_SRCS:%=$(GUEST_OBJ)/%.o)
GUEST_OBJS := $(SRCS:%=$(GUEST_OBJ)/$(NAME)/%.o)

# One line per step; V=1 shows commands instead, make -s shows nothing.
ifeq ($(V),1)
Q :=
SAY := @:
else ifneq ($(findstring s,$(firstword -$(MAKEFLAGS))),)
Q := @
SAY := @:
else
Q := @
SAY := @echo
endif

all: $(OUT)/$(NAME).elf

# The kit's objects come first: under PV entry.S must be the first thing in .text
# (natively native.lds places entry-pvh.S's .text.boot32 first whatever the order).
$(OUT)/$(NAME).elf: $(GUEST_LIB_OBJS) $(GUEST_OBJS) $(GUEST_LDS)
	$(SAY) "  LD      $@"
	$(Q)$(GUEST_LD) $(GUEST_LDFLAGS) $(EXTRA_LDFLAGS) -o $@ $(GUEST_LIB_OBJS) $(GUEST_OBJS)

# The kit's own files (lib/, and native/ for a plain kernel), each into the same path under $(GUEST_OBJ).
$(filter %.c.o,$(GUEST_LIB_OBJS)): $(GUEST_OBJ)/%.c.o: $(GUEST_KIT)/%.c
	@mkdir -p $(dir $@)
	$(SAY) "  CC      $@"
	$(Q)$(GUEST_CC) $(GUEST_CPPFLAGS) $(GUEST_CFLAGS) -c -o $@ $<

$(filter %.S.o,$(GUEST_LIB_OBJS)): $(GUEST_OBJ)/%.S.o: $(GUEST_KIT)/%.S
	@mkdir -p $(dir $@)
	$(SAY) "  AS      $@"
	$(Q)$(GUEST_CC) $(GUEST_CPPFLAGS) $(GUEST_ASFLAGS) -c -o $@ $<

$(GUEST_OBJ)/$(NAME)/%.c.o: %.c
	@mkdir -p $(dir $@)
	$(SAY) "  CC      $@"
	$(Q)$(GUEST_CC) $(GUEST_CPPFLAGS) $(GUEST_CFLAGS) $(EXTRA_CFLAGS) -c -o $@ $<

$(GUEST_OBJ)/$(NAME)/%.S.o: %.S
	@mkdir -p $(dir $@)
	$(SAY) "  AS      $@"
	$(Q)$(GUEST_CC) $(GUEST_CPPFLAGS) $(GUEST_ASFLAGS) $(EXTRA_ASFLAGS) -c -o $@ $<

# Flags are inputs too: each set is recorded in a file that changes only
# when the flags do, and what they build depends on it. The library's flags
# leave out the guest's EXTRA_* ones, so guests can share its objects.
GUEST_LIB_FLAGS := $(GUEST_OBJ)/lib/flags
GUEST_OWN_FLAGS := $(GUEST_OBJ)/$(NAME)/flags
$(GUEST_LIB_FLAGS): GUEST_FLAGS_NOW = $(GUEST_CC) $(GUEST_CPPFLAGS) $(GUEST_CFLAGS) $(GUEST_ASFLAGS)
$(GUEST_OWN_FLAGS): GUEST_FLAGS_NOW = $(GUEST_CC) $(GUEST_CPPFLAGS) $(GUEST_CFLAGS) $(EXTRA_CFLAGS) \
	$(GUEST_ASFLAGS) $(EXTRA_ASFLAGS) $(GUEST_LD) $(GUEST_LDFLAGS) $(EXTRA_LDFLAGS)
$(GUEST_LIB_OBJS): $(GUEST_LIB_FLAGS)
$(GUEST_OBJS) $(OUT)/$(NAME).elf: $(GUEST_OWN_FLAGS)
$(GUEST_LIB_FLAGS) $(GUEST_OWN_FLAGS): FORCE
	@mkdir -p $(dir $@)
	@if [ "$$(cat $@ 2>/dev/null)" != '$(GUEST_FLAGS_NOW)' ]; then echo '$(GUEST_FLAGS_NOW)' > $@; fi

FORCE:
.PHONY: all FORCE

-include $(GUEST_LIB_OBJS:.o=.d) $(GUEST_OBJS:.o=.d)
