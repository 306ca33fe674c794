#!/bin/sh
# netsan's iSCSI target vs tgtd, side by side on loopback, each over a 1 GiB
# sparse image: iscsi-perf random/sequential reads, qemu-img bench writes.
# Needs root, libiscsi-bin (iscsi-perf), qemu-utils + qemu-block-extra, tgt.
# Prints a Markdown table; -cpuprofile FILE profiles netsan's side.
set -e
cd "$(dirname "$0")/../.."
go build -o "${TMPDIR:-/tmp}/netsan-bench-iscsi" ./bench/iscsi
exec "${TMPDIR:-/tmp}/netsan-bench-iscsi" "$@"
