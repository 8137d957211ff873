# Functions shared by the image build steps (sourced, not run). Everything comes from installed Debian packages:
# busybox-static, the board's Debian kernel (board.json image.kernelPackage) and its modules, nftables, dnsmasq, wireguard-tools, e2fsprogs,
# libssl3. `install_binary` copies an executable with the shared libraries `ldd` resolves for it.
#
# IMAGE_ROOT (empty: the host's own packages) is a foreign architecture's unpacked packages (image/sysroot.sh):
# binaries, libraries and modules are then read below it, the libraries a binary needs are found from its ELF
# headers (readelf: interpreter and NEEDED, searched in IMAGE_LIBRARY_DIR, its /lib twin, /lib and /usr/lib) since
# ldd cannot run a foreign binary, and busybox's applet list is the host's busybox-static's (same Debian release).
IMAGE_ROOT=${IMAGE_ROOT:-}
IMAGE_LIBRARY_DIR=${IMAGE_LIBRARY_DIR:-}

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
    if [ -n "$IMAGE_ROOT" ]; then
        [ -s "$IMAGE_ROOT/kernel-release" ] || die "$IMAGE_ROOT/kernel-release is missing (image/sysroot.sh unpacks $meta there)"
        cat "$IMAGE_ROOT/kernel-release"; return
    fi
    pkg=$(dpkg-query -W -f='${Depends}' "$meta" 2>/dev/null | grep -o 'linux-image-[0-9][^ ,]*' | head -n1) \
        || die "$meta is not installed (apt-get install $meta)"
    [ -n "$pkg" ] || die "$meta names no kernel package"
    echo "${pkg#linux-image-}"
}

# in_root PATH: where PATH of the board's file system is on this host: PATH itself, or under IMAGE_ROOT with its
# symbolic links followed inside IMAGE_ROOT (a link may be absolute: /lib/ld-linux-aarch64.so.1)
in_root() {
    local path=$1 target n=0
    [ -n "$IMAGE_ROOT" ] || { echo "$path"; return; }
    while [ -L "$IMAGE_ROOT$path" ]; do
        target=$(readlink "$IMAGE_ROOT$path")
        case "$target" in /*) path=$target ;; *) path=$(realpath -m -s "$(dirname "$path")/$target") ;; esac
        n=$((n + 1)); [ "$n" -lt 20 ] || die "$IMAGE_ROOT$1: too many symbolic links"
    done
    echo "$IMAGE_ROOT$path"
}

# libraries_of FILE: the shared libraries FILE (a path on this host) needs, as paths of the board's file system
libraries_of() {
    local file=$1
    if [ -z "$IMAGE_ROOT" ]; then
        ldd "$file" 2>/dev/null | grep -oE '/[^ ]+\.so[^ ]*' | sort -u
        return
    fi
    local -A seen=()
    local queue=("$file") f name dir found interp
    interp=$(readelf -l "$file" 2>/dev/null | sed -n 's/.*Requesting program interpreter: \(.*\)]/\1/p')
    [ -z "$interp" ] || echo "$interp"
    while [ "${#queue[@]}" -gt 0 ]; do
        f=${queue[0]}; queue=("${queue[@]:1}")
        for name in $(readelf -d "$f" 2>/dev/null | sed -n 's/.*(NEEDED).*\[\(.*\)\]/\1/p'); do
            [ -z "${seen[$name]:-}" ] || continue
            seen[$name]=1
            found=
            for dir in "$IMAGE_LIBRARY_DIR" "${IMAGE_LIBRARY_DIR#/usr}" /lib /usr/lib; do
                if [ -n "$dir" ] && [ -e "$(in_root "$dir/$name")" ]; then found=$dir/$name; break; fi
            done
            [ -n "$found" ] || die "$f needs $name, which is in none of the board's library directories under $IMAGE_ROOT"
            echo "$found"
            queue+=("$(in_root "$found")")
        done
    done | sort -u
}

# install_binary STAGE PATH: PATH and its libraries (ldd) into STAGE at the same paths.
install_binary() {
    local stage=$1 bin=$2 lib src libs
    src=$(in_root "$bin")
    [ -x "$src" ] || die "$src is missing (see the package list in rootfs/rootfs.mk and APT_PACKAGES in the Makefile)"
    mkdir -p "$stage$(dirname "$bin")"
    cp -L "$src" "$stage$bin"
    libs=$(libraries_of "$src")
    for lib in $libs; do
        install_library "$stage" "$lib"
    done
}

# install_binary_as STAGE SRC DEST: SRC (a build output) at DEST in STAGE, with its libraries.
install_binary_as() {
    local stage=$1 src=$2 dest=$3 lib libs
    [ -x "$src" ] || die "$src is missing"
    install -D -m 0755 "$src" "$stage$dest"
    libs=$(libraries_of "$src")
    for lib in $libs; do
        install_library "$stage" "$lib"
    done
}

# install_plugin STAGE PATH: a library loaded at run time (a daemon's module) and the libraries it links, at the same paths.
install_plugin() {
    local stage=$1 plugin=$2 src lib
    src=$(in_root "$plugin")
    [ -e "$src" ] || die "$src is missing (see the package list in rootfs/rootfs.mk and APT_PACKAGES in the Makefile)"
    install_library "$stage" "$plugin"
    for lib in $(libraries_of "$src"); do
        install_library "$stage" "$lib"
    done
}

install_library() {
    local stage=$1 lib=$2 src
    [ -e "$stage$lib" ] && return 0
    src=$(in_root "$lib")
    [ -e "$src" ] || die "library $src is missing"
    mkdir -p "$stage$(dirname "$lib")"
    cp -L "$src" "$stage$lib"
}

# install_modules STAGE KREL MODULE...: the modules and every dependency, plus modules.dep for modprobe.
install_modules() {
    local stage=$1 krel=$2; shift 2
    local m ko base=${IMAGE_ROOT:-/}
    for m in "$@"; do
        for ko in $(modprobe -d "$base" -S "$krel" --show-depends "$m" 2>/dev/null | awk '$1 == "insmod" { print $2 }'); do
            ko=${ko#"$IMAGE_ROOT"}
            mkdir -p "$stage$(dirname "$ko")"
            cp "$IMAGE_ROOT$ko" "$stage$ko"
        done
        modprobe -d "$base" -S "$krel" --show-depends "$m" >/dev/null 2>&1 || die "kernel $krel has no module $m"
    done
    local mods=$IMAGE_ROOT/lib/modules/$krel
    cp "$mods/modules.order" "$mods/modules.builtin" "$mods/modules.builtin.modinfo" "$stage/lib/modules/$krel/" 2>/dev/null || true
    depmod -b "$stage" "$krel"
}

# busybox with a link for every applet.
install_busybox() {
    local stage=$1 applet
    mkdir -p "$stage/bin" "$stage/sbin" "$stage/usr/bin" "$stage/usr/sbin"
    cp "$(in_root /bin/busybox)" "$stage/bin/busybox"
    file -L "$(in_root /bin/busybox)" | grep -q 'statically linked' || die "$(in_root /bin/busybox) is not the static build (apt-get install busybox-static)"
    for applet in $(/bin/busybox --list-full); do
        [ -e "$stage/$applet" ] || ln -s /bin/busybox "$stage/$applet"
    done
}
