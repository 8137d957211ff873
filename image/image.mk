# The firmware image of one board (docs/image.md): the OS recipe in rootfs/ assembled for board/$(BOARD)/, from
# Debian packages. Called by `make image BOARD=...`; every output is a file target, so a rebuild with nothing
# changed does nothing.
SHELL := /bin/bash
BOARD ?= qemu-x86_64
# DEBUG_SHELL=1 builds the lab's image into out/image/<board>-debug: an unauthenticated root shell on the second
# serial port (ttyS1) and the boot program's tsunagu.break=1. The QEMU tests and `make lab` boot it. Without it
# (the production image) no console has a shell and the boot program ignores tsunagu.break.
DEBUG_SHELL ?=
ifeq ($(filter $(DEBUG_SHELL),1 0),)
ifneq ($(DEBUG_SHELL),)
$(error DEBUG_SHELL='$(DEBUG_SHELL)': use 1 (the lab's debug image) or leave it empty)
endif
endif
OUT ?= out/image/$(BOARD)$(if $(filter 1,$(DEBUG_SHELL)),-debug)
BOARD_JSON := board/$(BOARD)/board.json
# The board's variants (board/<name>/variants/<variant>.json: other ports on the same board, image/board-variant.sh), each
# written whole into /etc/tsunagu/boards/ of every OS image; the kernel command line's tsunagu.board= picks one.
BOARD_VARIANTS := $(sort $(wildcard board/$(BOARD)/variants/*.json))
# The OS the factory ships (slot_a, recovery OS) and the one the lab's update program installs.
OS_VERSION ?= 1.0
UPDATE_OS_VERSION ?= 1.1
include rootfs/rootfs.mk
# board.json is read with jq; without it the build would not know the board's partitions or its cache disk.
ifeq ($(shell command -v jq),)
$(error jq is not installed: the image build reads $(BOARD_JSON) with it (apt-get install jq, or `make packages` as root))
endif
# What the board's image is built from (board.json `image`): the Debian kernel package, the .NET runtime identifier
# tsunagud is compiled for, the directory of run-time loaded libraries, the boot program's drivers for the disk.
board_field = $(shell jq -r '$(1) // empty' $(BOARD_JSON) 2>/dev/null)
KERNEL_PACKAGE := $(call board_field,.image.kernelPackage)
RUNTIME := $(call board_field,.image.runtime)
LIBRARY_DIR := $(call board_field,.image.libraryDirectory)
BOARD_BOOT_MODULES := $(call board_field,(.image.bootModules // []) | join(" "))
WATCHDOG_MODULE := $(call board_field,.watchdog.module)
ifeq ($(KERNEL_PACKAGE),)
$(error $(BOARD_JSON): image.kernelPackage: missing (the Debian kernel package the board boots, e.g. linux-image-amd64))
endif
ifeq ($(RUNTIME),)
$(error $(BOARD_JSON): image.runtime: missing (the .NET runtime identifier tsunagud is compiled for, e.g. linux-x64))
endif
# every binary, library and module is copied from installed Debian packages: the host's own when the board's
# architecture is the host's, otherwise the board's packages unpacked into SYSROOT by image/sysroot.sh (`sysroot`,
# which `make image` runs first; the Debian architecture must be enabled: `make packages` does it)
ARCHITECTURE := $(call board_field,.image.architecture)
HOST_ARCHITECTURE := $(shell dpkg --print-architecture 2>/dev/null)
ifeq ($(ARCHITECTURE),)
$(error $(BOARD_JSON): image.architecture: missing (the board's Debian architecture, e.g. amd64 or arm64))
endif
ifneq ($(ARCHITECTURE),$(HOST_ARCHITECTURE))
SYSROOT := $(CURDIR)/out/sysroot/$(ARCHITECTURE)
export IMAGE_ROOT := $(SYSROOT)
endif
export IMAGE_LIBRARY_DIR := $(LIBRARY_DIR)
ifeq ($(LIBRARY_DIR),)
$(error $(BOARD_JSON): image.libraryDirectory: missing (where the board's libssl and libcrypto are, e.g. /usr/lib/x86_64-linux-gnu))
endif
BOOT_MODULES += $(BOARD_BOOT_MODULES) $(WATCHDOG_MODULE)
ifneq ($(SYSROOT),)
PPP_PLUGINS := $(patsubst $(SYSROOT)%,%,$(wildcard $(SYSROOT)/usr/lib/pppd/*/pppoe.so))
endif
# the tty the debug image's service shell runs on (board.json image.serviceConsole; default the second serial port)
SERVICE_CONSOLE := $(or $(call board_field,.image.serviceConsole),ttyS1)
OS_LIBRARIES := $(addprefix $(LIBRARY_DIR)/,$(OS_LIBRARY_NAMES)) $(PPP_PLUGINS)
TSUNAGUD := artifacts/tsunagud/$(RUNTIME)/tsunagud
KREL := $(shell IMAGE_ROOT='$(SYSROOT)' bash -c '. image/lib.sh; kernel_release $(KERNEL_PACKAGE)' 2>/dev/null)
HAS_HDD := $(shell jq -r 'if .hdd then "yes" else "" end' $(BOARD_JSON) 2>/dev/null)
ifneq ($(HAS_HDD),)
DAEMONS += $(CACHE_DAEMONS)
SQUID_FILES := $(CACHE_FILES)
endif
# a board that runs virus checking (board.json virusScan) carries ClamAV and c-icap; c-icap loads its modules from
# virusScan.icapModulesDirectory
VIRUS_MODULES_DIR := $(call board_field,.virusScan.icapModulesDirectory)
ifneq ($(VIRUS_MODULES_DIR),)
DAEMONS += $(VIRUS_DAEMONS)
VIRUS_MODULES := $(addprefix $(VIRUS_MODULES_DIR)/,$(VIRUS_MODULE_NAMES))
endif
FIRMWARE_SOURCES := $(shell find firmware hal protocol -name '*.cs' -o -name '*.csproj' | grep -v '/obj/\|/bin/')
BOARD_CMDLINE := board/$(BOARD)/cmdline
IMAGE_INPUTS := image/lib.sh image/image.mk image/board-env.sh image/board-variant.sh rootfs/rootfs.mk $(BOARD_JSON) $(BOARD_VARIANTS) $(shell find rootfs/overlay rootfs/initramfs -type f)

.PHONY: image config sysroot
image: $(OUT)/disk.img $(OUT)/os-$(UPDATE_OS_VERSION).sqfs $(OUT)/vmlinuz $(OUT)/initrd.img $(OUT)/cmdline $(OUT)/board.json
	@bash -c '. image/lib.sh; say "$(OUT): $$(cd $(OUT) && ls -s --block-size=K disk.img prom.sqfs os-*.sqfs vmlinuz initrd.img | tr "\n" " ")"'

# The board's packages when its architecture is not the host's (nothing to do otherwise).
sysroot: $(if $(SYSROOT),$(SYSROOT)/kernel-release)
	@:

$(SYSROOT)/kernel-release: image/sysroot.sh rootfs/rootfs.mk
	bash image/sysroot.sh $(ARCHITECTURE) $(SYSROOT) $(KERNEL_PACKAGE) $(OS_PACKAGES) $(if $(HAS_HDD),$(CACHE_PACKAGES)) $(if $(VIRUS_MODULES_DIR),$(VIRUS_PACKAGES))

$(OUT)/.kernel-$(KREL):
	@[ -n "$(KREL)" ] || { echo "[image] error: $(KERNEL_PACKAGE) (image.kernelPackage of $(BOARD_JSON)) is not installed$(if $(SYSROOT), in $(SYSROOT): make -f image/image.mk BOARD=$(BOARD) sysroot)" >&2; exit 1; }
	@mkdir -p $(OUT) && rm -f $(OUT)/.kernel-* && touch $@

$(OUT)/vmlinuz: $(OUT)/.kernel-$(KREL)
	@bash -c '. image/lib.sh; say "kernel $(KREL)"'
	cp $(SYSROOT)/boot/vmlinuz-$(KREL) $@

# The kernel command line the board's boot loader passes (on the QEMU board, qemu-run.sh's -append).
$(OUT)/cmdline: $(BOARD_CMDLINE)
	@[ -s $< ] || { echo "[image] error: $< is missing or empty (the board's kernel command line)" >&2; exit 1; }
	@mkdir -p $(OUT) && cp $< $@

# The board's description beside the boot files: what qemu-run.sh reads the QEMU machine from.
$(OUT)/board.json: $(BOARD_JSON)
	@mkdir -p $(OUT) && cp $< $@

$(TSUNAGUD): $(FIRMWARE_SOURCES)
	@bash -c '. image/lib.sh; say "tsunagud for $(RUNTIME) (Native AOT; about a minute)"'
	$(MAKE) --no-print-directory tsunagud-aot TSUNAGUD_RUNTIME=$(RUNTIME) TSUNAGUD_OUT=$(dir $@) >/dev/null

# The configuration files of the boot program and of the OS root file system, no binaries (what the image's
# unit tests build and inspect): rootfs/initramfs/init with its boot-slots.sh and rootfs/overlay/, the accounts, and with DEBUG_SHELL=1
# the service shell on ttyS1 and the boot program's break shell. A production build removes every line of
# the boot program between '# debug-shell-begin' and '# debug-shell-end'.
config: $(OUT)/stage/config/.done

$(OUT)/stage/config/.done: $(IMAGE_INPUTS)
	rm -rf $(OUT)/stage/config && mkdir -p $(OUT)/stage/config/initramfs $(OUT)/stage/config/rootfs/etc
	cp -a rootfs/overlay/. $(OUT)/stage/config/rootfs/
	mkdir -p $(OUT)/stage/config/rootfs/etc/tsunagu $(OUT)/stage/config/initramfs/etc $(OUT)/stage/config/initramfs/lib/tsunagu
	install -m 0644 rootfs/initramfs/boot-slots.sh $(OUT)/stage/config/initramfs/lib/tsunagu/boot-slots.sh
	bash image/board-env.sh $(BOARD_JSON) > $(OUT)/stage/config/board.env
	cp $(OUT)/stage/config/board.env $(OUT)/stage/config/rootfs/etc/tsunagu/board.env
	mkdir -p $(OUT)/stage/config/rootfs/etc/tsunagu/boards
	for v in $(BOARD_VARIANTS); do bash image/board-variant.sh $(BOARD_JSON) $$v > $(OUT)/stage/config/rootfs/etc/tsunagu/boards/$$(basename $$v) || exit 1; done
ifeq ($(DEBUG_SHELL),1)
	install -m 0755 rootfs/initramfs/init $(OUT)/stage/config/initramfs/init
	printf '# the lab'"'"'s debug build (DEBUG_SHELL=1): an unauthenticated root shell on the service console\n$(SERVICE_CONSOLE)::respawn:/bin/sh -l\n' >> $(OUT)/stage/config/rootfs/etc/inittab
else
	sed '/# debug-shell-begin/,/# debug-shell-end/d' rootfs/initramfs/init > $(OUT)/stage/config/initramfs/init
	chmod 0755 $(OUT)/stage/config/initramfs/init
endif
	touch $@

# The boot program (init and the slot choice it sources): busybox, mkfs.ext4, dmsetup (the OS slots' dm-verity mappings) and the modules the disk, its file
# systems and dm-verity need.
$(OUT)/initrd.img: $(OUT)/.kernel-$(KREL) $(OUT)/stage/config/.done
	@bash -c '. image/lib.sh; say "boot program (initramfs)"'
	rm -rf $(OUT)/stage/initramfs && mkdir -p $(OUT)/stage/initramfs/{etc,proc,sys,dev,run,mnt,tmp}
	bash -c '. image/lib.sh; s=$(OUT)/stage/initramfs; install_busybox $$s; install_binary $$s /sbin/mkfs.ext4; install_binary $$s /sbin/dmsetup; \
		install_modules $$s $(KREL) $(BOOT_MODULES)'
	install -m 0755 $(OUT)/stage/config/initramfs/init $(OUT)/stage/initramfs/init
	install -D -m 0644 $(OUT)/stage/config/initramfs/lib/tsunagu/boot-slots.sh $(OUT)/stage/initramfs/lib/tsunagu/boot-slots.sh
	cp $(OUT)/stage/config/board.env $(OUT)/stage/initramfs/etc/board.env
	echo "$(BOOT_MODULES)" | tr ' ' '\n' > $(OUT)/stage/initramfs/etc/boot-modules
	bash -c '. image/lib.sh; pack_initramfs $(OUT)/stage/initramfs $@'

# One OS image: busybox, the daemons the services run, tsunagud, kernel modules, the board description.
$(OUT)/stage/os-%/.done: $(TSUNAGUD) $(OUT)/.kernel-$(KREL) $(OUT)/stage/config/.done $(BOARD_JSON)
	@bash -c '. image/lib.sh; say "OS $* root file system"'
	rm -rf $(OUT)/stage/os-$* && mkdir -p $(OUT)/stage/os-$*
	cp -a $(OUT)/stage/config/rootfs/. $(OUT)/stage/os-$*/
	bash -c '. image/lib.sh; s=$(OUT)/stage/os-$*; install_busybox $$s; \
		for b in $(DAEMONS); do install_binary $$s $$b; done; \
		install_binary_as $$s $(TSUNAGUD) /usr/lib/tsunagu/tsunagud; \
		[ -n "$(PPP_PLUGINS)" ] || die "pppd'"'"'s PPPoE plugin is missing (apt-get install ppp)"; \
		for l in $(OS_LIBRARIES); do install_library $$s $$l; done; \
		install_modules $$s $(KREL) $(OS_MODULES); \
		for f in $(SQUID_FILES); do [ -e $(SYSROOT)$$f ] || die "$(SYSROOT)$$f is missing (apt-get install squid)"; mkdir -p $$s$$(dirname $$f); cp -a $(SYSROOT)$$f $$s$$f; done; \
		for m in $(VIRUS_MODULES); do install_plugin $$s $$m; done; \
		for f in $(if $(VIRUS_MODULES_DIR),$(VIRUS_FILES)); do [ -e $(SYSROOT)$$f ] || die "$(SYSROOT)$$f is missing (apt-get install c-icap libc-icap-mod-virus-scan)"; mkdir -p $$s$$(dirname $$f); cp -a $(SYSROOT)$$f $$s$$f; done'
	mkdir -p $(OUT)/stage/os-$*/{proc,sys,dev,run,tmp,data,prom,factory,var,root} $(OUT)/stage/os-$*/etc/tsunagu
	echo "tsunagu-os $*" > $(OUT)/stage/os-$*/etc/os-version
	echo "$(OS_MODULES)" | tr ' ' '\n' > $(OUT)/stage/os-$*/etc/os-modules
	cp $(BOARD_JSON) $(OUT)/stage/os-$*/etc/tsunagu/board.json
	touch $@

$(OUT)/os-%.sqfs: $(OUT)/stage/os-%/.done
	@bash -c '. image/lib.sh; say "OS $* image (squashfs)"'
	mksquashfs $(OUT)/stage/os-$* $@.tmp -noappend -comp zstd -all-root -no-progress -quiet -no-recovery -e .done
	mv $@.tmp $@

# The PROM: the factory OS (also the recovery OS) with the kernel, the boot program, its OS version and the
# factory applications.
$(OUT)/prom.sqfs: $(OUT)/stage/os-$(OS_VERSION)/.done $(OUT)/vmlinuz $(OUT)/initrd.img
	@bash -c '. image/lib.sh; say "prom (squashfs)"'
	rm -rf $(OUT)/stage/prom-extra && mkdir -p $(OUT)/stage/prom-extra/boot
	cp $(OUT)/vmlinuz $(OUT)/initrd.img $(OUT)/stage/prom-extra/boot/
	echo "tsunagu-os $(OS_VERSION)" > $(OUT)/stage/prom-extra/os-version
	for app in $(FACTORY_APPS); do mkdir -p $(OUT)/stage/prom-extra/apps/$$app/1.0.0; \
		echo "$$app 1.0.0" > $(OUT)/stage/prom-extra/apps/$$app/1.0.0/VERSION; done
	mksquashfs $(OUT)/stage/os-$(OS_VERSION) $@.tmp -noappend -comp zstd -all-root -no-progress -quiet -no-recovery -e .done
	mksquashfs $(OUT)/stage/prom-extra $@.tmp -comp zstd -all-root -no-progress -quiet -no-recovery
	mv $@.tmp $@

# The disk: GPT with the board's partitions; prom and slot_a written, data formatted with a boot state that
# boots slot_a, factory empty until `tsunagu factory burn`.
$(OUT)/disk.img: $(OUT)/prom.sqfs $(OUT)/os-$(OS_VERSION).sqfs $(BOARD_JSON) image/mkdisk.sh
	@bash -c '. image/lib.sh; say "disk image"'
	bash image/mkdisk.sh $(BOARD_JSON) $(OUT) $(OS_VERSION)

# The field image (docs/image.md, "Field reimage"): a USB stick that writes this image onto a unit and keeps its
# identity; its boot program (image/field/init, busybox, the drivers of the disk, the stick and squashfs: board.json
# image.bootModules and image.usbModules) boots with the board's kernel and command line.
USB_MODULES := $(call board_field,(.image.usbModules // []) | join(" "))
FIELD_MODULES := squashfs $(BOARD_BOOT_MODULES) $(USB_MODULES)
.PHONY: field
field: $(OUT)/field/stick.img $(OUT)/field/initrd.img $(OUT)/field/vmlinuz $(OUT)/field/cmdline $(OUT)/field/board.json
	@bash -c '. image/lib.sh; say "$(OUT)/field: $$(cd $(OUT)/field && ls -s --block-size=K stick.img vmlinuz initrd.img | tr "\n" " ")"'

$(OUT)/field/stick.img: $(OUT)/disk.img image/mkfield.sh image/lib.sh
	@bash -c '. image/lib.sh; say "field image (USB stick)"'
	bash image/mkfield.sh $(BOARD_JSON) $(OUT) $(OS_VERSION)

$(OUT)/field/initrd.img: $(OUT)/.kernel-$(KREL) image/field/init image/lib.sh $(BOARD_JSON)
	@[ -n "$(USB_MODULES)" ] || { echo "[image] error: $(BOARD_JSON): image.usbModules: missing (the drivers of the USB port the field stick is plugged into)" >&2; exit 1; }
	@bash -c '. image/lib.sh; say "field boot program (initramfs)"'
	rm -rf $(OUT)/stage/field-initramfs && mkdir -p $(OUT)/stage/field-initramfs/{etc,proc,sys,dev,run,mnt,tmp} $(OUT)/field
	bash -c '. image/lib.sh; s=$(OUT)/stage/field-initramfs; install_busybox $$s; install_modules $$s $(KREL) $(FIELD_MODULES)'
	install -m 0755 image/field/init $(OUT)/stage/field-initramfs/init
	echo "$(FIELD_MODULES)" | tr ' ' '\n' > $(OUT)/stage/field-initramfs/etc/boot-modules
	bash -c '. image/lib.sh; pack_initramfs $(OUT)/stage/field-initramfs $@'

$(OUT)/field/vmlinuz $(OUT)/field/cmdline $(OUT)/field/board.json: $(OUT)/field/%: $(OUT)/%
	@mkdir -p $(OUT)/field && cp $< $@
