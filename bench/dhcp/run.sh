#!/bin/sh
# netsan dhcpd vs dnsmasq: 2,000 simulated clients doing DORA, in namespaces.
# Needs root and dnsmasq (Debian: dnsmasq-base). Prints a Markdown table.
set -e
cd "$(dirname "$0")/../.."
go build -o "${TMPDIR:-/tmp}/netsan-bench-dhcp" ./bench/dhcp
exec "${TMPDIR:-/tmp}/netsan-bench-dhcp" "$@"
