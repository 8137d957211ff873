#!/bin/bash
# board-variant.sh BOARD_JSON VARIANT_JSON: the board description of one variant of a board (board/<name>/variants/
# <variant>.json), for /etc/tsunagu/boards/<variant>.json of every OS image: the board's board.json with the variant's
# `interfaces` in place of its own. A variant is the same board with other ports (the dual-WAN model keeping a
# second port for provisioning): the same image, name, partitions and devices, so it may hold `interfaces` and nothing
# else. The unit picks it by the kernel command line's tsunagu.board=<variant> (rootfs tsunagud-run).
. "$(dirname "$0")/lib.sh"

board=$1 variant=$2
[ -f "$board" ] || die "$board: no such board description"
[ -f "$variant" ] || die "$variant: no such board variant"
command -v jq >/dev/null || die "jq is not installed: the board description is read with it (apt-get install jq)"
name=$(basename "$variant" .json)
[[ "$name" =~ ^[a-z0-9]([a-z0-9-]{0,30}[a-z0-9])?$ ]] || die "$variant: a variant's file name is 1-32 lower-case letters, digits and inner '-', then .json"
keys=$(jq -r 'if type == "object" then keys | join(" ") else error("not a JSON object") end' "$variant") || die "$variant: not a JSON object"
[ "$keys" = interfaces ] || die "$variant: a variant holds only \"interfaces\" (it has: ${keys:-nothing})"
# every port named, and no other key: a misspelt one (provisoningWan) would be ignored by the board's reader and make a
# "variant" that is the board itself
jq -e '.interfaces | type == "object" and (.wan | type == "string") and (.lan | type == "string") and (.vpn | type == "string")
    and (keys - ["wan", "lan", "vpn", "provisioningWan"] | length == 0) and ((.provisioningWan // "") | type == "string")' "$variant" > /dev/null \
    || die "$variant: interfaces: an object with wan, lan and vpn and optionally provisioningWan (strings) and nothing else, as in board.json"
jq --slurpfile v "$variant" '.interfaces = $v[0].interfaces' "$board" || die "$board: unreadable"
