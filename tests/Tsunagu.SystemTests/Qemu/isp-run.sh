#!/bin/bash
# isp-run.sh: boots the ISP lab's access network guest (`make isp-lab-image`, image/isp/init) under TCG. Its access
# port listens on a QEMU socket link on loopback (a unit's WAN port connects to it: qemu-run.sh WAN_SOCKET); its
# uplink is QEMU user networking with restrict=on whose guestfwd takes 10.0.2.100:SERVER_PORT and :MQTT_PORT to the
# server on 127.0.0.1, so a unit reaches the server only through a PPPoE session and the ISP's NAT. The guest's shell
# is on its second serial port, the unix socket RUN_DIR/shell.sock (`socat - UNIX-CONNECT:RUN_DIR/shell.sock`).
# Sessions of ACCOUNTS (the subscriber ISP's) reach the server and the lab's "internet" (http://198.51.100.80/, in the
# guest, named www.lab.example by the lab's DNS server, 192.0.2.53, also in the guest); any other session (the
# provisioning access point's) reaches only the initial setting server (walled garden).
#
# Environment:
#   ACCESS_PORT   the loopback TCP port of the access link (the ISP listens)               required
#   ACCOUNTS      the accounts FreeRADIUS accepts, one "USER PASSWORD" a line              required
#   ISP_DIR       the `make isp-lab-image` output (vmlinuz, initrd.img)                    default out/isp-lab
#   SERVER_PORT   the server's HTTPS port on 127.0.0.1                                     default 8443
#   MQTT_PORT     the MQTT broker port on 127.0.0.1                                        default 1883
#   ACCESS_POINT_TOKEN  the server's AccessPointToken: FreeRADIUS asks the server for a unit's password when the
#                 accounts do not hold it (SERVER_CERT is then required)                   default: no lookups
#   SERVER_CERT   the server's certificate (PEM), the only one the lookups trust
#   IPOE          'on': the access port also carries IP straight (a fibre line's DHCP or static addressing): the
#                 ISP is 10.65.0.1/24 on it, hands out 10.65.0.100-119 by DHCP for 120 s (its router and the lab's
#                 DNS server), and that traffic reaches everything                         default: PPPoE only
#   SLOW_PORT     a second access port, a slow line kept for provisioning (the patent's variant 3), listening on
#                 this loopback TCP port (a unit's provisioning port connects to it: qemu-run.sh PROVISIONING_SOCKET):
#                 its own access concentrator (AC name tsunagu-lab-isp-slow) and session pool, what the unit sends
#                 on it policed to 16 kB/s; the same accounts and walled garden         default: none
#   RUN_DIR       where console.log (the guest's log), shell.sock and pppoe.conf go      default .
#   CONSOLE       'stdio' or 'file' (RUN_DIR/console.log)                                  default stdio
set -euo pipefail
: "${ACCESS_PORT:?ACCESS_PORT: the loopback port of the access link}"
: "${ACCOUNTS:?ACCOUNTS: the accounts the RADIUS server of the ISP accepts}"
ISP_DIR=${ISP_DIR:-out/isp-lab}
SERVER_PORT=${SERVER_PORT:-8443}
MQTT_PORT=${MQTT_PORT:-1883}
RUN_DIR=${RUN_DIR:-.}
CONSOLE=${CONSOLE:-stdio}
IPOE=${IPOE:-}
SLOW_PORT=${SLOW_PORT:-}
[ -z "$SLOW_PORT" ] || [[ $SLOW_PORT =~ ^[0-9]{1,5}$ ]] || { echo "isp-run: SLOW_PORT is a TCP port number, not '$SLOW_PORT'" >&2; exit 2; }
case "$IPOE" in '' | on) ;; *) echo "isp-run: IPOE is 'on' or empty, not '$IPOE'" >&2; exit 2 ;; esac
for f in "$ISP_DIR/vmlinuz" "$ISP_DIR/initrd.img" "$ACCOUNTS"; do
    [ -f "$f" ] || { echo "isp-run: $f is missing (make isp-lab-image)" >&2; exit 2; }
done
command -v socat >/dev/null || { echo "isp-run: socat is missing (apt-get install socat)" >&2; exit 2; }
mkdir -p "$RUN_DIR"
# the lab's "internet" web server (in the guest); sessions not of ACCOUNTS (the provisioning access point's) reach only
# the initial setting server, 10.0.2.100:SERVER_PORT (the walled garden)
INTERNET_IP=198.51.100.80
# the lab's DNS server (in the guest, given to every session): these names are the web server; the demo's standard
# services name it as their DNS upstream and ads.example and malware.example on their content filter, which the unit
# then refuses its LAN although the internet answers them
DNS_IP=192.0.2.53
INTERNET_NAMES="www.lab.example ads.example malware.example"
ACCESS_MAC=52:54:00:15:00:01
UPLINK_MAC=52:54:00:15:00:02
cat > "$RUN_DIR/pppoe.conf" <<CONF
ACCESS_MAC=$ACCESS_MAC
UPLINK_MAC=$UPLINK_MAC
AC_NAME=tsunagu-lab-isp
LOCAL_IP=10.64.0.1
POOL_START=10.64.0.10
POOL_SIZE=16
UPLINK_IP=10.0.2.15/24
UPLINK_GW=10.0.2.2
DNS=$DNS_IP
INTERNET_NAMES="$INTERNET_NAMES"
GARDEN_IP=10.0.2.100
GARDEN_PORT=$SERVER_PORT
INTERNET_IP=$INTERNET_IP
CONF
SLOW_MAC=52:54:00:15:00:03
if [ -n "$SLOW_PORT" ]; then
    printf 'SLOW_MAC=%s\nSLOW_POOL_START=10.64.0.40\nSLOW_POOL_SIZE=8\nSLOW_RATE_BYTES=16384\n' "$SLOW_MAC" >> "$RUN_DIR/pppoe.conf"
fi
if [ "$IPOE" = on ]; then
    printf 'IPOE_ADDRESS=10.65.0.1/24\nIPOE_RANGE=10.65.0.100,10.65.0.119\nIPOE_LEASE=120\n' >> "$RUN_DIR/pppoe.conf"
fi
fwd="guestfwd=tcp:10.0.2.100:$SERVER_PORT-cmd:socat - TCP:127.0.0.1:$SERVER_PORT"
fwd="$fwd,guestfwd=tcp:10.0.2.100:$MQTT_PORT-cmd:socat - TCP:127.0.0.1:$MQTT_PORT"
args=(
    -M pc -m 256 -smp 1 -display none -no-user-config -nodefaults
    -kernel "$ISP_DIR/vmlinuz" -initrd "$ISP_DIR/initrd.img" -append "console=ttyS0 panic=1 no_timer_check"
    -netdev "socket,id=access,listen=127.0.0.1:$ACCESS_PORT" -device "virtio-net-pci,netdev=access,mac=$ACCESS_MAC"
    -netdev "user,id=uplink,restrict=on,net=10.0.2.0/24,$fwd" -device "virtio-net-pci,netdev=uplink,mac=$UPLINK_MAC"
    -fw_cfg "name=opt/tsunagu/pppoe.conf,file=$RUN_DIR/pppoe.conf"
    -fw_cfg "name=opt/tsunagu/accounts,file=$ACCOUNTS"
)
if [ -n "${ACCESS_POINT_TOKEN:-}" ]; then
    [ -f "${SERVER_CERT:-}" ] || { echo "isp-run: SERVER_CERT (the server's certificate) is required with ACCESS_POINT_TOKEN" >&2; exit 2; }
    printf 'ACCESS_POINT_URL=https://10.0.2.100:%s\nACCESS_POINT_TOKEN=%s\n' "$SERVER_PORT" "$ACCESS_POINT_TOKEN" > "$RUN_DIR/access-point.conf"
    args+=(-fw_cfg "name=opt/tsunagu/access-point.conf,file=$RUN_DIR/access-point.conf" -fw_cfg "name=opt/tsunagu/server.pem,file=$SERVER_CERT")
fi
if [ -n "$SLOW_PORT" ]; then
    args+=(-netdev "socket,id=slow,listen=127.0.0.1:$SLOW_PORT" -device "virtio-net-pci,netdev=slow,mac=$SLOW_MAC")
fi
if [ "$CONSOLE" = stdio ]; then
    args+=(-serial mon:stdio)
else
    args+=(-serial "file:$RUN_DIR/console.log")
fi
args+=(-serial "unix:$RUN_DIR/shell.sock,server=on,wait=off")
exec qemu-system-x86_64 "${args[@]}"
