#!/bin/bash
# mkfield.sh BOARD_JSON OUT OS_VERSION: the field image of OUT's disk image (docs/image.md, "Field reimage"): OUT/field/stick.img,
# a GPT disk for a USB stick with one partition named tsunagu-field, a squashfs holding OUT/disk.img and its manifest
# (the board, the OS in its slot A, the image's size, where its factory partition is, the digests of the bytes before and after
# it); the boot program that writes it (OUT/field/initrd.img, built by image.mk) boots with the board's kernel and
# command line. No loop devices or mounts.
. "$(dirname "$0")/lib.sh"

board=$1 out=$2 os=$3
[ -n "$os" ] || die "mkfield.sh: no OS version given (the one mkdisk.sh wrote into slot_a)"
[ -f "$board" ] || die "$board: no such board description"
disk=$out/disk.img
[ -f "$disk" ] || die "$disk is missing (make image BOARD=$(jq -r .name "$board"))"
field=$out/field
mkdir -p "$field"

mib=$((1024 * 1024))
bytes=$(stat -c %s "$disk")
[ $((bytes % mib)) -eq 0 ] || die "$disk is $bytes bytes, not whole MiB"
size=$((bytes / mib))
# factory's place in the image (sfdisk aligns every partition to 1 MiB)
read -r start sectors < <(sfdisk -J "$disk" | jq -r '.partitiontable.partitions[] | select(.name == "factory") | "\(.start) \(.size)"')
[ -n "${start:-}" ] || die "$disk has no partition named factory"
[ $((start % 2048)) -eq 0 ] && [ $((sectors % 2048)) -eq 0 ] || die "$disk: factory (sector $start, $sectors sectors) is not aligned to 1 MiB"
factory_start=$((start / 2048)) factory_size=$((sectors / 2048))
factory_end=$((factory_start + factory_size))
digest() { dd if="$disk" bs=1M skip="$1" count="$2" status=none | sha256sum | cut -d ' ' -f 1; }

stage=$out/stage/field-stick
rm -rf "$stage" && mkdir -p "$stage"
cp --sparse=always "$disk" "$stage/disk.img"
{
    echo "board=$(jq -r .name "$board")"
    echo "os=tsunagu-os $os"
    echo "size_mib=$size"
    echo "factory_start_mib=$factory_start"
    echo "factory_size_mib=$factory_size"
    echo "before_sha256=$(digest 0 "$factory_start")"
    echo "after_sha256=$(digest "$factory_end" $((size - factory_end)))"
} > "$stage/manifest"

say "  field stick: disk.img ($size MiB), factory at MiB $factory_start, kept on the unit"
rm -f "$field/partition.sqfs"
mksquashfs "$stage" "$field/partition.sqfs" -noappend -comp zstd -all-root -no-progress -quiet -no-recovery
part_mib=$(( ($(stat -c %s "$field/partition.sqfs") + mib - 1) / mib ))
tmp=$field/stick.img.tmp
rm -f "$tmp"
truncate -s $((part_mib + 2))M "$tmp"
printf 'label: gpt\nname=tsunagu-field, size=%sMiB\n' "$part_mib" | sfdisk --quiet --no-reread --no-tell-kernel "$tmp" >/dev/null
part_start=$(sfdisk -J "$tmp" | jq -r '.partitiontable.partitions[0].start')
dd if="$field/partition.sqfs" of="$tmp" bs=512 seek="$part_start" conv=notrunc status=none
rm -f "$field/partition.sqfs"
rm -rf "$stage"
mv "$tmp" "$field/stick.img"
say "  $field/stick.img: $((part_mib + 2)) MiB"
