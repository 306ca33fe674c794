#!/bin/sh
# mkinitramfs.sh — the lab's kernel and Debian's own open-iscsi initramfs for
# it, for kernel-and-initramfs boots (boot = "linux", a Raspberry Pi).
#
#   lab/mkinitramfs.sh [OUTDIR]     default OUTDIR: build/lab/linux
#
# Writes OUTDIR/vmlinuz (the kernel lab/mkimage.sh downloads) and
# OUTDIR/initrd.img, made by initramfs-tools' mkinitramfs with the hooks this
# host has installed, open-iscsi's among them (iscsistart and its
# local-top/iscsi script, which reads the iscsi_* kernel parameters). Nothing
# here is hand-written: what the initramfs does is Debian's.
#
# mkinitramfs reads a kernel's modules from /lib/modules/V and its config from
# /boot/config-V. The kernel is never installed here: mkinitramfs runs in a
# mount namespace of its own where the unpacked package's are bind-mounted
# there, so the host's /lib/modules and /boot never change; the
# configuration is a directory of its own (mkinitramfs -d), so
# /etc/initramfs-tools is not touched either.
#
# MODULES=list: the NICs the lab's guests have (virtio-net, e1000), the SCSI
# disk, ext4, and crc32c_generic, which must be loaded before iscsi_tcp (else
# the login fails with "crc32c loading error"): the modules file is loaded
# before local-top scripts run.
#
# Cached like the golden image: rebuilt when this script, the kernel or the
# host's initramfs-tools or open-iscsi change. Prints OUTDIR.
#
# Needs: initramfs-tools open-iscsi busybox (and what lab/mkimage.sh needs).
set -eu

here=$(cd "$(dirname "$0")" && pwd)
repo=$(dirname "$here")
out=${1:-$repo/build/lab/linux}
case "$out" in /*) ;; *) out=$PWD/$out ;; esac

command -v mkinitramfs >/dev/null 2>&1 || {
	echo "mkinitramfs: not found (apt-get install initramfs-tools)" >&2
	exit 2
}
[ -x /usr/share/initramfs-tools/hooks/iscsi ] || {
	echo "mkinitramfs: open-iscsi's initramfs hook missing (apt-get install open-iscsi)" >&2
	exit 2
}

# The golden image's builder downloads and unpacks the kernel.
golden=$("$here/mkimage.sh" | tail -n 1)
stamp=$(cat "$golden.stamp")
kver=${stamp#*-}
kdir=$(dirname "$golden")/work/kernel-$kver
[ -r "$kdir/boot/vmlinuz-$kver" ] || { echo "mkinitramfs: $kdir has no kernel" >&2; exit 2; }

mkdir -p "$out"
want=$(cat "$0" /usr/sbin/mkinitramfs /usr/share/initramfs-tools/hooks/iscsi \
	/usr/share/initramfs-tools/scripts/local-top/iscsi | sha256sum | cut -c1-16)-$kver
if [ -r "$out/initrd.img" ] && [ -r "$out/vmlinuz" ] && [ "$(cat "$out/stamp" 2>/dev/null)" = "$want" ]; then
	echo "$out"
	exit 0
fi
echo "mkinitramfs: building $out/initrd.img (kernel $kver)" >&2

[ -r "$kdir/lib/modules/$kver/modules.dep" ] || busybox depmod -b "$kdir" "$kver"
# modprobe (kmod) reads modules.dep.bin, which busybox depmod does not write.
[ -r "$kdir/lib/modules/$kver/modules.dep.bin" ] || depmod -b "$kdir" "$kver"

# A host with no kernel of its own has no /lib/modules to mount on: make it
# for the build and remove it again, one build at a time on the machine.
exec 9>/run/lock/netsan-mkinitramfs.lock
flock 9
made=
[ -d /lib/modules ] || { mkdir /lib/modules && made=/lib/modules; }
conf=$(mktemp -d)
cleanup() {
	[ -z "$made" ] || rmdir "$made"
	made=
	rm -rf "$conf"
}
trap cleanup EXIT INT TERM

mkdir -p "$conf/conf.d" "$conf/hooks" "$conf/scripts"
cat >"$conf/initramfs.conf" <<'CONF'
MODULES=list
BUSYBOX=y
COMPRESS=gzip
DEVICE=
NFSROOT=auto
RUNSIZE=10%
FSTYPE=ext4
CONF
echo "RESUME=none" >"$conf/conf.d/resume"
cat >"$conf/modules" <<'MODS'
crc32c_generic
virtio_pci
virtio_net
e1000
sd_mod
ext4
MODS

# In a mount namespace of its own, the unpacked package's modules are
# /lib/modules and its config is in /boot: the host never sees either.
mkdir "$conf/boot"
ln -s "$kdir/boot/config-$kver" "$conf/boot/config-$kver"
unshare -m --propagation private sh -euc '
	mount --bind "$1/lib/modules" /lib/modules
	mount --bind "$2/boot" /boot
	mkinitramfs -d "$2" -o "$3" "$4"
' mkinitramfs "$kdir" "$conf" "$out/initrd.img.tmp" "$kver" >&2
cleanup
trap - EXIT INT TERM
mv "$out/initrd.img.tmp" "$out/initrd.img"
cp "$kdir/boot/vmlinuz-$kver" "$out/vmlinuz"
echo "$want" >"$out/stamp"
echo "$out"
