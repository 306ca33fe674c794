#!/bin/sh
# bench/storm: a boot storm of N simulated nodes (default 500) against
# netsan and against dnsmasq + tftpd-hpa + tgtd, then netsan alone with
# 1,000. Needs root, xfsprogs, dnsmasq-base, tftpd-hpa, tgt, ipxe. Prints a
# Markdown table; `make bench` builds ./netsan first.
set -e
cd "$(dirname "$0")/../.."
[ -x ./netsan ] || go build -o netsan ./cmd/netsan
go build -o "${TMPDIR:-/tmp}/netsan-bench-storm" ./bench/storm
exec "${TMPDIR:-/tmp}/netsan-bench-storm" -netsan ./netsan "$@"
