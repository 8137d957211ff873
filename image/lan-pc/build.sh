#!/bin/bash
# Builds the ISP lab's LAN PC guest (docs/lab.md) into OUT (default out/lan-pc): the kernel of Debian's
# linux-image-amd64 and a boot program of busybox (udhcpc, nslookup, wget, a shell) and openssl (HTTPS) with the virtio
# network driver. The
# guest's program is image/lan-pc/init, its DHCP client's script image/lan-pc/dhcp-event.
# Usage: image/lan-pc/build.sh [OUT]
set -euo pipefail
cd "$(dirname "$0")/../.."
. image/lib.sh
OUT=${1:-out/lan-pc}
# the LAN PC always runs on the host's architecture (qemu-system-x86_64), whatever board the unit is
KREL=$(kernel_release linux-image-amd64)
MODULES="virtio_pci virtio_net"
stage=$OUT/stage
rm -rf "$stage" && mkdir -p "$stage"/{etc,proc,sys,dev,run,tmp,var,usr/share/udhcpc}
install_busybox "$stage"
install_modules "$stage" "$KREL" $MODULES
echo "$MODULES" | tr ' ' '\n' > "$stage/etc/modules"
printf 'root:x:0:0:root:/:/bin/sh\n' > "$stage/etc/passwd"
printf 'root:x:0:\n' > "$stage/etc/group"
install -m 0755 image/lan-pc/dhcp-event "$stage/usr/share/udhcpc/dhcp-event"
install -m 0755 image/lan-pc/fetch "$stage/usr/bin/lan-pc-fetch"
install -m 0755 image/lan-pc/tls-peer "$stage/usr/bin/lan-pc-tls-peer"
# HTTPS: busybox wget runs `openssl s_client`, and lan-pc-tls-peer reads the certificate with it
install_binary "$stage" /usr/bin/openssl
install -m 0755 image/lan-pc/init "$stage/init"
mkdir -p "$OUT"
cp "/boot/vmlinuz-$KREL" "$OUT/vmlinuz.tmp" && mv "$OUT/vmlinuz.tmp" "$OUT/vmlinuz"
pack_initramfs "$stage" "$OUT/initrd.img"
rm -rf "$stage"
say "$OUT: $(cd "$OUT" && ls -s --block-size=K vmlinuz initrd.img | tr '\n' ' ')"
