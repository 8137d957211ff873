#!/bin/bash
# Builds the ISP lab's access network guest (docs/lab.md) into OUT (default out/isp-lab): the kernel of Debian's
# linux-image-amd64 and a boot program holding busybox, pppoe-server and pppoe (Debian's pppoe), pppd (ppp) with its
# RADIUS plugin, FreeRADIUS (only the modules and dictionaries image/isp/radius/radiusd.conf uses; the configuration is
# checked with `freeradius -XC` against exactly those files), nft (nftables), dnsmasq (the lab's DNS server), openssl
# (the lab internet's HTTPS server) and WireGuard (the kernel's module and wg: a VPN peer in the lab's internet), with their
# libraries and the kernel modules they need. The guest's program is image/isp/init.
# Usage: image/isp/build.sh [OUT]
set -euo pipefail
cd "$(dirname "$0")/../.."
. image/lib.sh
OUT=${1:-out/isp-lab}
# the ISP guest always runs on the host's architecture (qemu-system-x86_64), whatever board the unit is
KREL=$(kernel_release linux-image-amd64)
# wireguard and wg: the lab's roaming VPN peer, on the internet side of the units (docs/lab.md)
MODULES="virtio_pci virtio_net qemu_fw_cfg ppp_generic ppp_async ppp_synctty nf_tables nft_chain_nat nft_masq nf_nat nf_conntrack nft_limit wireguard"
PROGRAMS="/usr/sbin/pppoe-server /usr/sbin/pppoe /usr/sbin/pppd /usr/sbin/nft /usr/sbin/freeradius /usr/sbin/dnsmasq /usr/bin/openssl /usr/bin/wg"
RADIUS_MODULES="rlm_files rlm_chap rlm_pap rlm_detail rlm_linelog rlm_rest"
RADIUS_DICTIONARIES="dictionary.rfc2865 dictionary.rfc2866 dictionary.rfc2869 dictionary.freeradius.internal"
RADIUS_LIBDIR=/usr/lib/freeradius
RADIUS_DICTDIR=/usr/share/freeradius
PPPD_RADIUS=$(ls /usr/lib/pppd/*/radius.so 2>/dev/null | head -n1) || true
[ -n "$PPPD_RADIUS" ] || die "pppd's radius.so is missing (apt-get install ppp)"
stage=$OUT/stage
rm -rf "$stage" && mkdir -p "$stage"/{etc/ppp/radius,etc/raddb,proc,sys,dev,run,tmp,var}
install_busybox "$stage"
for p in $PROGRAMS; do install_binary "$stage" "$p"; done

# install_shared STAGE PATH: a shared object (a plugin, a module) and the libraries it needs.
install_shared() {
    local stage=$1 so=$2 lib
    [ -f "$so" ] || die "$so is missing (see APT_PACKAGES in the Makefile)"
    install_library "$stage" "$so"
    for lib in $(ldd "$so" 2>/dev/null | grep -oE '/[^ ]+\.so[^ ]*' | sort -u); do
        install_library "$stage" "$lib"
    done
}
# pppd's RADIUS client: the plugin, its configuration and dictionary (the servers file with the secret is made at boot)
install_shared "$stage" "$PPPD_RADIUS"
install -m 0644 image/isp/radius/radiusclient.conf "$stage/etc/ppp/radius/radiusclient.conf"
install -m 0644 image/isp/radius/radiusclient.dictionary "$stage/etc/ppp/radius/dictionary"
: > "$stage/etc/ppp/radius/port-id-map"
# FreeRADIUS: its modules and dictionaries, only those the configuration names
for m in $RADIUS_MODULES; do install_shared "$stage" "$RADIUS_LIBDIR/$m.so"; done
# FreeRADIUS stops at start when OpenSSL cannot load its legacy provider (MD4, for MS-CHAP)
OSSL_MODULES=$(openssl version -m | sed -n 's/^MODULESDIR: "\(.*\)"$/\1/p')
install_shared "$stage" "$OSSL_MODULES/legacy.so"
mkdir -p "$stage$RADIUS_DICTDIR"
install -m 0644 image/isp/radius/dictionary "$stage$RADIUS_DICTDIR/dictionary"
for d in $RADIUS_DICTIONARIES; do install -m 0644 "$RADIUS_DICTDIR/$d" "$stage$RADIUS_DICTDIR/$d"; done
install -m 0644 image/isp/radius/radiusd.conf "$stage/etc/raddb/radiusd.conf"
# the access point's lookup on the initial setting server: templates, filled in at boot when the lab gives its URL and token
mkdir -p "$stage/etc/raddb/templates"
install -m 0644 image/isp/radius/access-point-module.conf image/isp/radius/access-point-authorize.conf "$stage/etc/raddb/templates/"
install -m 0755 image/isp/drop-session "$stage/usr/sbin/isp-drop-session"
install -m 0755 image/isp/set-password "$stage/usr/sbin/isp-set-password"
# The configuration must load with exactly the staged modules and dictionaries (users and clients.conf are made at boot:
# stand-ins here).
check=$(mktemp -d)
trap 'rm -rf "$check"' EXIT
sed "s#^libdir = .*#libdir = $(cd "$stage" && pwd)$RADIUS_LIBDIR#" image/isp/radius/radiusd.conf > "$check/radiusd.conf"
printf 'client check {\n    ipaddr = 127.0.0.1\n    secret = check\n}\n' > "$check/clients.conf"
printf '"check" Cleartext-Password := "check"\n\tService-Type = Framed-User,\n\tFramed-Protocol = PPP\n' > "$check/users"
sed 's#@ACCESS_POINT_URL@#https://10.0.2.100:8443#' image/isp/radius/access-point-module.conf > "$check/access-point-module.conf"
sed 's#@ACCESS_POINT_TOKEN@#check-token#' image/isp/radius/access-point-authorize.conf > "$check/access-point-authorize.conf"
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout "$check/key.pem" -out "$check/server.pem" -days 1 -subj /CN=check 2>/dev/null \
    || die "openssl could not make the stand-in certificate"
freeradius -XC -d "$check" -D "$stage$RADIUS_DICTDIR" > "$check/out" 2>&1 \
    || { cat "$check/out" >&2; die "freeradius -XC refused image/isp/radius/radiusd.conf with the staged modules"; }
say "freeradius -XC: $(tail -n1 "$check/out")"
install_modules "$stage" "$KREL" $MODULES
echo "$MODULES" | tr ' ' '\n' > "$stage/etc/modules"
printf 'root:x:0:0:root:/:/bin/sh\n' > "$stage/etc/passwd"
printf 'root:x:0:\n' > "$stage/etc/group"
: > "$stage/etc/ppp/options"
install -m 0755 image/isp/init "$stage/init"
# the lab internet's HTTPS certificate (openssl s_server in init): made for each image, trusted by nothing
mkdir -p "$stage/etc/lab-tls"
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout "$stage/etc/lab-tls/key.pem" -out "$stage/etc/lab-tls/cert.pem" \
    -days 3650 -subj /CN=www.lab.example -addext subjectAltName=DNS:www.lab.example || die "openssl could not make the lab's HTTPS certificate"
cp "/boot/vmlinuz-$KREL" "$OUT/vmlinuz.tmp" && mv "$OUT/vmlinuz.tmp" "$OUT/vmlinuz"
pack_initramfs "$stage" "$OUT/initrd.img"
rm -rf "$stage"
say "$OUT: $(cd "$OUT" && ls -s --block-size=K vmlinuz initrd.img | tr '\n' ' ')"
