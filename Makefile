# Tsunagu: the real entry point. `make run` for the demo, `make test` for every test.
SHELL := /bin/bash
CONFIGURATION ?= Release
UNITS ?= 5
PORT ?= 8443
MQTT_PORT ?= 8883
CHECK_INTERVAL ?= 300
DEMO_DATA ?= .tsunagu/demo
RESULTS ?= TestResults
DOTNET ?= dotnet
CLI := tools/Tsunagu.Cli/bin/$(CONFIGURATION)/net10.0/tsunagu.dll

.PHONY: all deps packages restore build format-check test chaos unit-test integration-test system-test run cluster cluster-stop bench tsunagud-aot image lab clean

all: build

# What the build and the tests need on a fresh machine of this kind: the .NET 10 SDK, node + npm (the console's
# chart library), Debian's chromium (the browser tests; .ci/run installs it).
deps:
	@command -v npm >/dev/null || { echo "error: npm is not installed; the server build installs the console's chart library with it" >&2; exit 1; }
	@command -v $(DOTNET) >/dev/null || { echo "error: the .NET 10 SDK ('dotnet') is not installed; see README.md" >&2; exit 1; }
	@$(DOTNET) --list-sdks | grep -q '^10\.' || { echo "error: a .NET 10 SDK is required; found: $$($(DOTNET) --list-sdks)" >&2; exit 1; }

# the qemu-arm64 board from this x86_64 host: its QEMU, and Native AOT's cross toolchain (clang, lld, llvm-objcopy) with
# the arm64 C runtime and zlib to link tsunagud against; the board's own packages are unpacked by image/sysroot.sh
# (`make image BOARD=qemu-arm64`), which needs the arm64 architecture enabled (added here when a package names it)
ARM64_PACKAGES := qemu-system-arm clang lld llvm libc6-dev:arm64 libgcc-12-dev:arm64 zlib1g-dev:arm64

# Debian packages the tests use (databases, broker, the router's daemons, a DHCP client, the image build, the
# browser). As root, `make packages` (and so `make test`) installs the missing ones with apt-get; otherwise it
# names them and stops.
APT_PACKAGES := postgresql mosquitto mosquitto-clients nftables dnsmasq wireguard-tools wireguard-go squid iproute2 udhcpc \
	busybox-static procps util-linux openssl chromium qemu-system-x86 linux-image-amd64 squashfs-tools e2fsprogs fdisk cpio \
	gzip kmod jq socat gcc binutils zlib1g-dev file faketime prometheus haproxy nginx-light ppp pppoe freeradius freeradius-rest \
	clamav clamav-daemon clamdscan c-icap libc-icap-mod-virus-scan curl cryptsetup-bin dmsetup python3 $(ARM64_PACKAGES)
packages:
	@$(call apt_install,$(APT_PACKAGES))

# $(call apt_install,LIST): installs the packages of LIST that are missing (as root), or names them and fails
define apt_install
missing=$$(for p in $(1); do dpkg-query -W -f='$${Status}\n' $$p 2>/dev/null | grep -q '^install ok installed' || echo $$p; done); \
	if [ -z "$$missing" ]; then exit 0; fi; \
	echo "packages: $$(echo $$missing | wc -w) Debian package(s) the tests need are missing: $$(echo $$missing)"; \
	if [ "$$(id -u)" -ne 0 ]; then echo "error: not root; install them with: sudo apt-get install $$(echo $$missing)" >&2; exit 1; fi; \
	export DEBIAN_FRONTEND=noninteractive; \
	for a in $$(echo $$missing | grep -o ':[a-z0-9]*' | tr -d : | sort -u); do \
		dpkg --print-foreign-architectures | grep -qx $$a || [ "$$a" = "$$(dpkg --print-architecture)" ] || dpkg --add-architecture $$a; done; \
	apt-get update -q && apt-get install -y -q $$missing
endef

# LOCKED=1 (CI) restores exactly the packages.lock.json of each project and fails if a project's references no
# longer match it; without it a restore updates the lock files (commit them with the change that caused it).
LOCKED ?= $(if $(filter true,$(CI)),1,)
restore: deps
	$(DOTNET) restore Tsunagu.slnx $(if $(filter 1,$(LOCKED)),--locked-mode)

build: restore
	$(DOTNET) build Tsunagu.slnx -c $(CONFIGURATION) --no-restore

# The code is laid out as .editorconfig says; `dotnet format Tsunagu.slnx` fixes it. Its style and analyzer rules
# (warning severity) already fail the build (EnforceCodeStyleInBuild and warnings as errors, Directory.Build.props), so
# the check is the part no compiler sees: whitespace, final newlines, charset (`dotnet format whitespace`, seconds
# where the whole `dotnet format --verify-no-changes`, which compiles everything again, took 4.5 min in CI).
format-check: restore
	$(DOTNET) format whitespace Tsunagu.slnx --verify-no-changes

# Every test but the long ones (below); TRX results land in $(RESULTS)/ (one file per test run). The QEMU tests boot
# the images of both boards (qemu-arm64: first boot, slot fall back and a changed byte refused by dm-verity, about
# 4 min under TCG). tests/run.sh runs two sides at once: the system tests (the router's daemons, the first board; the
# longest run); beside them, the other test projects of the solution one after another, then the layout check
# (format-check), the second board's system tests and the first board's verified boot. It fails if any run or step failed, and Ctrl-C stops every run.
SYSTEM_TESTS := tests/Tsunagu.SystemTests
# (through a variable: a recipe line naming $$(MAKE) itself would run even under `make -n`)
SUBMAKE = $(MAKE) --no-print-directory
test: IMAGE_BUILDS = debug
test: packages build image image-arm64 field-image isp-lab-image lan-pc-image
	rm -rf $(RESULTS)
	DOTNET=$(DOTNET) CONFIGURATION=$(CONFIGURATION) RESULTS=$(RESULTS) CHECKS='$(SUBMAKE) format-check' bash tests/run.sh

# The long system tests, which wait out a board's own timers for minutes and are not part of `make test` (part of
# `make system-test`; so not of CI, which runs `make test`): a new OS that hangs, restarted by the watchdog on each of
# its three tries (about 7 min under TCG); on the second board, the wiped data partition, the technician's reimage, the
# LEDs and reset button and the power cuts that `make test` runs on the first; and the ISP lab's measure of a LAN
# download's throughput past no service, through the cache and the virus check, and from the cache (docs/lab.md).
.PHONY: test-long
test-long: packages build image image-arm64 field-image field-image-arm64 isp-lab-image lan-pc-image
	$(DOTNET) test $(SYSTEM_TESTS) -c $(CONFIGURATION) --no-build --filter "TestCategory=long" --logger "console;verbosity=normal"

# Only the QEMU tests of the second board, qemu-arm64, all of them (QemuArm64Tests under TCG: first boot, slot fall back
# and dm-verity fall back, also part of `make test`; the wiped data partition, the technician's reimage, the LEDs and
# reset button, the power cuts, long ones part of `make test-long`; all part of `make system-test`).
.PHONY: test-arm64 image-arm64
test-arm64: packages build image-arm64 field-image-arm64
	$(DOTNET) test tests/Tsunagu.SystemTests -c $(CONFIGURATION) --no-build --filter "FullyQualifiedName~Qemu.QemuArm64Tests" \
		--logger "console;verbosity=normal"

unit-test: build
	$(DOTNET) test tests/Tsunagu.UnitTests -c $(CONFIGURATION) --no-build

# Rewrites the generated transition table of firmware/DESIGN.md from Transitions.Table (the unit test compares them).
.PHONY: firmware-design
firmware-design:
	TSUNAGU_WRITE_DESIGN=1 $(DOTNET) test tests/Tsunagu.UnitTests -c $(CONFIGURATION) --filter "FullyQualifiedName~TransitionsTests.Design_document"

integration-test: build
	$(DOTNET) test tests/Tsunagu.IntegrationTests -c $(CONFIGURATION) --no-build

# Real daemons in network namespaces the tests create, and the firmware image booted in QEMU (root; packages in .ci/run);
# the long tests too.
system-test: packages build image image-arm64 field-image field-image-arm64 isp-lab-image lan-pc-image
	$(DOTNET) test tests/Tsunagu.SystemTests -c $(CONFIGURATION) --no-build

# The server (both roles, SQLite, embedded MQTT) with the demo catalogue and $(UNITS) simulated units.
run: build
	$(DOTNET) $(CLI) demo --units $(UNITS) --port $(PORT) --mqtt-port $(MQTT_PORT) --check-interval $(CHECK_INTERVAL) --data $(DEMO_DATA) \
		$(if $(wildcard out/image/$(BOARD)-debug/os-1.1.sqfs),--lab-image out/image/$(BOARD)-debug)

# The production topology on this machine (docs/deployment.md): HAProxy -> $(REPLICAS) server replicas + nginx for
# artifacts, PostgreSQL, Mosquitto, all on 127.0.0.1 under $(CLUSTER_DATA). `make cluster-stop` stops it.
REPLICAS ?= 2
CLUSTER_DATA ?= .tsunagu/cluster
cluster: build packages
	PORT=$(PORT) REPLICAS=$(REPLICAS) SERVER_DLL=server/Tsunagu.Server/bin/$(CONFIGURATION)/net10.0/tsunagu-server.dll deploy/cluster.sh start $(CLUSTER_DATA)

cluster-stop:
	deploy/cluster.sh stop $(CLUSTER_DATA)

# Benchmarks (not part of `make test`): each figure paired with a reference run in the same job on loopback
# (nginx, openssl, dd); prints a table and writes bench/results.json. Needs nginx-light and openssl (apt-get), and for
# the rows on the production topology (BENCH_ONLY parts scale, cluster-storm; docs/scaling.md) what `make cluster` needs.
BENCH_SECONDS ?= 5
bench: deps
	@command -v nginx >/dev/null || test -x /usr/sbin/nginx || { echo "error: make bench needs nginx (apt-get install nginx-light)" >&2; exit 1; }
	@command -v openssl >/dev/null || { echo "error: make bench needs openssl" >&2; exit 1; }
	@test -x /usr/sbin/mosquitto || { echo "error: make bench needs mosquitto with dynamic security (apt-get install mosquitto mosquitto-clients)" >&2; exit 1; }
	@if [ -z "$(BENCH_ONLY)" ] || echo ",$(BENCH_ONLY)," | grep -Eq ',[[:space:]]*(scale|cluster-storm)[[:space:]]*,'; then \
		command -v haproxy >/dev/null || test -x /usr/sbin/haproxy || { echo "error: the rows scale and cluster-storm of make bench need haproxy and postgresql (make packages), or leave them out with BENCH_ONLY" >&2; exit 1; }; fi
	$(DOTNET) build bench/Tsunagu.Bench -c $(CONFIGURATION)
	BENCH_SECONDS=$(BENCH_SECONDS) $(DOTNET) bench/Tsunagu.Bench/bin/$(CONFIGURATION)/net10.0/Tsunagu.Bench.dll .tsunagu/bench bench/results.json

# Only the rows of the production topology (docs/scaling.md): deploy/cluster.sh's HAProxy, 2 replicas, PostgreSQL, Mosquitto;
# units per core from steady-state check-ins at BENCH_SCALE_RATE/s for BENCH_SECONDS, then the reconnect storm of
# BENCH_CLUSTER_STORM_UNITS units through it. Writes bench/results-scale.json (make bench's table is left alone).
.PHONY: bench-scale
BENCH_SCALE_PACKAGES := postgresql mosquitto mosquitto-clients haproxy nginx-light openssl python3
bench-scale: deps
	@$(call apt_install,$(BENCH_SCALE_PACKAGES))
	$(DOTNET) build bench/Tsunagu.Bench -c $(CONFIGURATION)
	BENCH_ONLY=scale,cluster-storm BENCH_SECONDS=$(if $(filter command line environment,$(origin BENCH_SECONDS)),$(BENCH_SECONDS),60) \
		$(DOTNET) bench/Tsunagu.Bench/bin/$(CONFIGURATION)/net10.0/Tsunagu.Bench.dll .tsunagu/bench-scale bench/results-scale.json

# A staged rollout of the whole simulated fleet (docs/rollouts.md, "Measured"; not part of `make test`): $(ROLLOUT_UNITS)
# units first-boot on the in-process server (SQLite, embedded broker), then one rollout of $(ROLLOUT_WAVES) moves them to a
# new pattern and a second one, in which $(FAIL_HEALTH)% of each wave fails its health check, pauses at the error
# threshold. Prints per rollout when each wave opened, the engine's passes and their cost, requests per unit, the time
# from the threshold crossed to the pause; writes .tsunagu/rollout-bench.json. Up to 4,000 units one process holds units,
# server and broker; beyond, the units run in $(ROLLOUT_WORKERS) worker processes of at most 2,500 (each unit holds about
# four descriptors: its two state files and both ends of its broker connection, and a process may open 20,000 here).
# Prints the process's memory, descriptors and threads every 15 s.
ROLLOUT_UNITS ?= $(if $(filter command line environment,$(origin UNITS)),$(UNITS),1000)
ROLLOUT_WORKERS ?= $(shell [ $(ROLLOUT_UNITS) -gt 4000 ] && echo $$(( ($(ROLLOUT_UNITS) + 2499) / 2500 )) || echo 0)
ROLLOUT_WAVES ?= 10%,30%,100%
FAIL_HEALTH ?= 20
.PHONY: rollout-bench
rollout-bench: deps
	$(DOTNET) build tools/Tsunagu.Cli -c $(CONFIGURATION)
	$(DOTNET) $(CLI) fleetsim --units $(ROLLOUT_UNITS) --workers $(ROLLOUT_WORKERS) --scenario rollout,rollout-pause --waves $(ROLLOUT_WAVES) \
		--fail-health $(FAIL_HEALTH) --sample 15 --timeout 1800 --data .tsunagu/rollout-bench --json .tsunagu/rollout-bench.json

# The nemesis (docs/reliability.md): a real server and $(CHAOS_UNITS) simulated units under a seeded schedule of faults
# for $(MINUTES) minutes; prints the history and whether each invariant held (exit code 3 when one broke).
SEED ?= 1
MINUTES ?= 10
CHAOS_UNITS ?= 20
CHAOS_BROKER ?= embedded
chaos: build
	$(DOTNET) $(CLI) chaos --seed $(SEED) --minutes $(MINUTES) --units $(CHAOS_UNITS) --broker $(CHAOS_BROKER) --data .tsunagu/chaos

# The QEMU power-cut campaign (docs/reliability.md): N hard power cuts of one unit in provisioning, the update and steady
# state, its state checked after each; writes the results into docs/reliability.md. One QEMU under TCG: minutes per cut.
N ?= 20
.PHONY: power-cuts
power-cuts: packages build image
	TSUNAGU_POWER_CUTS=$(N) TSUNAGU_POWER_CUT_REPORT=$(CURDIR)/docs/reliability.md $(DOTNET) test tests/Tsunagu.SystemTests -c $(CONFIGURATION) --no-build \
		--filter "FullyQualifiedName~Qemu.PowerCutTests" --logger "console;verbosity=normal"

# Every parser of untrusted bytes under afl-fuzz (SharpFuzz), FUZZ_SECONDS per target; prints executions and crashes
# per target (tests/Tsunagu.Fuzz/fuzz.sh, docs/security.md). Needs afl++ (apt-get install afl++). Not part of `make test`,
# which replays the corpus and fuzzes each target in-process for a few seconds.
FUZZ_SECONDS ?= 60
.PHONY: fuzz
fuzz: deps
	FUZZ_SECONDS=$(FUZZ_SECONDS) CONFIGURATION=$(CONFIGURATION) DOTNET=$(DOTNET) bash tests/Tsunagu.Fuzz/fuzz.sh

# tsunagud as one Native AOT binary for TSUNAGUD_RUNTIME (artifacts/tsunagud/linux-x64/tsunagud; PublishAot is set in its
# project; `make image` passes the board's image.runtime). LiteDB reports trim/AOT analysis warnings (reflection-based
# mapping the supervisor does not use: it stores JSON strings), so warnings are not errors here; the analyzers'
# findings in protocol, hal and firmware still are (Directory.Build.targets).
TSUNAGUD_RUNTIME ?= linux-x64
TSUNAGUD_OUT ?= artifacts/tsunagud/$(TSUNAGUD_RUNTIME)
# A runtime of another architecture than the host's (linux-arm64 from x86_64) is cross-compiled: clang targets it, lld
# links against the arm64 C runtime of ARM64_PACKAGES, llvm-objcopy strips the symbols.
HOST_RUNTIME := linux-$(subst x86_64,x64,$(subst aarch64,arm64,$(shell uname -m)))
tsunagud-aot: deps
	$(DOTNET) publish firmware/tsunagud -c Release -r $(TSUNAGUD_RUNTIME) -p:TreatWarningsAsErrors=false -o $(TSUNAGUD_OUT) \
		$(if $(filter-out $(HOST_RUNTIME),$(TSUNAGUD_RUNTIME)),-p:LinkerFlavor=lld -p:ObjCopyName=llvm-objcopy)

# The firmware image of a board (docs/image.md): out/image/$(BOARD)/disk.img and the boot files QEMU loads (the
# production image: no shell on any console), and out/image/$(BOARD)-debug, the lab's debug build with a root
# shell on ttyS1 that the QEMU tests and `make lab` boot.
BOARD ?= qemu-x86_64
IMAGE_DIR := out/image/$(BOARD)-debug
# Which of the two builds `make image` and `make field-image` write: `production`, `debug` (the lab's), or both, the
# default. `make test` builds only the debug ones, the images its tests boot (the production build differs in its
# configuration files alone, which the unit tests build and check: ImageConsoleTests).
IMAGE_BUILDS ?= production debug
ifneq ($(filter-out production debug,$(IMAGE_BUILDS)),)
$(error IMAGE_BUILDS='$(IMAGE_BUILDS)': name production, debug or both)
endif
# image_builds TARGET: image.mk's TARGET for each build IMAGE_BUILDS names
image_builds = $(if $(filter production,$(IMAGE_BUILDS)),$(MAKE) --no-print-directory -f image/image.mk BOARD=$(BOARD) $(1)) \
	$(if $(filter production,$(IMAGE_BUILDS)),$(if $(filter debug,$(IMAGE_BUILDS)),&&)) \
	$(if $(filter debug,$(IMAGE_BUILDS)),$(MAKE) --no-print-directory -f image/image.mk BOARD=$(BOARD) DEBUG_SHELL=1 $(1))
image: deps
	@$(MAKE) --no-print-directory -f image/image.mk BOARD=$(BOARD) sysroot
	@$(call image_builds,image)

# The second board's images, whatever BOARD is (the tests boot both boards).
image-arm64: deps
	@$(MAKE) --no-print-directory image BOARD=qemu-arm64 IMAGE_BUILDS='$(IMAGE_BUILDS)'

# The field image of a board (docs/image.md, "Field reimage"): out/image/$(BOARD)[-debug]/field/, a USB stick
# (stick.img) that writes the board's factory image onto a unit around its factory partition, so the unit keeps its
# identity, with the kernel and the boot program that do it. The -debug one carries the lab's image (the QEMU tests).
.PHONY: field-image field-image-arm64
field-image: image
	@$(call image_builds,field)

field-image-arm64: image-arm64
	@$(MAKE) --no-print-directory field-image BOARD=qemu-arm64 IMAGE_BUILDS='$(IMAGE_BUILDS)'

# The ISP lab's access network guest (docs/lab.md): out/isp-lab/vmlinuz and initrd.img (pppoe-server, pppd with its
# RADIUS plugin, FreeRADIUS, nft).
ISP_LAB_DIR := out/isp-lab
.PHONY: isp-lab-image isp-lab-test
isp-lab-image: $(ISP_LAB_DIR)/initrd.img
$(ISP_LAB_DIR)/initrd.img: image/isp/build.sh image/isp/init image/isp/drop-session image/isp/set-password $(wildcard image/isp/radius/*) image/lib.sh
	bash image/isp/build.sh $(ISP_LAB_DIR)

# The ISP lab's LAN PC (docs/lab.md): out/lan-pc/vmlinuz and initrd.img (busybox: udhcpc, nslookup, wget; openssl).
LAN_PC_DIR := out/lan-pc
.PHONY: lan-pc-image
lan-pc-image: $(LAN_PC_DIR)/initrd.img
$(LAN_PC_DIR)/initrd.img: image/lan-pc/build.sh image/lan-pc/init image/lan-pc/dhcp-event image/lan-pc/fetch image/lan-pc/tls-peer image/lib.sh
	bash image/lan-pc/build.sh $(LAN_PC_DIR)

# Only the ISP lab's system tests (also part of `make test` and `make system-test`).
isp-lab-test: packages build image isp-lab-image lan-pc-image
	$(DOTNET) test tests/Tsunagu.SystemTests -c $(CONFIGURATION) --no-build --filter "FullyQualifiedName~Qemu.IspLabTests" --logger "console;verbosity=normal"

# One QEMU unit of the image against the server of `make run` (start that first; the lab script says what to watch).
# LAB=isp: the ISP lab instead (docs/lab.md): the access network guest, a unit dialling PPPoE through it and a LAN PC on its LAN.
LAB_SCRIPTS := tests/Tsunagu.SystemTests/Qemu
LAB ?=
lab: build image $(if $(filter isp,$(LAB)),isp-lab-image lan-pc-image)
ifeq ($(LAB),isp)
	CLI=$(CLI) PORT=$(PORT) MQTT_PORT=$(MQTT_PORT) DEMO=$(DEMO_DATA) IMAGE_DIR=$(IMAGE_DIR) ISP_DIR=$(ISP_LAB_DIR) LAN_PC_DIR=$(LAN_PC_DIR) bash $(LAB_SCRIPTS)/isp-lab.sh
else ifeq ($(LAB),)
	CLI=$(CLI) PORT=$(PORT) MQTT_PORT=$(MQTT_PORT) DEMO=$(DEMO_DATA) IMAGE_DIR=$(IMAGE_DIR) LAB_DIR=.tsunagu/lab bash $(LAB_SCRIPTS)/lab.sh
else
	@echo "error: LAB=$(LAB): the labs are the default (no LAB) and LAB=isp" >&2; exit 2
endif

# `tsunagu` on the PATH: a link to tools/tsunagu (which runs this checkout's CLI) in $(BINDIR).
BINDIR ?= $(HOME)/.local/bin
.PHONY: install-cli
install-cli:
	mkdir -p $(BINDIR) && ln -sf $(CURDIR)/tools/tsunagu $(BINDIR)/tsunagu
	@case ":$$PATH:" in *":$(BINDIR):"*) ;; *) echo "install-cli: $(BINDIR) is not on your PATH: export PATH=\"$(BINDIR):\$$PATH\"";; esac

clean:
	$(DOTNET) clean Tsunagu.slnx -c $(CONFIGURATION) >/dev/null
	rm -rf $(RESULTS) .tsunagu
