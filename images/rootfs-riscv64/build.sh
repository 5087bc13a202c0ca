#!/usr/bin/env bash
# Builds visor's riscv64 ext4 root filesystem from the initramfs's busybox
# tree, with shells on both ttyS0 and hvc0 (virtio-console).
# usage: build.sh OUT_DIR INITRAMFS   (writes OUT_DIR/rootfs.ext4)
set -euo pipefail
out=$(realpath -m "$1"); initramfs=$(realpath "$2"); here=$(dirname "$(realpath "$0")")
tree="$out/tree"; rm -rf "$tree"; mkdir -p "$tree"; cd "$tree"
echo "[rootfs-riscv64] unpacking $initramfs"
fakeroot sh -c "
  zcat '$initramfs' | cpio -idm --quiet
  cp '$here/inittab' etc/inittab
  install -m 755 '$here/rcS' etc/init.d/rcS
  ln -sf busybox bin/sh
  ln -sf ../bin/busybox sbin/init
  mkdir -p home lost+found
  mke2fs -q -t ext4 -L visor-root -d . '$out/rootfs.ext4' 64M"
cd "$out" && rm -rf "$tree"
e2fsck -fn "$out/rootfs.ext4" >/dev/null 2>&1
echo "[rootfs-riscv64] done: $out/rootfs.ext4"
