#!/bin/bash
# lab.sh: one unit of a QEMU board (its image's board.json; qemu-x86_64 unless IMAGE_DIR names another image)
# against the server of `make run` (run that first, in another terminal, after `make image`). It checks the server
# and its catalogue first, then gives the unit its own copy of the image under .tsunagu/lab (copied and burned under
# a temporary name, renamed when complete), its factory partition burned and registered (target pattern qemu-2);
# re-running reuses a burned copy while the server still knows the unit (lab-unit.sh).
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
NAME=lab
. "$(dirname "$0")/lab-unit.sh"
lab_check_server
lab_unit_disk "$LAB" --serial LAB-0001 --hardware qemu-r1 --provisional-method dhcp --isp-method dhcp
cat <<MSG
lab: booting $MAC under TCG (about 5 s to the OS, then provisioning, the update to qemu-2 and a reboot).
     Watch: the console below (tsunagu-boot: lines, then the supervisor's transitions up to Ready);
            \`dotnet $CLI units list\` (the unit Ready on qemu-2); the service shell: socat - UNIX-CONNECT:$LAB/shell.sock
            QEMU monitor (LEDs, reset button: sendkey f12 6000): socat - UNIX-CONNECT:$LAB/monitor.sock
     Quit: Ctrl-A X.
MSG
DISK="$LAB/disk.img" HDD="$( [ -f "$LAB/hdd.img" ] && echo "$LAB/hdd.img")" IMAGE_DIR="$IMAGE_DIR" SERVER_PORT="$PORT" MQTT_PORT="$MQTT_PORT" \
    MAC="$MAC" RUN_DIR="$LAB" CONSOLE=stdio exec bash "$(dirname "$0")/qemu-run.sh"
