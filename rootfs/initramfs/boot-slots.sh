# Tsunagu boot program: the choice of the OS slot, sourced by the initramfs `init` (installed as
# /lib/tsunagu/boot-slots.sh). Kept apart so unit tests run it on the host with fake dmsetup, dd and mount commands
# (tests/Tsunagu.UnitTests/Hal/BootSelectionTests.cs). What it uses from its caller: log MESSAGE, partition_device
# NAME (the device of a GPT partition, or failure), feed_watchdog; the variables BOOT_RUN (where error texts go,
# /run/tsunagu) and LOWER (where the chosen slot is mounted, /mnt/lower) may be set before it is sourced.
# shellcheck shell=sh

BOOT_RUN=${BOOT_RUN:-/run/tsunagu}
LOWER=${LOWER:-/mnt/lower}

# boot-state-begin (the functions below are the boot state model of hal/Tsunagu.Hal/BootSlots.cs; a unit test runs them)
STATE=${STATE:-/mnt/data/boot/state}
primary= pending= tries=0 a_version= a_good=0 b_version= b_good=0 last_failed= a_verity= b_verity=
EXTRA=

read_state() {
    local line key value seen=" "
    [ -f "$STATE" ] || return 0
    while IFS= read -r line || [ -n "$line" ]; do
        line=${line%"$CR"}
        key=${line%%=*}
        value=${line#*=}
        case "$line" in
            primary=*|pending=*|tries=*|a_version=*|a_good=*|b_version=*|b_good=*|last_failed=*|a_verity=*|b_verity=*)
                # the first line setting a key counts; later ones are dropped when the file is written again
                case "$seen" in *" $key "*) continue ;; esac
                seen="$seen$key " ;;
        esac
        case "$line" in
            primary=*) primary=$value ;; pending=*) pending=$value ;; tries=*) tries=$value ;;
            a_version=*) a_version=$value ;; a_good=*) a_good=$value ;;
            b_version=*) b_version=$value ;; b_good=*) b_good=$value ;;
            last_failed=*) last_failed=$value ;;
            a_verity=*) a_verity=$value ;; b_verity=*) b_verity=$value ;;
            '') ;;
            *) EXTRA="$EXTRA$line
" ;;
        esac
    done < "$STATE"
    case "$tries" in ''|*[!0-9]*) tries=0 ;; esac
    # slot names and flags reach `eval` (mark_bad, pick_slot): only the values the state can hold pass
    case "$primary" in a|b) ;; *) primary= ;; esac
    case "$pending" in a|b) ;; *) pending= ;; esac
    case "$last_failed" in a|b) ;; *) last_failed= ;; esac
    case "$a_good" in 1) ;; *) a_good=0 ;; esac
    case "$b_good" in 1) ;; *) b_good=0 ;; esac
}
CR=$(printf '\r')

write_state() {
    mkdir -p "${STATE%/*}"
    {
        echo "primary=$primary"; echo "pending=$pending"; echo "tries=$tries"
        echo "a_version=$a_version"; echo "a_good=$a_good"
        echo "b_version=$b_version"; echo "b_good=$b_good"
        echo "last_failed=$last_failed"
        echo "a_verity=$a_verity"; echo "b_verity=$b_verity"
        printf '%s' "$EXTRA"
    } > "$STATE.tmp"
    sync "$STATE.tmp" 2>/dev/null || sync
    mv "$STATE.tmp" "$STATE"
    sync
}

mark_bad() {
    eval "${1}_good=0"
    [ "$primary" = "$1" ] && primary=
    [ "$pending" = "$1" ] && { pending=; tries=0; }
    last_failed=$1
}

# pick_slot: SLOT becomes the slot to boot (a pending slot's try is counted; one out of tries is marked bad), or
# empty when no slot is good.
pick_slot() {
    SLOT=
    while :; do
        if [ -n "$pending" ] && [ "$tries" -gt 0 ]; then
            tries=$((tries - 1))
            SLOT=$pending
            log "trying slot $SLOT ($tries tries left after this one)"
        elif [ -n "$pending" ]; then
            log "slot $pending did not come up within its tries; marking it bad"
            mark_bad "$pending"
            continue
        elif [ -n "$primary" ] && [ "$(eval echo \$${primary}_good)" = 1 ]; then
            SLOT=$primary
        fi
        return 0
    done
}
# fall_back SLOT: after SLOT was marked bad, the other slot becomes the primary one when nothing else is chosen and it
# is good (else the recovery OS starts).
fall_back() {
    local other=a
    [ "$1" = a ] && other=b
    if [ -z "$primary" ] && [ -z "$pending" ] && [ "$(eval echo \$${other}_good)" = 1 ]; then
        primary=$other
        log "falling back to slot $other"
    fi
}
# boot-state-end

# verify_slot SLOT DEVICE: with the slot's dm-verity parameters in the boot state, maps DEVICE through the kernel's
# dm-verity target (/dev/mapper/verity-SLOT, read-only) and reads it once end to end, so a changed byte fails here
# rather than in the running OS; SLOTDEV becomes the mapping. Returns 0 when the slot is verified, 1 when its bytes are
# not the ones its root hash names (a read of the mapping fails), 2 when no mapping could be made (no parameters
# recorded, parameters the boot program cannot read, the dm-verity module missing, dmsetup failing): that says nothing
# about the slot's bytes, and the slot boots unverified with the supervisor told.
verify_slot() {
    local slot=$1 dev=$2 params blocks hash_start salt root start end
    params=$(eval echo \$${slot}_verity)
    if [ -z "$params" ]; then
        log "slot $slot has no dm-verity root hash recorded"
        return 2
    fi
    blocks=${params%%:*}; params=${params#*:}
    hash_start=${params%%:*}; params=${params#*:}
    salt=${params%%:*}; root=${params#*:}
    # the form BootSlots.SetVerity writes (decimal:decimal:hex:64 hex digits); anything else cannot be mapped
    case "$blocks" in ''|0*|*[!0-9]*) blocks= ;; esac
    case "$hash_start" in ''|0*|*[!0-9]*) hash_start= ;; esac
    case "$salt" in ''|*[!0-9a-f]*) salt= ;; esac
    case "$root" in *[!0-9a-f]*) root= ;; esac
    if [ -z "$blocks" ] || [ -z "$hash_start" ] || [ -z "$salt" ] || [ ${#root} -ne 64 ] || [ ${#blocks} -gt 16 ] || [ ${#hash_start} -gt 16 ]; then
        log "slot $slot: its dm-verity parameters '$(eval echo \$${slot}_verity)' are not DATA_BLOCKS:HASH_START_BLOCK:SALT:ROOT_HASH"
        return 2
    fi
    start=$(cut -d' ' -f1 /proc/uptime)
    if ! DM_DISABLE_UDEV=1 dmsetup create "verity-$slot" --readonly --noudevsync \
        --table "0 $((blocks * 8)) verity 1 $dev $dev 4096 4096 $blocks $hash_start sha256 $root $salt" 2>"$BOOT_RUN/verity.err"; then
        log "slot $slot: the dm-verity mapping could not be made: $(head -n 1 "$BOOT_RUN/verity.err")"
        DM_DISABLE_UDEV=1 dmsetup remove --noudevsync "verity-$slot" 2>/dev/null
        return 2
    fi
    if ! dd if="/dev/mapper/verity-$slot" of=/dev/null bs=1M 2>"$BOOT_RUN/verity.err"; then
        log "slot $slot fails verification (dm-verity, root hash $root): $(head -n 1 "$BOOT_RUN/verity.err")"
        DM_DISABLE_UDEV=1 dmsetup remove --noudevsync "verity-$slot" 2>/dev/null
        return 1
    fi
    end=$(cut -d' ' -f1 /proc/uptime)
    log "slot $slot verified (dm-verity, $blocks blocks, root hash $root) in $(awk -v s="$start" -v e="$end" 'BEGIN { printf "%.2f", e - s }') s"
    SLOTDEV=/dev/mapper/verity-$slot
    feed_watchdog
    return 0
}

# select_slot: with the boot state read (read_state), picks the slot to boot and mounts it read-only on LOWER. Sets
# SLOT and SLOTDEV (MODE stays slot), or MODE=recovery with REASON when no slot is good; VERITY_FAILED and
# VERITY_UNCHECKED collect the kernel command line tokens the supervisor reports (slots refused for their bytes, slots
# booted unverified because they have no root hash recorded or no dm-verity mapping could be made). Every change of the boot state is written first.
select_slot() {
    local verdict unchecked
    SLOT=
    while [ -z "$SLOT" ]; do
        unchecked=
        pick_slot
        if [ -z "$SLOT" ]; then
            MODE=recovery
            REASON="no good slot"
            return 0
        fi
        write_state
        SLOTDEV=$(partition_device "slot_$SLOT") || { log "no partition slot_$SLOT"; mark_bad "$SLOT"; fall_back "$SLOT"; SLOT=; write_state; continue; }
        verdict=0
        verify_slot "$SLOT" "$SLOTDEV" || verdict=$?
        if [ "$verdict" = 2 ]; then
            # no mapping (no root hash recorded, or none could be made) says nothing about the slot's bytes (the other
            # slot would fail the same way): the slot is not marked bad, it boots from its partition unverified and the
            # supervisor reports it (tsunagu.verity_unchecked=)
            log "slot $SLOT: booting it unverified (no dm-verity mapping); the slot stays good"
            unchecked=$SLOT
        elif [ "$verdict" != 0 ]; then
            # a slot whose bytes are not the ones its root hash names is never booted: marked bad, the other good slot
            # (or the recovery OS) boots, and the supervisor reports it (tsunagu.verity_failed= in boot-cmdline)
            mark_bad "$SLOT"
            VERITY_FAILED="$VERITY_FAILED tsunagu.verity_failed=$SLOT"
            fall_back "$SLOT"
            SLOT=; write_state
            continue
        fi
        if ! mount -t squashfs -o ro "$SLOTDEV" "$LOWER" 2>"$BOOT_RUN/slot.err"; then
            log "slot $SLOT ($SLOTDEV) does not mount: $(cat "$BOOT_RUN/slot.err")"
            # its mapping would hold the partition the next update writes
            case "$SLOTDEV" in /dev/mapper/*) DM_DISABLE_UDEV=1 dmsetup remove --noudevsync "verity-$SLOT" 2>/dev/null ;; esac
            mark_bad "$SLOT"
            fall_back "$SLOT"
            SLOT=; write_state
            continue
        fi
        # reported only for the slot that boots: one that then did not mount was not booted unverified
        if [ -n "$unchecked" ]; then VERITY_UNCHECKED="$VERITY_UNCHECKED tsunagu.verity_unchecked=$unchecked"; fi
    done
}
