#!/bin/sh
# demo.sh — `make demo`: a diskless machine boots from netsan, live.
#
# As root on Debian 12 (or Ubuntu): installs the packages the lab needs,
# builds netsan and the golden image (cached in build/), makes a network
# namespace with netsan on 198.18.0.1, powers on one diskless QEMU machine
# and shows its serial console while it boots over iSCSI. Everything it made
# is removed when it ends, ^C included.
#
#   lab/demo.sh [--uefi] [--keep]
#
# Env: NETSAN_DEMO_NO_APT=1 skips apt-get (packages already there).
#      NETSAN=path uses a built binary instead of `go build ./cmd/netsan`.
set -eu

here=$(cd "$(dirname "$0")" && pwd)
repo=$(dirname "$here")
cd "$repo"

if [ "$(id -u)" != 0 ]; then
	echo "demo: run as root (network namespaces, tap devices, QEMU)" >&2
	exit 1
fi

packages="iproute2 qemu-system-x86 qemu-utils ipxe ipxe-qemu ovmf busybox-static open-iscsi
e2fsprogs syslinux syslinux-common syslinux-efi mtools dosfstools cpio"
if [ "${NETSAN_DEMO_NO_APT:-}" != 1 ]; then
	missing=
	for p in $packages; do
		dpkg -s "$p" >/dev/null 2>&1 || missing="$missing $p"
	done
	if [ -n "$missing" ]; then
		echo "==> apt-get install$missing" >&2
		apt-get update -q
		DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends $missing
	fi
fi

command -v go >/dev/null 2>&1 || {
	echo "demo: Go is needed to build netsan (see go.mod for the version)" >&2
	exit 1
}
mkdir -p build
bin=${NETSAN:-}
if [ -z "$bin" ]; then
	echo "==> go build ./cmd/netsan" >&2
	go build -o build/netsan ./cmd/netsan
	bin=build/netsan
fi
echo "==> go build ./lab/demo" >&2
go build -o build/netsan-demo ./lab/demo
# The image's kernel comes from apt: it needs package lists.
apt-cache show linux-image-amd64 >/dev/null 2>&1 || apt-get update -q
image=$(lab/mkimage.sh)

uefi=
keep=
for a in "$@"; do
	case "$a" in
	--uefi) uefi=-uefi ;;
	--keep) keep=-keep ;;
	*) echo "demo: unknown argument $a (want --uefi, --keep)" >&2; exit 2 ;;
	esac
done
exec build/netsan-demo -netsan "$bin" -image "$image" $uefi $keep
