#!/bin/bash
# isp-lab.sh (`make lab LAB=isp`): the ISP lab (docs/lab.md) interactively, against the server of `make run` (run that
# first, in another terminal, after `make image`, `make isp-lab-image` and `make lan-pc-image`): the access network guest
# (isp-run.sh, console in RUN/isp/console.log), a LAN PC (lan-pc-run.sh, console in RUN/lan-pc/console.log) and one unit
# whose WAN port is a socket link to the guest (qemu-run.sh WAN_SOCKET) and whose LAN port is one to the PC (LAN_SOCKET;
# console here). The unit is burned with a PPPoE provisional link (its derived password: the guest's RADIUS asks the
# server, with the demo's access point token) and registered with the subscriber account the guest's ISP holds; it dials
# the provisioning access point (walled garden), fetches its settings, hangs up and dials the subscriber's ISP.
# The PC takes a lease from the unit's DHCP server once the unit's services run, and resolves names through the unit.
# Re-running reuses a burned copy while the server still knows the unit (lab-unit.sh; FRESH=1: a new one). Quit the unit
# with Ctrl-A X; the guests are stopped with it.
set -euo pipefail
DEMO=${DEMO:-.tsunagu/demo}
RUN=${ISP_LAB_RUN:-.tsunagu/isp-lab}
IMAGE_DIR=${IMAGE_DIR:-out/image/qemu-x86_64-debug}
ISP_DIR=${ISP_DIR:-out/isp-lab}
LAN_PC_DIR=${LAN_PC_DIR:-out/lan-pc}
PORT=${PORT:-8443}
MQTT_PORT=${MQTT_PORT:-1883}
ACCESS_PORT=${ACCESS_PORT:-18650}
LAN_PORT=${LAN_PORT:-18651}
MAC=${MAC:-52:54:00:12:34:57}
CLI=${CLI:?CLI: the tsunagu CLI (dll)}
SUBSCRIBER_USER=subscriber@isp.example
SUBSCRIBER_PASSWORD=lab-subscriber-0001
here=$(dirname "$0")
for f in "$DEMO/operator-password" "$DEMO/release.pub" "$DEMO/access-point-token" "$DEMO/server/keys/unit.key" "$DEMO/server/tls/server.pem"; do
    [ -f "$f" ] || { echo "isp-lab: $f is missing: start the server with \`make run\` first" >&2; exit 2; }
done
[ -f "$IMAGE_DIR/disk.img" ] || { echo "isp-lab: $IMAGE_DIR/disk.img is missing: run \`make image\`" >&2; exit 2; }
[ -f "$ISP_DIR/initrd.img" ] || { echo "isp-lab: $ISP_DIR/initrd.img is missing: run \`make isp-lab-image\`" >&2; exit 2; }
[ -f "$LAN_PC_DIR/initrd.img" ] || { echo "isp-lab: $LAN_PC_DIR/initrd.img is missing: run \`make lan-pc-image\`" >&2; exit 2; }
TARGET=qemu-2
NAME=isp-lab
. "$here/lab-unit.sh"
lab_check_server
mkdir -p "$RUN/isp" "$RUN/lan-pc"
# no provisional password: the factory derives it from the MAC with the operator's unit key
lab_unit_disk "$RUN" --serial ISP-LAB-0001 --hardware qemu-r1 --provisional-method pppoe \
    --isp-method pppoe --isp-user "$SUBSCRIBER_USER" --isp-password "$SUBSCRIBER_PASSWORD"
# the subscriber's ISP holds only the subscriber's account; the unit's factory account is looked up on the server
printf '%s %s\n' "$SUBSCRIBER_USER" "$SUBSCRIBER_PASSWORD" > "$RUN/isp/accounts"
rm -f "$RUN/isp/console.log"
ACCESS_PORT="$ACCESS_PORT" ACCOUNTS="$RUN/isp/accounts" ISP_DIR="$ISP_DIR" SERVER_PORT="$PORT" MQTT_PORT="$MQTT_PORT" \
    ACCESS_POINT_TOKEN="$(cat "$DEMO/access-point-token")" SERVER_CERT="$DEMO/server/tls/server.pem" RUN_DIR="$RUN/isp" CONSOLE=file \
    bash "$here/isp-run.sh" &
isp=$!
rm -f "$RUN/lan-pc/console.log"
LAN_PORT="$LAN_PORT" LAN_PC_DIR="$LAN_PC_DIR" RUN_DIR="$RUN/lan-pc" CONSOLE=file bash "$here/lan-pc-run.sh" &
pc=$!
trap 'kill "$isp" "$pc" 2>/dev/null || true; wait "$isp" "$pc" 2>/dev/null || true' EXIT
echo "isp-lab: booting the access network guest (console: $RUN/isp/console.log) and the LAN PC (console: $RUN/lan-pc/console.log) ..."
start=$SECONDS
until grep -q "isp: access concentrator" "$RUN/isp/console.log" 2>/dev/null && grep -q "lan-pc: up:" "$RUN/lan-pc/console.log" 2>/dev/null; do
    kill -0 "$isp" 2>/dev/null || { echo "isp-lab: the access network guest stopped; see $RUN/isp/console.log" >&2; exit 1; }
    kill -0 "$pc" 2>/dev/null || { echo "isp-lab: the LAN PC stopped; see $RUN/lan-pc/console.log" >&2; exit 1; }
    [ $((SECONDS - start)) -lt 300 ] || { echo "isp-lab: the access concentrator or the LAN PC not up after 300 s; see $RUN/isp/console.log and $RUN/lan-pc/console.log" >&2; exit 1; }
    sleep 1
done
cat <<MSG
isp-lab: access concentrator and LAN PC up after $((SECONDS - start)) s; booting $MAC under TCG, its WAN port on the access
     link 127.0.0.1:$ACCESS_PORT, its LAN port on the LAN PC's link 127.0.0.1:$LAN_PORT.
     Watch: the unit's console below: Boot --> Provisional (the PPPoE session to the provisioning access point),
            FetchSettings, Disconnect (hang-up, with a PADT), Main (the subscriber's account), HostSession, the update
            to $TARGET and its reboot, then --> Ready;
            the access network guest: tail -f $RUN/isp/console.log (radius: access point user=... status=200, Access-Accept,
            isp: session up ... access=garden, session down, then the subscriber's session up ... access=internet);
            \`dotnet $CLI units list\` (the unit Ready on $TARGET, its WAN address from the ISP's pool 10.64.0.10+);
            the LAN PC: tail -f $RUN/lan-pc/console.log (lan-pc: lease bound address=192.168.10.1xx/24 router=192.168.10.1
            once the unit's services run: the demo's standard services).
     Shells: the unit's socat - UNIX-CONNECT:$RUN/shell.sock (try: ip addr show ppp0; printf 'GET / HTTP/1.0\\r\\n\\r\\n' | nc 198.51.100.80 80)
             the guest's socat - UNIX-CONNECT:$RUN/isp/shell.sock (try: nft list ruleset)
             the LAN PC's socat - UNIX-CONNECT:$RUN/lan-pc/shell.sock (try: lan-pc-fetch http://www.lab.example/, the
               lab's web server by its name through the unit; lan-pc-fetch http://ads.example/, refused by the unit's
               content filter; nslookup ads.example 192.0.2.53, the lab's DNS server asked directly)
     Quit: Ctrl-A X (the access network guest and the LAN PC are stopped with the unit).
MSG
DISK="$RUN/disk.img" HDD="$( [ -f "$RUN/hdd.img" ] && echo "$RUN/hdd.img")" IMAGE_DIR="$IMAGE_DIR" SERVER_PORT="$PORT" MQTT_PORT="$MQTT_PORT" \
    MAC="$MAC" RUN_DIR="$RUN" CONSOLE="${CONSOLE:-stdio}" WAN_SOCKET="127.0.0.1:$ACCESS_PORT" LAN_SOCKET="127.0.0.1:$LAN_PORT" bash "$here/qemu-run.sh"
