#!/bin/sh
# netsan's RBD store vs tgtd's (tgt-rbd), each over an RBD image in one
# single-node Ceph cluster (memstore) started for the run, with `rbd bench`
# at the same depth as the cluster's own ceiling. The same program as
# bench/iscsi, built with Ceph. Needs root, the packages of make deps-ceph,
# tgt-rbd, libiscsi-bin and qemu-utils + qemu-block-extra.
set -e
cd "$(dirname "$0")/../.."
go build -tags ceph,pacific -o "${TMPDIR:-/tmp}/netsan-bench-rbd" ./bench/iscsi
exec "${TMPDIR:-/tmp}/netsan-bench-rbd" -store rbd -tgt-control-port 7392 "$@"
