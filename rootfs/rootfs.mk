# The OS recipe: what the boot program and the OS root file system contain (included by image/image.mk, which
# assembles them for a board). The files copied verbatim are in rootfs/overlay/, the boot program is
# rootfs/initramfs/init. Every binary comes from an installed Debian package (see `make packages`).

# kernel modules of the boot program: the file systems, dm-verity (the OS slots are mapped through it), the reset
# button's input device (image.mk adds the board's disk and network drivers, board.json image.bootModules, and its
# watchdog driver, watchdog.module)
BOOT_MODULES := squashfs ext4 overlay dm_verity evdev
# kernel modules of the OS: the firewall and NAT, WireGuard, the LAN bridge, PPP over Ethernet (the WAN's pppoe method)
OS_MODULES := nf_tables nft_chain_nat nft_nat nft_masq nft_redir nft_ct nft_reject_inet nft_fib_inet nft_limit nft_log \
	nf_conntrack nf_nat wireguard bridge tun veth ppp_generic pppox pppoe
# the daemons the services run and the tools the supervisor calls (each with the libraries ldd names); the VPN service
# runs WireGuard in userspace (wireguard-go, ServiceCatalog) and configures it with wg
DAEMONS := /usr/sbin/nft /usr/sbin/dnsmasq /usr/bin/wg /usr/bin/wireguard-go /sbin/mkfs.ext4 /sbin/e2fsck /usr/sbin/pppd
# the Debian packages the OS's binaries and run-time loaded libraries come from (for a board whose architecture is not
# the host's, image/sysroot.sh unpacks them with their libraries; on the host's own they are APT_PACKAGES of the Makefile)
OS_PACKAGES := busybox-static nftables dnsmasq-base wireguard-tools wireguard-go e2fsprogs ppp libssl3 dmsetup
# pppd's PPPoE plugin, with the libraries it links: the file the installed ppp package holds (its plugin directory
# is named after pppd's version; pppd loads the plugin by name from there)
PPP_PLUGINS := $(shell dpkg -L ppp 2>/dev/null | grep '^/usr/lib/pppd/[^/]*/pppoe\.so$$')
# libraries loaded at run time rather than linked (tsunagud's TLS), in the board's image.libraryDirectory;
# image.mk adds PPP_PLUGINS
OS_LIBRARY_NAMES := libssl.so.3 libcrypto.so.3
# boards with a cache disk (board.json `hdd`) also carry squid (the cache service), the helper its ufs cache_dir
# removes files with (unlinkd: without it `squid -z` refuses to start) and its error pages
CACHE_DAEMONS := /usr/sbin/squid /usr/lib/squid/unlinkd
CACHE_PACKAGES := squid squid-common squid-langpack
CACHE_FILES := /usr/share/squid /usr/share/squid-langpack/templates /usr/share/squid-langpack/en /etc/squid/errorpage.css
# boards that run virus checking (board.json `virusScan`) also carry ClamAV's daemon, its two scanners (clamdscan: the
# daemon's readiness probe; clamscan: a new signature database loaded alone before clamd sees it), c-icap and its
# client (the ICAP server squid sends downloads to, and its readiness probe), c-icap's ClamAV modules (loaded at run
# time from the board's virusScan.icapModulesDirectory, with the libraries they link), its magic file and the
# virus_scan module's pages (the refusal a LAN PC sees). No signatures: they arrive as update programs.
VIRUS_DAEMONS := /usr/sbin/clamd /usr/bin/clamdscan /usr/bin/clamscan /usr/bin/c-icap /usr/bin/c-icap-client
VIRUS_PACKAGES := clamav clamav-daemon clamdscan c-icap libc-icap-mod-virus-scan
VIRUS_MODULE_NAMES := virus_scan.so clamd_mod.so
VIRUS_FILES := /usr/share/c_icap/templates /etc/c-icap/c-icap.magic
# applications the PROM ships (apps/<name>/1.0.0)
FACTORY_APPS := cache-manager firewall vcp
