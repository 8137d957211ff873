#!/bin/bash
# qemu-run.sh: boots one unit of a QEMU board under TCG: the QEMU program and machine come from the image's board.json
# (`qemu.command`, `qemu.args`, and `qemu.serviceConsole`: where the debug image's service shell is, `serial` for the
# second serial port (default) or `virtio` for a virtio console, hvc0, on a machine with one serial port). Networking is only QEMU user networking with restrict=on (no way out) and guestfwd to
# the server on 127.0.0.1: the unit reaches the server at 10.0.2.100.
#
# Environment:
#   DISK          the unit's disk image (factory burned; `tsunagu factory burn`)      required
#   IMAGE_DIR     the `make image` output (vmlinuz, initrd.img, board.json, and cmdline: the kernel command
#                 line of board/<name>/cmdline)                                        default out/image/qemu-x86_64-debug
#   HDD           the cache disk image (optional)
#   SERVER_PORT   the server's HTTPS port on 127.0.0.1 (the unit uses 10.0.2.100:SAME) default 8443
#   MQTT_PORT     the MQTT broker port on 127.0.0.1                                    default 1883
#   MAC           the WAN interface's MAC (the unit's identity)                        default 52:54:00:12:34:56
#   RUN_DIR       where console.log, monitor.sock (QEMU monitor) and shell.sock (the service shell) go
#   CONSOLE       'stdio' (interactive; Ctrl-A X quits) or 'file' (RUN_DIR/console.log) default stdio
#   MEMORY        guest RAM in MiB                                                     default 512
#   WAN_SOCKET    instead of user networking, the WAN port is a QEMU socket link to this loopback 127.X.X.X:PORT (the
#                 ISP lab's access network guest listens there: isp-run.sh); the unit then reaches the server only
#                 through that guest (PPPoE)
#   LAN_SOCKET    the LAN port is a QEMU socket link to this loopback 127.X.X.X:PORT (the ISP lab's LAN PC listens there:
#                 lan-pc-run.sh); several, separated by blanks: the LAN port and a link to each are ports of one QEMU
#                 hub, a switch with every PC on it; without it the LAN port is linked to nothing
#   PROVISIONING_SOCKET  a third port (eth2, after the WAN and LAN ports), a QEMU socket link to this loopback
#                 127.X.X.X:PORT: the second WAN port of a board variant that keeps one for provisioning (the ISP lab's
#                 slow line: isp-run.sh SLOW_PORT); with BOARD_VARIANT naming that variant
#   BOARD_VARIANT the board variant the unit is (board/<name>/variants/<variant>.json in the image): the kernel
#                 command line gets tsunagu.board=<variant>                                  default: the board itself
#   STICK         a USB stick's disk image (the field image's stick.img, docs/image.md), plugged into the unit's USB
#                 port (an xHCI controller) read-only; boot it with IMAGE_DIR naming the field image's boot files
#   START_PAUSED  '1': QEMU starts with the CPU stopped (-S), for the monitor to set things first (set_link wan off);
#                 the monitor's `cont` starts it
set -euo pipefail
: "${DISK:?DISK: the disk image of the unit}"
IMAGE_DIR=${IMAGE_DIR:-out/image/qemu-x86_64-debug}
SERVER_PORT=${SERVER_PORT:-8443}
MQTT_PORT=${MQTT_PORT:-1883}
MAC=${MAC:-52:54:00:12:34:56}
RUN_DIR=${RUN_DIR:-$(dirname "$DISK")}
CONSOLE=${CONSOLE:-stdio}
MEMORY=${MEMORY:-512}
# the socket links stay on loopback: anything else would put the unit's port on a real network
# every blank-separated word (newlines too: each is checked below, none is dropped); read -d '' ends at the input's end
read -r -d '' -a lan_sockets <<< "${LAN_SOCKET:-}" || true
[ "${#lan_sockets[@]}" -le 8 ] || { echo "qemu-run: LAN_SOCKET names ${#lan_sockets[@]} links; at most 8" >&2; exit 2; }
for link in WAN_SOCKET LAN_SOCKET PROVISIONING_SOCKET; do
    if [ "$link" = LAN_SOCKET ]; then values=("${lan_sockets[@]}"); else values=("${!link:-}"); fi
    for value in "${values[@]}"; do
        if [ -n "$value" ] && ! [[ $value =~ ^127\.[0-9]{1,3}\.[0-9]{1,3}\.[0-9]{1,3}:[0-9]{1,5}$ ]]; then
            echo "qemu-run: $link='$value' is not a loopback address 127.X.X.X:PORT (the lab's links stay on this machine)" >&2
            exit 2
        fi
    done
done
for f in "$DISK" ${STICK:+"$STICK"} "$IMAGE_DIR/vmlinuz" "$IMAGE_DIR/initrd.img" "$IMAGE_DIR/cmdline" "$IMAGE_DIR/board.json"; do
    [ -f "$f" ] || { echo "qemu-run: $f is missing (make image)" >&2; exit 2; }
done
command -v socat >/dev/null || { echo "qemu-run: socat is missing (apt-get install socat); guestfwd uses it per connection" >&2; exit 2; }
command -v jq >/dev/null || { echo "qemu-run: jq is missing (apt-get install jq); the QEMU machine is read from board.json with it" >&2; exit 2; }
QEMU=$(jq -r '.qemu.command // empty' "$IMAGE_DIR/board.json")
[ -n "$QEMU" ] || { echo "qemu-run: $IMAGE_DIR/board.json: qemu.command: missing (this board is not a QEMU machine)" >&2; exit 2; }
mapfile -t machine < <(jq -r '.qemu.args // [] | .[]' "$IMAGE_DIR/board.json")
SHELL_PORT=$(jq -r '.qemu.serviceConsole // "serial"' "$IMAGE_DIR/board.json")
CMDLINE=$(tr -s '\n' ' ' < "$IMAGE_DIR/cmdline")
if [ -n "${BOARD_VARIANT:-}" ]; then
    [[ $BOARD_VARIANT =~ ^[a-z0-9]([a-z0-9-]{0,30}[a-z0-9])?$ ]] || { echo "qemu-run: BOARD_VARIANT='$BOARD_VARIANT' is not a variant's name (lower-case letters, digits, inner '-')" >&2; exit 2; }
    CMDLINE="${CMDLINE% } tsunagu.board=$BOARD_VARIANT"
fi
case "${START_PAUSED:-}" in '' | 0 | 1) ;; *) echo "qemu-run: START_PAUSED is 1, 0 or empty, not '$START_PAUSED'" >&2; exit 2 ;; esac
mkdir -p "$RUN_DIR"
rm -f "$RUN_DIR/monitor.sock" "$RUN_DIR/shell.sock"

fwd="guestfwd=tcp:10.0.2.100:$SERVER_PORT-cmd:socat - TCP:127.0.0.1:$SERVER_PORT"
fwd="$fwd,guestfwd=tcp:10.0.2.100:$MQTT_PORT-cmd:socat - TCP:127.0.0.1:$MQTT_PORT"
args=(
    "${machine[@]}" -m "$MEMORY" -smp 1 -display none -no-user-config -nodefaults
    -kernel "$IMAGE_DIR/vmlinuz" -initrd "$IMAGE_DIR/initrd.img"
    -append "${CMDLINE% }"
    -drive "file=$DISK,if=virtio,format=raw,cache=unsafe"
    -device "virtio-net-pci,netdev=wan,mac=$MAC"
    -device virtio-net-pci,netdev=lan,mac=52:54:00:ff:00:01
    -monitor "unix:$RUN_DIR/monitor.sock,server=on,wait=off"
)
if [ -n "${WAN_SOCKET:-}" ]; then
    args+=(-netdev "socket,id=wan,connect=$WAN_SOCKET")
else
    args+=(-netdev "user,id=wan,restrict=on,net=10.0.2.0/24,$fwd")
fi
if [ "${#lan_sockets[@]}" -eq 1 ]; then
    args+=(-netdev "socket,id=lan,connect=${lan_sockets[0]}")
elif [ "${#lan_sockets[@]}" -gt 1 ]; then
    # a switch: the LAN port and each link are ports of hub 2
    args+=(-netdev hubport,id=lan,hubid=2)
    for i in "${!lan_sockets[@]}"; do
        args+=(-netdev "socket,id=lanpc$i,connect=${lan_sockets[$i]}" -netdev "hubport,id=lanhub$i,hubid=2,netdev=lanpc$i")
    done
else
    args+=(-netdev hubport,id=lan,hubid=1)
fi
if [ -n "${PROVISIONING_SOCKET:-}" ]; then
    # after the WAN and LAN ports on the bus: eth2
    args+=(-device virtio-net-pci,netdev=provisioning,mac=52:54:00:ff:00:02 -netdev "socket,id=provisioning,connect=$PROVISIONING_SOCKET")
fi
[ "${START_PAUSED:-}" = 1 ] && args+=(-S)
[ -n "${HDD:-}" ] && args+=(-drive "file=$HDD,if=virtio,format=raw,cache=unsafe")
[ -n "${STICK:-}" ] && args+=(-device qemu-xhci,id=usb -drive "file=$STICK,if=none,id=stick,format=raw,readonly=on"
                              -device usb-storage,bus=usb.0,drive=stick,removable=on)
if [ "$CONSOLE" = stdio ]; then
    args+=(-serial mon:stdio)
else
    args+=(-serial "file:$RUN_DIR/console.log")
fi
case "$SHELL_PORT" in
    serial) args+=(-serial "unix:$RUN_DIR/shell.sock,server=on,wait=off") ;;
    virtio) args+=(-device virtio-serial-pci -chardev "socket,id=shell,path=$RUN_DIR/shell.sock,server=on,wait=off"
                   -device virtconsole,chardev=shell) ;;
    *) echo "qemu-run: $IMAGE_DIR/board.json: qemu.serviceConsole: '$SHELL_PORT' is neither serial nor virtio" >&2; exit 2 ;;
esac
exec "$QEMU" "${args[@]}"
