#!/bin/bash
# lan-pc-run.sh: boots the ISP lab's LAN PC guest (`make lan-pc-image`, image/lan-pc/init) under TCG. Its one network
# port listens on a QEMU socket link on loopback: a unit's LAN port connects to it (qemu-run.sh LAN_SOCKET), so the PC
# has no network but the unit's LAN. It asks the unit's DHCP server for a lease until it gets one and logs it on its
# console (`lan-pc: lease bound address=... router=... dns=...`). Its shell is on its second serial port, the unix socket
# RUN_DIR/shell.sock (`socat - UNIX-CONNECT:RUN_DIR/shell.sock`; try lan-pc-fetch http://www.lab.example/).
#
# Environment:
#   LAN_PORT      the loopback TCP port of the LAN link (the PC listens)                  required
#   LAN_PC_DIR    the `make lan-pc-image` output (vmlinuz, initrd.img)                     default out/lan-pc
#   MAC           the PC's MAC                                                             default 52:54:00:1a:00:01
#   RUN_DIR       where console.log (the guest's log) and shell.sock go                    default .
#   CONSOLE       'stdio' or 'file' (RUN_DIR/console.log)                                  default stdio
set -euo pipefail
: "${LAN_PORT:?LAN_PORT: the loopback port of the LAN link}"
LAN_PC_DIR=${LAN_PC_DIR:-out/lan-pc}
MAC=${MAC:-52:54:00:1a:00:01}
RUN_DIR=${RUN_DIR:-.}
CONSOLE=${CONSOLE:-stdio}
for f in "$LAN_PC_DIR/vmlinuz" "$LAN_PC_DIR/initrd.img"; do
    [ -f "$f" ] || { echo "lan-pc-run: $f is missing (make lan-pc-image)" >&2; exit 2; }
done
mkdir -p "$RUN_DIR"
rm -f "$RUN_DIR/shell.sock"
args=(
    -M pc -m 128 -smp 1 -display none -no-user-config -nodefaults
    -kernel "$LAN_PC_DIR/vmlinuz" -initrd "$LAN_PC_DIR/initrd.img" -append "console=ttyS0 panic=1 no_timer_check quiet"
    -netdev "socket,id=lan,listen=127.0.0.1:$LAN_PORT" -device "virtio-net-pci,netdev=lan,mac=$MAC"
)
if [ "$CONSOLE" = stdio ]; then
    args+=(-serial mon:stdio)
else
    args+=(-serial "file:$RUN_DIR/console.log")
fi
args+=(-serial "unix:$RUN_DIR/shell.sock,server=on,wait=off")
exec qemu-system-x86_64 "${args[@]}"
