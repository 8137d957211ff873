#!/bin/bash
# sysroot.sh ARCH ROOT KERNEL_PACKAGE PACKAGE...: the Debian packages of a board whose architecture is not the build
# host's, unpacked into ROOT (no maintainer scripts run, nothing is installed on the host): the kernel package's
# kernel and modules (modules.dep written with depmod), each PACKAGE and every library package it depends on
# (Depends and Pre-Depends, transitively; packages that hold no shared objects a binary could need, such as perl's
# and python's, are left out). The image build then copies binaries and their libraries from ROOT as it does from
# / for the host's own architecture. Needs `dpkg --add-architecture ARCH` and `apt-get update` (make packages).
# Written to ROOT.tmp and renamed, so an interrupted run leaves nothing that looks finished.
. "$(dirname "$0")/lib.sh"

arch=$1 root=$(realpath -m "$2") kernel=$3; shift 3
[ -n "$arch" ] && [ -n "$root" ] && [ -n "$kernel" ] && [ $# -gt 0 ] || die "usage: sysroot.sh ARCH ROOT KERNEL_PACKAGE PACKAGE..."
dpkg --print-foreign-architectures | grep -qx "$arch" \
    || die "Debian architecture $arch is not enabled on this host (as root: dpkg --add-architecture $arch && apt-get update; make packages does it)"

# NAME:ARCH for each architecture-dependent package, NAME for an Architecture: all one (one apt-cache call)
qualified() {
    apt-cache show --no-all-versions "$@" 2>/dev/null | awk -v arch="$arch" '
        /^Package: / { p = $2 } /^Architecture: / { print ($2 == "all" ? p : p ":" arch) }'
}

# the kernel: the meta-package names the versioned image package; only that one is unpacked (its own dependencies
# are the host's initramfs tools, which the image does not use)
kimage=$(apt-cache depends "$kernel:$arch" 2>/dev/null | sed -n 's/^ *Depends: \(linux-image-[0-9][^ :]*\).*/\1/p' | head -n1)
[ -n "$kimage" ] || die "$kernel:$arch names no kernel image package (apt-get update after dpkg --add-architecture $arch)"

# the packages and their library dependencies (every shared library is architecture-dependent)
mapfile -t top < <(qualified "$@")
[ "${#top[@]}" -eq $# ] || die "of the packages $*, apt knows only ${top[*]} (apt-get update after dpkg --add-architecture $arch)"
mapfile -t libraries < <(apt-cache depends --recurse --no-recommends --no-suggests --no-conflicts --no-breaks \
        --no-replaces --no-enhances "${top[@]}" 2>/dev/null \
    | grep "^lib[^ ]*:$arch\$" | grep -v 'perl\|python' | sort -u)
wanted=($(printf '%s\n' "${top[@]}" "${libraries[@]}" | sort -u))

tmp="$root.tmp"
rm -rf "$tmp" && mkdir -p "$tmp/debs" "$tmp/root"
say "sysroot $arch: downloading $kimage and ${#wanted[@]} packages"
(cd "$tmp/debs" && apt-get download -q "$kimage:$arch" "${wanted[@]}" >/dev/null 2>"$tmp/download.log") \
    || die "apt-get download failed: $(tail -n3 "$tmp/download.log")"
for deb in "$tmp"/debs/*.deb; do
    dpkg-deb -x "$deb" "$tmp/root"
done
krel=${kimage#linux-image-}
[ -f "$tmp/root/boot/vmlinuz-$krel" ] || die "$kimage holds no /boot/vmlinuz-$krel"
depmod -b "$tmp/root" "$krel"
echo "$krel" > "$tmp/root/kernel-release"
(cd "$tmp/debs" && ls) > "$tmp/root/packages"
rm -rf "$tmp/debs" "$root"
mv "$tmp/root" "$root"
rm -rf "$tmp"
say "sysroot $arch: $(du -sh "$root" | cut -f1) in $root (kernel $krel)"
