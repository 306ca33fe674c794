#!/bin/sh
# mksecureboot.sh — the signed UEFI Secure Boot chain from Debian's packages,
# for secure_boot hosts in the lab.
#
#   lab/mksecureboot.sh [OUTDIR]     default OUTDIR: build/lab/secureboot
#
# Writes OUTDIR/shimx64.efi (shim-signed: shim, signed by Microsoft's UEFI
# CA, carrying Debian's key) and OUTDIR/grubx64.efi (grub-efi-amd64-signed's
# grubnetx64.efi.signed: GRUB's network image, signed by Debian), under the
# names shim is fetched by and fetches GRUB by. The packages are downloaded
# (apt-get download) and unpacked, never installed: their scripts would
# change this machine's boot setup.
#
# Cached: downloaded again only when the candidate versions change. Prints
# OUTDIR.
#
# Needs: apt-get dpkg-deb (and apt's package lists: apt-get update).
set -eu

here=$(cd "$(dirname "$0")" && pwd)
repo=$(dirname "$here")
out=${1:-$repo/build/lab/secureboot}
case "$out" in /*) ;; *) out=$PWD/$out ;; esac

pkgs="shim-signed grub-efi-amd64-signed"
want=$(for p in $pkgs; do
	apt-cache policy "$p" | sed -n 's/^ *Candidate: //p'
done | tr '\n' ' ')
case "$want" in *"(none)"*|" "|"") echo "mksecureboot: no candidate for $pkgs (apt-get update?)" >&2; exit 2 ;; esac
if [ -r "$out/shimx64.efi" ] && [ -r "$out/grubx64.efi" ] && [ "$(cat "$out/stamp" 2>/dev/null)" = "$want" ]; then
	echo "$out"
	exit 0
fi
echo "mksecureboot: downloading $pkgs ($want)" >&2

mkdir -p "$out"
work=$(mktemp -d "$out/work.XXXXXX")
trap 'rm -rf "$work"' EXIT INT TERM
# apt drops privileges to _apt; let it write the .debs.
chmod 777 "$work"
(cd "$work" && apt-get download -q $pkgs) >&2
for deb in "$work"/*.deb; do
	dpkg-deb -x "$deb" "$work/x"
done
cp "$work/x/usr/lib/shim/shimx64.efi.signed" "$out/shimx64.efi"
cp "$work/x/usr/lib/grub/x86_64-efi-signed/grubnetx64.efi.signed" "$out/grubx64.efi"
echo "$want" >"$out/stamp"
echo "$out"
