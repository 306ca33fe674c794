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
# ROUNDS rounds (default 3), netsan and cp in alternating order, each row
# printed; then the median time of each.
#
#   bench/clone/run.sh            # N=20 ROUNDS=3 BENCH_DIR=/var/tmp
set -eu
N=${N:-20}
ROUNDS=${ROUNDS:-3}
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
	local label=$1 fs=$2 dir=$3 u0 u1 t0 t1 alloc secs
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
	secs=$(awk "BEGIN{print $t1 - $t0}")
	printf '| %-36s | %-5s | %6.2f s | %8d MiB | %8d MiB |\n' "$label" "$fs" \
		"$secs" $((alloc >> 20)) $(((u1 - u0) >> 20))
	printf '%s|%s|%s\n' "$label" "$fs" "$secs" >>"$work/times"
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

# pair LABEL-FS DIR GOLDEN CPFLAG: one round of netsan and cp, order by round.
pair() {
	if [ $((round % 2)) = 1 ]; then
		run "netsan (images.Clone)" "$1" "$2" netsan_all "$3" "$2"
		run "cp $4" "$1" "$2" cp_all "$4" "$3" "$2"
	else
		run "cp $4" "$1" "$2" cp_all "$4" "$3" "$2"
		run "netsan (images.Clone)" "$1" "$2" netsan_all "$3" "$2"
	fi
}

"$work/clonebench" golden "$work/golden.img" $SIZE $DATA
fs=$(fstype "$work")
xfs=""
if [ "$(id -u)" = 0 ] && command -v mkfs.xfs >/dev/null; then
	truncate -s 3G "$work/xfs.img"
	loop=$(losetup --find --show "$work/xfs.img")
	mkfs.xfs -q -m reflink=1 "$loop"
	mkdir "$work/xfs"
	mount -t xfs "$loop" "$work/xfs"
	"$work/clonebench" golden "$work/xfs/golden.img" $SIZE $DATA
	xfs=yes
fi
round=1
while [ $round -le "$ROUNDS" ]; do
	pair "$fs" "$work/roots" "$work/golden.img" --sparse=always
	[ -n "$xfs" ] && pair xfs "$work/xfs/roots" "$work/xfs/golden.img" --reflink=always
	round=$((round + 1))
done
[ -n "$xfs" ] || echo "(XFS reflink half skipped: needs root and mkfs.xfs)"

echo
echo "median of $ROUNDS rounds:"
echo
echo "| run                                  | fs    | time (median) | all rounds |"
echo "|--------------------------------------|-------|---------------|------------|"
cut -d'|' -f1,2 "$work/times" | sort -u | while IFS='|' read -r label fs; do
	all=$(grep -F "$label|$fs|" "$work/times" | cut -d'|' -f3 | sort -g | awk '{printf "%.2f\n", $1}')
	med=$(echo "$all" | awk '{v[NR]=$1} END{print (NR%2) ? v[(NR+1)/2] : (v[NR/2]+v[NR/2+1])/2}')
	printf '| %-36s | %-5s | %11.2f s | %s |\n' "$label" "$fs" "$med" "$(echo "$all" | tr '\n' ' ' | sed 's/ $//; s/ /, /g')"
done
