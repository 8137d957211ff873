#!/bin/bash
# mkdisk.sh BOARD_JSON OUT OS_VERSION: OUT/disk.img (GPT, the board's partitions) and OUT/hdd.img when the board
# has a cache disk. Writes prom and slot_a (with its dm-verity hash tree), formats data with a boot state that boots
# slot_a and records its root hash; factory stays
# zero until `tsunagu factory burn`. No loop devices or mounts: file systems are built as files and copied in.
. "$(dirname "$0")/lib.sh"

board=$1 out=$2 os=$3
[ -f "$board" ] || die "$board: no such board description"
command -v jq >/dev/null || die "jq is not installed: the board description is read with it (apt-get install jq)"
jq -e '.partitions | length > 0' "$board" >/dev/null || die "$board: partitions: missing (the image needs the partition layout)"

for need in prom factory slot_a slot_b data; do
    jq -e --arg n "$need" '.partitions | map(.name) | index($n) != null' "$board" >/dev/null \
        || die "$board: partitions: no partition named '$need'"
done

total=2  # MiB: GPT headers at both ends and alignment
layout="label: gpt"$'\n'
while read -r name size; do
    [[ "$size" =~ ^[1-9][0-9]*$ ]] || die "$board: partitions.$name.sizeMiB: '$size' is not a positive whole number"
    layout+="name=$name, size=${size}MiB"$'\n'
    total=$((total + size))
done < <(jq -r '.partitions[] | "\(.name) \(.sizeMiB)"' "$board")

size_of() { jq -r --arg n "$1" '.partitions[] | select(.name == $n) | .sizeMiB' "$board"; }
check_fits() {
    local file=$1 part=$2 bytes limit
    bytes=$(stat -c %s "$file"); limit=$(( $(size_of "$part") * 1024 * 1024 ))
    [ "$bytes" -le "$limit" ] || die "$file ($bytes bytes) does not fit partition $part ($limit bytes); raise partitions.$part.sizeMiB in $board"
}
check_fits "$out/prom.sqfs" prom
check_fits "$out/os-$os.sqfs" slot_a

tmp="$out/disk.img.tmp"
rm -f "$tmp"
truncate -s "${total}M" "$tmp"
printf '%s' "$layout" | sfdisk --quiet --no-reread --no-tell-kernel "$tmp" >/dev/null

# start sector of partition NAME
start_of() { sfdisk -J "$tmp" | jq -r --arg n "$1" '.partitiontable.partitions[] | select(.name == $n) | .start'; }

write_part() {
    say "  $2 <- $(basename "$1") ($(( $(stat -c %s "$1") / 1024 )) KiB)"
    dd if="$1" of="$tmp" bs=512 seek="$(start_of "$2")" conv=notrunc,sparse status=none
}

# slot_a: the factory OS followed by its dm-verity hash tree (format 1, SHA-256, 4096-byte blocks, no superblock: the
# boot program maps the slot with the parameters the boot state records, a_verity)
command -v veritysetup >/dev/null || die "veritysetup is not installed: the OS slot's hash tree is built with it (apt-get install cryptsetup-bin)"
slot_image="$out/slot_a.img"
cp "$out/os-$os.sqfs" "$slot_image"
blocks=$(( ($(stat -c %s "$slot_image") + 4095) / 4096 ))
truncate -s $((blocks * 4096)) "$slot_image"
salt=$(head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n')
root=$(veritysetup format --no-superblock --hash=sha256 --data-block-size=4096 --hash-block-size=4096 --data-blocks="$blocks" \
    --hash-offset=$((blocks * 4096)) --salt="$salt" "$slot_image" "$slot_image" | sed -n 's/^Root hash:[[:space:]]*//p')
[[ "$root" =~ ^[0-9a-f]{64}$ ]] || die "veritysetup format gave no root hash for $slot_image"
verity="$blocks:$blocks:$salt:$root"
echo "$verity" > "$out/os-$os.verity"
check_fits "$slot_image" slot_a
say "  slot_a: OS $os, $blocks blocks, hash tree $(( $(stat -c %s "$slot_image") / 1024 - blocks * 4 )) KiB, root hash $root"

write_part "$out/prom.sqfs" prom
write_part "$slot_image" slot_a
rm -f "$slot_image"

# data: ext4 holding the boot state of a factory-fresh unit
rm -rf "$out/stage/data" && mkdir -p "$out/stage/data/boot"
printf 'primary=a\npending=\ntries=0\na_version=tsunagu-os %s\na_good=1\nb_version=\nb_good=0\nlast_failed=\na_verity=%s\nb_verity=\n' "$os" "$verity" \
    > "$out/stage/data/boot/state"
rm -f "$out/data.ext4"
mkfs.ext4 -q -F -L data -E root_owner=0:0 -d "$out/stage/data" "$out/data.ext4" "$(size_of data)M" >/dev/null
write_part "$out/data.ext4" data
rm -f "$out/data.ext4"
mv "$tmp" "$out/disk.img"

hdd=$(jq -r '.hddDisk.sizeMiB // empty' "$board")
if [ -n "$hdd" ]; then
    rm -f "$out/hdd.img"
    truncate -s "${hdd}M" "$out/hdd.img"
    say "  hdd.img: ${hdd} MiB (formatted by the unit on first boot)"
fi
