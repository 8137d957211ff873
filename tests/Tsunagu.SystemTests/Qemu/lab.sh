#!/bin/bash
# lab.sh: one unit of a QEMU board (its image's board.json; qemu-x86_64 unless IMAGE_DIR names another image)
# against the server of `make run` (run that first, in another terminal, after `make image`). It checks the server
# and its catalogue first, then gives the unit its own copy of the image under .tsunagu/lab (copied and burned under
# a temporary name, renamed when complete), its factory partition burned and registered (target pattern qemu-2);
# re-running reuses a burned copy.
set -euo pipefail
DEMO=${DEMO:-.tsunagu/demo}
LAB=${LAB_DIR:-.tsunagu/lab}
IMAGE_DIR=${IMAGE_DIR:-out/image/qemu-x86_64-debug}
PORT=${PORT:-8443}
MQTT_PORT=${MQTT_PORT:-1883}
MAC=${MAC:-52:54:00:12:34:56}
CLI=${CLI:?CLI: the tsunagu CLI (dll)}
for f in "$DEMO/operator-password" "$DEMO/release.pub" "$DEMO/server/keys/unit.key" "$DEMO/server/tls/server.pem"; do
    [ -f "$f" ] || { echo "lab: $f is missing: start the server with \`make run\` first" >&2; exit 2; }
done
[ -f "$IMAGE_DIR/disk.img" ] || { echo "lab: $IMAGE_DIR/disk.img is missing: run \`make image\`" >&2; exit 2; }
TARGET=qemu-2
tsunagu() {
    timeout 60 dotnet "$CLI" "$@" --server "https://127.0.0.1:$PORT/" --server-cert "$DEMO/server/tls/server.pem" --password "$(cat "$DEMO/operator-password")"
}
# The server and its catalogue first: nothing is copied or burned for a unit that could not provision.
if ! patterns=$(tsunagu pattern list --status verified 2>&1); then
    echo "lab: the server on https://127.0.0.1:$PORT/ did not answer (${patterns##*error: }); start it with \`make run\` in another terminal, with the same PORT" >&2
    exit 2
fi
if ! grep -q "\"id\": \"$TARGET\"" <<<"$patterns"; then
    echo "lab: the server has no verified pattern $TARGET: it was started before \`make image\` built the image; stop it (Ctrl-C) and start \`make run\` again" >&2
    exit 2
fi
mkdir -p "$LAB"
# A disk is reused only when it carries this unit's identity; an interrupted copy never got past disk.img.part.
if [ -f "$LAB/disk.img" ] && [ "${FRESH:-0}" != 1 ] && dotnet "$CLI" factory show --image "$LAB/disk.img" 2>/dev/null | grep -qx "mac $MAC"; then
    echo "lab: reusing $LAB/disk.img (FRESH=1 starts from a new image)"
else
    rm -f "$LAB/disk.img" "$LAB/disk.img.part"
    cp --sparse=always "$IMAGE_DIR/disk.img" "$LAB/disk.img.part"
    reimage=()
    tsunagu units show "$MAC" >/dev/null 2>&1 && reimage=(--reimage)
    tsunagu factory burn --image "$LAB/disk.img.part" --mac "$MAC" --serial LAB-0001 --hardware qemu-r1 --board "$(jq -r .name "$IMAGE_DIR/board.json")" \
        --provisional-method dhcp --isp-method dhcp --target "$TARGET" --bootstrap-url "https://10.0.2.100:$PORT/" \
        --unit-key "$DEMO/server/keys/unit.key" --release-public-key "$(cat "$DEMO/release.pub")" "${reimage[@]}"
    mv "$LAB/disk.img.part" "$LAB/disk.img"
fi
if [ -f "$IMAGE_DIR/hdd.img" ] && [ ! -f "$LAB/hdd.img" ]; then
    cp --sparse=always "$IMAGE_DIR/hdd.img" "$LAB/hdd.img.part" && mv "$LAB/hdd.img.part" "$LAB/hdd.img"
fi
cat <<MSG
lab: booting $MAC under TCG (about 5 s to the OS, then provisioning, the update to qemu-2 and a reboot).
     Watch: the console below (tsunagu-boot: lines, then the supervisor's transitions up to Ready);
            \`dotnet $CLI units list\` (the unit Ready on qemu-2); the service shell: socat - UNIX-CONNECT:$LAB/shell.sock
            QEMU monitor (LEDs, reset button: sendkey f12 6000): socat - UNIX-CONNECT:$LAB/monitor.sock
     Quit: Ctrl-A X.
MSG
DISK="$LAB/disk.img" HDD="$( [ -f "$LAB/hdd.img" ] && echo "$LAB/hdd.img")" IMAGE_DIR="$IMAGE_DIR" SERVER_PORT="$PORT" MQTT_PORT="$MQTT_PORT" \
    MAC="$MAC" RUN_DIR="$LAB" CONSOLE=stdio exec bash "$(dirname "$0")/qemu-run.sh"
