#!/bin/bash
# Builds the ISP lab's access network guest (docs/lab.md) into OUT (default out/isp-lab): the kernel of Debian's
# linux-image-amd64 and a boot program holding busybox, pppoe-server and pppoe (Debian's pppoe), pppd (ppp) and
# nft (nftables) with their libraries and the kernel modules they need. The guest's program is image/isp/init.
# Usage: image/isp/build.sh [OUT]
set -euo pipefail
cd "$(dirname "$0")/../.."
. image/lib.sh
OUT=${1:-out/isp-lab}
# the ISP guest always runs on the host's architecture (qemu-system-x86_64), whatever board the unit is
KREL=$(kernel_release linux-image-amd64)
MODULES="virtio_pci virtio_net qemu_fw_cfg ppp_generic ppp_async ppp_synctty nf_tables nft_chain_nat nft_masq nf_nat nf_conntrack"
PROGRAMS="/usr/sbin/pppoe-server /usr/sbin/pppoe /usr/sbin/pppd /usr/sbin/nft"
stage=$OUT/stage
rm -rf "$stage" && mkdir -p "$stage"/{etc/ppp,proc,sys,dev,run,tmp,var}
install_busybox "$stage"
for p in $PROGRAMS; do install_binary "$stage" "$p"; done
install_modules "$stage" "$KREL" $MODULES
echo "$MODULES" | tr ' ' '\n' > "$stage/etc/modules"
printf 'root:x:0:0:root:/:/bin/sh\n' > "$stage/etc/passwd"
printf 'root:x:0:\n' > "$stage/etc/group"
: > "$stage/etc/ppp/options"
install -m 0755 image/isp/init "$stage/init"
cp "/boot/vmlinuz-$KREL" "$OUT/vmlinuz.tmp" && mv "$OUT/vmlinuz.tmp" "$OUT/vmlinuz"
pack_initramfs "$stage" "$OUT/initrd.img"
rm -rf "$stage"
say "$OUT: $(cd "$OUT" && ls -s --block-size=K vmlinuz initrd.img | tr '\n' ' ')"
