#!/bin/sh
# bench/boot: diskless boot time, netsan vs dnsmasq + tgtd, 1 guest and a
# storm of 8 (QEMU under TCG; minutes). As root, from the repository root;
# `make bench` builds ./netsan first.
set -eu
cd "$(dirname "$0")/../.."
[ -x ./netsan ] || go build -o netsan ./cmd/netsan
exec go run ./bench/boot -netsan ./netsan -n "${RUNS:-3}" -storm "${STORM:-8}" "$@"
