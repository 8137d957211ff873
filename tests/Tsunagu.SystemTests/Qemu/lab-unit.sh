#!/bin/bash
# lab-unit.sh: sourced by lab.sh and isp-lab.sh (`make lab`, `make lab LAB=isp`): the checks of the server of `make run`
# and the unit's disk, shared by both labs. The caller sets NAME (its name in messages), DEMO, PORT, CLI, IMAGE_DIR,
# TARGET and MAC, and defines nothing else these functions use.

# The operator CLI against the server of `make run`.
tsunagu() {
    timeout 60 dotnet "$CLI" "$@" --server "https://127.0.0.1:$PORT/" --server-cert "$DEMO/server/tls/server.pem" --password "$(cat "$DEMO/operator-password")"
}

# The server answers and its catalogue holds the verified pattern TARGET: nothing is copied or burned for a unit that
# could not provision.
lab_check_server() {
    local patterns
    if ! patterns=$(tsunagu pattern list --status verified 2>&1); then
        echo "$NAME: the server on https://127.0.0.1:$PORT/ did not answer (${patterns##*error: }); start it with \`make run\` in another terminal, with the same PORT" >&2
        exit 2
    fi
    if ! grep -q "\"id\": \"$TARGET\"" <<<"$patterns"; then
        echo "$NAME: the server has no verified pattern $TARGET: it was started before \`make image\` built the image; stop it (Ctrl-C) and start \`make run\` again" >&2
        exit 2
    fi
}

# What the server knows of unit MAC: "known" (registered, not decommissioned), "unknown" (the server answered 404:
# never registered, or the server's data was removed since the disk was burned) or "decommissioned". Any other failure
# (no answer, a timeout, a 5xx) is not taken as "unknown": it stops the lab (exit 2) before a disk is touched.
lab_unit_on_server() {
    local unit error
    error=$(mktemp)
    if ! unit=$(tsunagu units show "$MAC" 2>"$error"); then
        if grep -q ': 404 ' "$error"; then
            rm -f "$error"
            echo unknown
            return 0
        fi
        echo "$NAME: cannot ask the server on https://127.0.0.1:$PORT/ about unit $MAC ($(tail -n 1 "$error")); nothing was changed" >&2
        rm -f "$error"
        exit 2
    fi
    rm -f "$error"
    if jq -e '.state == "Decommissioned"' <<<"$unit" >/dev/null 2>&1; then
        echo decommissioned
    else
        echo known
    fi
}

# The unit's disk RUN/disk.img (and RUN/hdd.img when the board has a cache disk). A burned disk is reused only when it
# carries this unit's identity and the server still knows the unit (its data may have been removed since: a unit the
# server does not know is refused, and would never provision); otherwise a fresh copy of the image is burned (under a
# temporary name, renamed when complete: an interrupted copy never becomes disk.img) and the unit registered, or
# written again (--reimage) when the server knows it. Arguments: RUN, then the burn's own options (serial, links, ...).
lab_unit_disk() {
    local run=$1
    shift
    local server
    server=$(lab_unit_on_server) || exit $?
    if [ "$server" = decommissioned ]; then
        echo "$NAME: the server has unit $MAC decommissioned: it would be refused; start the lab with another MAC=..." >&2
        exit 2
    fi
    mkdir -p "$run"
    # the identity is read whole before it is matched: `grep -q` leaving a pipe early would fail it under pipefail and
    # burn a good disk again
    if [ -f "$run/disk.img" ] && [ "${FRESH:-0}" != 1 ] && [ "$server" = known ] \
        && ident=$(dotnet "$CLI" factory show --image "$run/disk.img" 2>/dev/null) && printf '%s\n' "$ident" | grep -qx "mac $MAC"; then
        echo "$NAME: reusing $run/disk.img (FRESH=1 starts from a new image)"
    else
        if [ -f "$run/disk.img" ] && [ "$server" = unknown ]; then
            echo "$NAME: the server does not know $MAC (its data was removed since $run/disk.img was burned): burning a new disk"
        fi
        # the old disk is replaced only by a complete, burned new one: a copy or burn that fails leaves it as it was
        rm -f "$run/disk.img.part"
        cp --sparse=always "$IMAGE_DIR/disk.img" "$run/disk.img.part"
        local reimage=()
        [ "$server" = known ] && reimage=(--reimage)
        if ! tsunagu factory burn --image "$run/disk.img.part" --mac "$MAC" --board "$(jq -r .name "$IMAGE_DIR/board.json")" \
            --target "$TARGET" --bootstrap-url "https://10.0.2.100:$PORT/" \
            --unit-key "$DEMO/server/keys/unit.key" --release-public-key "$(cat "$DEMO/release.pub")" "$@" "${reimage[@]}"; then
            rm -f "$run/disk.img.part"
            echo "$NAME: the burn of a new disk for $MAC failed (above); $run/disk.img was left as it was" >&2
            exit 1
        fi
        mv "$run/disk.img.part" "$run/disk.img"
    fi
    if [ -f "$IMAGE_DIR/hdd.img" ] && [ ! -f "$run/hdd.img" ]; then
        cp --sparse=always "$IMAGE_DIR/hdd.img" "$run/hdd.img.part" && mv "$run/hdd.img.part" "$run/hdd.img"
    fi
}
