#!/usr/bin/env bash
# Builds a Debian 13 (trixie) riscv64 system as a distribution's users run
# it: systemd, udev, Debian's stock kernel and its initramfs-tools initrd,
# on one ext4 filesystem (no partition table) for virtio-blk as /dev/vda.
# The packages are Debian's own, fetched by mmdebstrap; their maintainer
# scripts run under qemu-user through binfmt_misc (scripts/install-deps.sh
# --distro installs and registers it).
# usage: build.sh OUT_DIR   (writes OUT_DIR/rootfs.ext4, vmlinux, initrd.img)
set -euo pipefail
out=$(realpath -m "$1"); here=$(dirname "$(realpath "$0")")
suite=trixie
mirror=${VISOR_DEBIAN_MIRROR:-http://deb.debian.org/debian}
for tool in mmdebstrap mke2fs e2fsck; do
  command -v "$tool" >/dev/null || { echo "error: $tool missing (scripts/install-deps.sh --distro)" >&2; exit 1; }
done
[ -e /proc/sys/fs/binfmt_misc/qemu-riscv64 ] ||
  { echo "error: no binfmt_misc entry for riscv64 (scripts/install-deps.sh --distro registers qemu-user's)" >&2; exit 1; }
tree="$out/tree"; rm -rf "$tree"; mkdir -p "$tree"
echo "[debian-riscv64] mmdebstrap $suite riscv64 from $mirror (packages configured under qemu-user: 10-20 minutes)"
mmdebstrap --arch=riscv64 --variant=minbase --mode=root --format=directory \
  --include="$(tr '\n' ',' < "$here/packages")" \
  --customize-hook="cp -a '$here/overlay/.' \"\$1/\"" \
  --customize-hook="chroot \"\$1\" /usr/local/sbin/visor-customize" \
  "$suite" "$tree" "$mirror"
# A fixed machine id (mmdebstrap empties it last): every boot is an
# ordinary boot, not a first boot, and the same one.
echo 76697369726f6465626961726973637a > "$tree/etc/machine-id"
cp "$tree"/boot/vmlinux-* "$out/vmlinux"
cp "$tree"/boot/initrd.img-* "$out/initrd.img"
cat "$tree/etc/debian_version" > "$out/debian_version"
ls "$tree/lib/modules" > "$out/kernel_version"
echo "[debian-riscv64] making the ext4 image"
mke2fs -q -t ext4 -L debian-root -d "$tree" "$out/rootfs.ext4" 2G
rm -rf "$tree"
e2fsck -fn "$out/rootfs.ext4" >/dev/null
echo "[debian-riscv64] done: Debian $(cat "$out/debian_version"), kernel $(cat "$out/kernel_version"): $out/rootfs.ext4"
