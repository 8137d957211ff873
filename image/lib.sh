# Functions shared by the image build steps (sourced, not run). Everything comes from installed Debian packages:
# busybox-static, the board's Debian kernel (board.json image.kernelPackage) and its modules, nftables, dnsmasq, wireguard-tools, e2fsprogs,
# libssl3. `install_binary` copies an executable with the shared libraries `ldd` resolves for it.

set -euo pipefail

say() { printf '[image] %s\n' "$*" >&2; }
die() { printf '[image] error: %s\n' "$*" >&2; exit 1; }

# pack_initramfs DIR OUT: DIR as the kernel's initramfs format (newc cpio, gzip), byte for byte the same for the same
# files (sorted names, no timestamps in the archive or the gzip header); written to OUT.tmp, then renamed.
pack_initramfs() {
    local dir=$1 out=$2
    (cd "$dir" && find . -print0 | LC_ALL=C sort -z | cpio --null -o -H newc --quiet --reproducible) | gzip -9n > "$out.tmp"
    mv "$out.tmp" "$out"
}

# kernel_release PACKAGE: the kernel release a Debian kernel meta-package (the board's image.kernelPackage, e.g.
# linux-image-amd64) depends on.
kernel_release() {
    local meta=$1 pkg
    pkg=$(dpkg-query -W -f='${Depends}' "$meta" 2>/dev/null | grep -o 'linux-image-[0-9][^ ,]*' | head -n1) \
        || die "$meta is not installed (apt-get install $meta)"
    [ -n "$pkg" ] || die "$meta names no kernel package"
    echo "${pkg#linux-image-}"
}

# install_binary STAGE PATH: PATH and its libraries (ldd) into STAGE at the same paths.
install_binary() {
    local stage=$1 bin=$2 lib
    [ -x "$bin" ] || die "$bin is missing (see the package list in rootfs/rootfs.mk and APT_PACKAGES in the Makefile)"
    mkdir -p "$stage$(dirname "$bin")"
    cp -L "$bin" "$stage$bin"
    for lib in $(ldd "$bin" 2>/dev/null | grep -oE '/[^ ]+\.so[^ ]*' | sort -u); do
        install_library "$stage" "$lib"
    done
}

# install_binary_as STAGE SRC DEST: SRC (a build output) at DEST in STAGE, with its libraries.
install_binary_as() {
    local stage=$1 src=$2 dest=$3 lib
    [ -x "$src" ] || die "$src is missing"
    install -D -m 0755 "$src" "$stage$dest"
    for lib in $(ldd "$src" 2>/dev/null | grep -oE '/[^ ]+\.so[^ ]*' | sort -u); do
        install_library "$stage" "$lib"
    done
}

install_library() {
    local stage=$1 lib=$2
    [ -e "$stage$lib" ] && return 0
    [ -e "$lib" ] || die "library $lib is missing"
    mkdir -p "$stage$(dirname "$lib")"
    cp -L "$lib" "$stage$lib"
}

# install_modules STAGE KREL MODULE...: the modules and every dependency, plus modules.dep for modprobe.
install_modules() {
    local stage=$1 krel=$2; shift 2
    local m ko
    for m in "$@"; do
        for ko in $(modprobe -S "$krel" --show-depends "$m" 2>/dev/null | awk '$1 == "insmod" { print $2 }'); do
            mkdir -p "$stage$(dirname "$ko")"
            cp "$ko" "$stage$ko"
        done
        modprobe -S "$krel" --show-depends "$m" >/dev/null 2>&1 || die "kernel $krel has no module $m"
    done
    cp "/lib/modules/$krel/modules.order" "/lib/modules/$krel/modules.builtin" "/lib/modules/$krel/modules.builtin.modinfo" "$stage/lib/modules/$krel/" 2>/dev/null || true
    depmod -b "$stage" "$krel"
}

# busybox with a link for every applet.
install_busybox() {
    local stage=$1 applet
    mkdir -p "$stage/bin" "$stage/sbin" "$stage/usr/bin" "$stage/usr/sbin"
    cp /bin/busybox "$stage/bin/busybox"
    file -L /bin/busybox | grep -q 'statically linked' || die "/bin/busybox is not the static build (apt-get install busybox-static)"
    for applet in $(/bin/busybox --list-full); do
        [ -e "$stage/$applet" ] || ln -s /bin/busybox "$stage/$applet"
    done
}
