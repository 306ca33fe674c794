#!/bin/sh
# bench/boot: diskless boot time, netsan vs dnsmasq + tgtd, BIOS and UEFI
# guests, 1 guest (RUNS runs) and a storm of STORM (QEMU under TCG; minutes).
# As root, from the repository root; `make bench` builds ./netsan first.
set -eu
cd "$(dirname "$0")/../.."
[ -x ./netsan ] || go build -o netsan ./cmd/netsan
exec go run ./bench/boot -netsan ./netsan -n "${RUNS:-3}" -storm "${STORM:-8}" -firmware "${FIRMWARE:-bios,uefi}" "$@"
