#!/bin/sh
# bench/tftp: boot-file throughput on loopback, netsan's tftpd against
# tftpd-hpa (in.tftpd) in the same run, then netsan's httpd, all fetched by
# curl. Prints a Markdown table: MB/s (median of N runs, each listed) and the
# server's CPU time per MiB sent (tftpd-hpa's through a cgroup, since it
# forks a child per transfer). Root is needed (in.tftpd -s chroots).
#
#   bench/tftp/run.sh                    # SIZE=64 CLIENTS=50 N=5
#   bench/tftp/run.sh -only "1 client"   # extra flags go to the bench
set -eu
cd "$(dirname "$0")/../.."
bin=$(mktemp "${TMPDIR:-/tmp}/netsan-bench-tftp.XXXXXX")
trap 'rm -f "$bin"' EXIT INT TERM
go build -o "$bin" ./bench/tftp
"$bin" -size "${SIZE:-64}" -clients "${CLIENTS:-50}" -n "${N:-5}" "$@"
