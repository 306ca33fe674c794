#!/bin/sh
# mkimage.sh — build the lab's golden root image from Debian packages only.
#
#   lab/mkimage.sh [OUTPUT]        default OUTPUT: build/lab/golden.img
#
# The image is a 96 MiB MBR disk. Its first partition, active FAT16 from 1 MiB
# to 64 MiB, boots both ways:
#   BIOS: syslinux's mbr.bin → ldlinux.sys (installed with mtools, no loop mount)
#   UEFI: \EFI\BOOT\BOOTX64.EFI = syslinux.efi + ldlinux.e64
# Both load the same Debian kernel (apt-get download + dpkg-deb -x, never
# installed here) and a busybox initramfs whose /init (lab/guest/init) prints
# a marker with its hostname and boot disk on the serial console. The second
# partition, 64 MiB to 96 MiB, is ext4: the root file system of a kernel-and-
# initramfs boot (busybox and lab/guest/rootinit as /sbin/init, which prints
# NETSAN-LAB-ROOT; lab/mkinitramfs.sh builds the initramfs that mounts it),
# and where the guest's writer (netsan.mode=writer) writes its file, which
# e2fsck on the host then checks.
#
# The result is cached: it is rebuilt only when this script, the guest files,
# the kernel version or the host tools it copies change. Prints the image path.
#
# Needs: apt-get dpkg-deb busybox-static open-iscsi e2fsprogs syslinux
# syslinux-common syslinux-efi mtools dosfstools cpio gzip.
# Env: NETSAN_LAB_KERNEL=6.1.0-NN-amd64 pins the kernel (default: what
#      linux-image-amd64 depends on).
set -eu

here=$(cd "$(dirname "$0")" && pwd)
repo=$(dirname "$here")
out=${1:-$repo/build/lab/golden.img}
case "$out" in /*) ;; *) out=$PWD/$out ;; esac
work=$(dirname "$out")/work
mkdir -p "$work"

need() {
	for t in "$@"; do
		command -v "$t" >/dev/null 2>&1 || {
			echo "mkimage: $t not found (apt-get install busybox-static open-iscsi e2fsprogs syslinux syslinux-common syslinux-efi mtools dosfstools cpio)" >&2
			exit 2
		}
	done
}
need apt-get apt-cache dpkg-deb busybox iscsistart iscsiadm iscsid mke2fs e2fsck blkid syslinux mcopy mmd mkfs.fat cpio gzip ldd flock sha256sum

# One builder at a time (tests may run in parallel).
exec 9>"$work/.lock"
flock 9

kver=${NETSAN_LAB_KERNEL:-}
if [ -z "$kver" ]; then
	kver=$(apt-cache depends linux-image-amd64 2>/dev/null |
		sed -n 's/^ *Depends: linux-image-\(.*-amd64\)$/\1/p' | head -n 1)
	[ -n "$kver" ] || { echo "mkimage: cannot tell the kernel version (apt-get update?)" >&2; exit 2; }
fi

mbr=/usr/lib/syslinux/mbr/mbr.bin
[ -r "$mbr" ] || mbr=/usr/lib/SYSLINUX/mbr.bin
efidir=/usr/lib/SYSLINUX.EFI/efi64
[ -r $efidir/syslinux.efi ] || efidir=/usr/lib/syslinux/modules/efi64
[ -r "$mbr" ] && [ -r $efidir/syslinux.efi ] && [ -r /usr/lib/syslinux/modules/efi64/ldlinux.e64 ] || {
	echo "mkimage: syslinux-common / syslinux-efi files missing" >&2
	exit 2
}

bins="/usr/bin/busybox /usr/sbin/iscsistart /usr/sbin/iscsiadm /usr/sbin/iscsid /usr/sbin/mke2fs /usr/sbin/e2fsck /usr/sbin/blkid"
stamp=$(cat "$0" "$here/guest/init" "$here/guest/udhcpc.script" "$here/guest/rootinit" $bins "$mbr" $efidir/syslinux.efi |
	sha256sum | cut -c1-16)-$kver
if [ -r "$out" ] && [ "$(cat "$out.stamp" 2>/dev/null)" = "$stamp" ]; then
	echo "$out"
	exit 0
fi
echo "mkimage: building $out (kernel $kver)" >&2

# --- kernel: download and unpack, cached per version -----------------------
kdir=$work/kernel-$kver
if [ ! -r "$kdir/boot/vmlinuz-$kver" ]; then
	rm -rf "$kdir" "$work/deb"
	mkdir -p "$work/deb"
	# apt drops privileges to _apt; let it write the .deb.
	chmod 777 "$work/deb"
	(cd "$work/deb" && apt-get download -q "linux-image-$kver") >&2
	dpkg-deb -x "$work"/deb/linux-image-"$kver"_*.deb "$kdir.tmp"
	mv "$kdir.tmp" "$kdir"
	rm -rf "$work/deb"
fi

# --- initramfs: two archives ---------------------------------------------
# initrd.img has what a SAN boot needs (busybox, iscsistart, NIC and iSCSI
# modules); data.img adds the installed host's tools (iscsid, iscsiadm,
# e2fsprogs, blkid, ext4, and virtio_blk for its own disk). The SAN boot
# loads only the first: UEFI firmware reads files over iSCSI slowly, so
# every megabyte counts. syslinux concatenates both for the data mode, and
# the kernel unpacks them in order.
base=$work/initramfs
data=$work/initramfs-data
rm -rf "$base" "$data" "$work/initramfs-all"
mkdir -p "$base/bin" "$base/sbin" "$base/usr/bin" "$base/usr/sbin" "$base/etc" \
	"$base/proc" "$base/sys" "$base/dev" "$base/run" "$base/tmp" "$base/mnt" "$data/sbin" "$data/etc"
cp /usr/bin/busybox "$base/bin/busybox"
for a in $("$base/bin/busybox" --list); do
	[ "$a" = busybox ] || ln -s busybox "$base/bin/$a"
done
# ldd prints /lib64/ld-linux-x86-64.so.2; keep the usrmerge paths too.
ln -s ../lib "$base/usr/lib"

# copy_elf ROOT FILE DEST copies a dynamic binary and every library ldd
# names that the base archive does not already have.
copy_elf() {
	cp "$2" "$1$3"
	ldd "$2" | awk '/=> \// { print $3 } /^\t\/lib/ { print $1 }' | while read -r lib; do
		[ -e "$base$lib" ] || [ -e "$1$lib" ] && continue
		mkdir -p "$1$(dirname "$lib")"
		cp -L "$lib" "$1$lib"
	done
}
copy_elf "$base" /usr/sbin/iscsistart /sbin/iscsistart
for b in iscsiadm iscsid mke2fs e2fsck blkid; do
	copy_elf "$data" "/usr/sbin/$b" "/sbin/$b"
done
[ -r /etc/mke2fs.conf ] && cp /etc/mke2fs.conf "$data/etc/"
echo "root:x:0:0:root:/:/bin/sh" >"$base/etc/passwd"
echo "root:x:0:" >"$base/etc/group"
cp "$here/guest/init" "$base/init"
cp "$here/guest/udhcpc.script" "$base/etc/udhcpc.script"
chmod 755 "$base/init" "$base/etc/udhcpc.script"

# Kernel modules: the closure of what /init loads, found with busybox depmod
# on the unpacked package.
kmods=$kdir/lib/modules/$kver
[ -r "$kmods/modules.dep" ] || busybox depmod -b "$kdir" "$kver"
# copy_modules ROOT NAMES copies the named modules and their dependencies
# that the base archive does not already have.
copy_modules() {
	closure=$(
		awk -v want="$2" '
		{ sub(":", "", $1); n = split($1, p, "/"); name = p[n]; sub(/\.ko.*$/, "", name)
		  gsub("-", "_", name); file[name] = $1; deps[name] = ""
		  for (i = 2; i <= NF; i++) deps[name] = deps[name] " " $i }
		END {
		  n = split(want, w, " ")
		  for (i = 1; i <= n; i++) { name = w[i]; if (!(name in file)) { print "missing " name > "/dev/stderr"; exit 1 }
		    print file[name]; m = split(deps[name], d, " "); for (j = 1; j <= m; j++) print d[j] }
		}' "$kmods/modules.dep" | sort -u
	)
	for f in $closure; do
		[ -e "$base/lib/modules/$kver/$f" ] && continue
		mkdir -p "$1/lib/modules/$kver/$(dirname "$f")"
		cp "$kmods/$f" "$1/lib/modules/$kver/$f"
	done
}
copy_modules "$base" "virtio_pci virtio_net e1000 crc32c_generic iscsi_tcp iscsi_ibft sd_mod"
copy_modules "$data" "ext4 virtio_blk"
busybox depmod -b "$base" "$kver"
# data.img carries the modules.dep of both archives together.
mkdir -p "$work/initramfs-all"
cp -a "$base/." "$data/." "$work/initramfs-all/"
busybox depmod -b "$work/initramfs-all" "$kver"
cp "$work/initramfs-all/lib/modules/$kver"/modules.* "$data/lib/modules/$kver/"
rm -rf "$work/initramfs-all"

for r in initrd:"$base" data:"$data"; do
	(cd "${r#*:}" && find . | LC_ALL=C sort | cpio -o -H newc --quiet -R 0:0 | gzip -9 -n) >"$work/${r%%:*}.img"
done

# --- boot partition ---------------------------------------------------------
cat >"$work/syslinux.cfg" <<'EOF'
PROMPT 0
TIMEOUT 0
DEFAULT netsan
LABEL netsan
  LINUX /vmlinuz
  INITRD /initrd.img
  APPEND console=ttyS0,115200 loglevel=4 panic=-1 netsan.mode=san
EOF

disk_mib=96
part_start=2048                               # sectors: 1 MiB alignment
part_sectors=$((64 * 2048 - part_start))      # the boot partition ends at 64 MiB
# The writer's partition: lab.WriterPartitionOffset and WriterPartitionSize.
ext_start=$((64 * 2048))
ext_sectors=$((disk_mib * 2048 - ext_start))
img=$out.tmp
rm -f "$img"
# The boot partition first, on a file that ends with it (mkfs.fat warns
# about a size mismatch otherwise).
truncate -s $((ext_start * 512)) "$img"
mkfs.fat -F 16 -n NETSANLAB -h $part_start --offset $part_start "$img" $((part_sectors / 2)) >/dev/null
fat="$img@@$((part_start * 512))"
export MTOOLS_SKIP_CHECK=1
mcopy -i "$fat" "$kdir/boot/vmlinuz-$kver" ::/vmlinuz
mcopy -i "$fat" "$work/initrd.img" ::/initrd.img
mcopy -i "$fat" "$work/data.img" ::/data.img
mcopy -i "$fat" "$work/syslinux.cfg" ::/syslinux.cfg
mmd -i "$fat" ::/EFI ::/EFI/BOOT
mcopy -i "$fat" $efidir/syslinux.efi ::/EFI/BOOT/BOOTX64.EFI
mcopy -i "$fat" /usr/lib/syslinux/modules/efi64/ldlinux.e64 ::/EFI/BOOT/ldlinux.e64
mcopy -i "$fat" "$work/syslinux.cfg" ::/EFI/BOOT/syslinux.cfg
syslinux --offset $((part_start * 512)) --install "$img"

# --- the second partition: a root file system for kernel-and-initramfs boots,
# and the writer's: ext4 with 4 KiB blocks, the writer's block size. Fixed
# UUID and hash seed: every clone of the golden image starts identical.
rootfs=$work/rootfs
rm -rf "$rootfs"
mkdir -p "$rootfs/bin" "$rootfs/sbin" "$rootfs/dev" "$rootfs/proc" "$rootfs/sys" "$rootfs/run" "$rootfs/tmp"
cp /usr/bin/busybox "$rootfs/bin/busybox"
for a in sh awk cat cut echo mount poweroff readlink sed sync tail tr; do
	ln -s busybox "$rootfs/bin/$a"
done
cp "$here/guest/rootinit" "$rootfs/sbin/init"
chmod 755 "$rootfs/sbin/init"
truncate -s ${disk_mib}M "$img"
mke2fs -q -t ext4 -b 4096 -L writer -U 4e455453-414e-4c41-4200-777269746572 \
	-E offset=$((ext_start * 512)),hash_seed=4e455453-414e-4c41-4200-777269746572 \
	-d "$rootfs" "$img" $((ext_sectors / 8))

# --- MBR: syslinux's boot code, one active FAT16 (LBA) partition, ext4 ------
dd if="$mbr" of="$img" bs=440 count=1 conv=notrunc 2>/dev/null
# le32 N prints N as four little-endian octal escapes for printf.
le32() { printf '\\%03o\\%03o\\%03o\\%03o' $(($1 & 255)) $(($1 >> 8 & 255)) $(($1 >> 16 & 255)) $(($1 >> 24 & 255)); }
# Disk signature (fixed: every clone of the golden image starts identical).
printf '\116\123\114\102\000\000' | dd of="$img" bs=1 seek=440 conv=notrunc 2>/dev/null
# status 0x80, CHS "beyond 8 GiB" placeholders, type 0x0e, LBA start, count.
printf "\\200\\376\\377\\377\\016\\376\\377\\377$(le32 $part_start)$(le32 $part_sectors)" |
	dd of="$img" bs=1 seek=446 conv=notrunc 2>/dev/null
# Then the writer's Linux (0x83) partition, not active.
printf "\\000\\376\\377\\377\\203\\376\\377\\377$(le32 $ext_start)$(le32 $ext_sectors)" |
	dd of="$img" bs=1 seek=462 conv=notrunc 2>/dev/null
printf '\125\252' | dd of="$img" bs=1 seek=510 conv=notrunc 2>/dev/null

mv "$img" "$out"
echo "$stamp" >"$out.stamp"
echo "$out"
