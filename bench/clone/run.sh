#!/bin/sh
# bench/clone: time to provision N host roots (default 20) from a 2 GiB golden
# image holding 200 MiB of data, netsan (images.Clone) against cp, on the
# root file system (ext4 here: sparse copy vs cp --sparse=always) and on a
# loop-mounted XFS with reflink made here (reflink vs cp --reflink=always).
# Every run ends with its data on disk: netsan fsyncs each clone, cp is
# followed by sync. Space: "allocated" is du of the clones (st_blocks, which
# counts shared extents in full); "fs used" is the file system's used-space
# delta (df), the real cost of reflinks. Root is needed for the XFS half.
#
#   bench/clone/run.sh            # N=20 BENCH_DIR=/var/tmp
set -eu
N=${N:-20}
SIZE=$((2 << 30))
DATA=$((200 << 20))
cd "$(dirname "$0")/../.."
work=$(mktemp -d "${BENCH_DIR:-/var/tmp}/netsan-bench-clone.XXXXXX")
loop=""
cleanup() {
	mountpoint -q "$work/xfs" 2>/dev/null && umount "$work/xfs"
	[ -n "$loop" ] && losetup -d "$loop"
	rm -rf "$work"
}
trap cleanup EXIT INT TERM

go build -o "$work/clonebench" ./bench/clone

now() { date +%s.%N; }
used() { df --output=used -B1 "$1" | tail -1; }

# run LABEL FS DIR CMD…: runs CMD to fill DIR with N clones, prints a row.
run() {
	label=$1 fs=$2 dir=$3
	shift 3
	rm -rf "$dir"
	mkdir -p "$dir"
	sync
	u0=$(used "$dir")
	t0=$(now)
	"$@"
	t1=$(now)
	u1=$(used "$dir")
	alloc=$(du -s -B1 "$dir" | cut -f1)
	[ -s "$work/method" ] && label="$label, $(sed 's/^[0-9]* x //; s/ in .*//' "$work/method")"
	rm -f "$work/method"
	printf '| %-36s | %-5s | %6.2f s | %8d MiB | %8d MiB |\n' "$label" "$fs" \
		"$(awk "BEGIN{print $t1 - $t0}")" $((alloc >> 20)) $(((u1 - u0) >> 20))
	rm -rf "$dir"
	sync
}

netsan_all() { # netsan_all GOLDEN DIR
	"$work/clonebench" clone "$1" "$2" "$N" >"$work/method"
}

cp_all() { # cp_all FLAG GOLDEN DIR
	i=0
	while [ $i -lt "$N" ]; do
		cp "$1" "$2" "$3/host$(printf %02d $i).img"
		i=$((i + 1))
	done
	sync
}

fstype() { findmnt -n -o FSTYPE -T "$1"; }

echo "# $N clones of a 2 GiB golden image with 200 MiB of data; $(nproc) cores, kernel $(uname -r)"
echo "| run                                  | fs    | time     | allocated    | fs used      |"
echo "|--------------------------------------|-------|----------|--------------|--------------|"

"$work/clonebench" golden "$work/golden.img" $SIZE $DATA
fs=$(fstype "$work")
run "netsan (images.Clone)" "$fs" "$work/roots" netsan_all "$work/golden.img" "$work/roots"
run "cp --sparse=always" "$fs" "$work/roots" cp_all --sparse=always "$work/golden.img" "$work/roots"

if [ "$(id -u)" = 0 ] && command -v mkfs.xfs >/dev/null; then
	truncate -s 3G "$work/xfs.img"
	loop=$(losetup --find --show "$work/xfs.img")
	mkfs.xfs -q -m reflink=1 "$loop"
	mkdir "$work/xfs"
	mount -t xfs "$loop" "$work/xfs"
	"$work/clonebench" golden "$work/xfs/golden.img" $SIZE $DATA
	run "netsan (images.Clone)" xfs "$work/xfs/roots" netsan_all "$work/xfs/golden.img" "$work/xfs/roots"
	run "cp --reflink=always" xfs "$work/xfs/roots" cp_all --reflink=always "$work/xfs/golden.img" "$work/xfs/roots"
else
	echo "(XFS reflink half skipped: needs root and mkfs.xfs)"
fi
