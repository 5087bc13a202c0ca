#!/usr/bin/env bash
# Builds visor's riscv64 initramfs: a static busybox cross-compiled from Debian's
# busybox source package, with busybox init running a shell on ttyS0.
# usage: build.sh OUT_DIR     (writes OUT_DIR/initramfs.cpio.gz)
set -euo pipefail
out=$(realpath -m "$1"); here=$(dirname "$(realpath "$0")")
work="$out/build"; rm -rf "$work"; mkdir -p "$work"; cd "$work"
echo "[initramfs-riscv64] fetching Debian's busybox source package"
apt-get source -q --download-only busybox >/dev/null
dpkg-source -x --no-check busybox_*.dsc src >/dev/null
cd src
echo "[initramfs-riscv64] configuring busybox (defconfig, static)"
make -s defconfig >/dev/null
sed -i -e 's/^# CONFIG_STATIC is not set/CONFIG_STATIC=y/' \
       -e 's/^CONFIG_TC=y/# CONFIG_TC is not set/' \
       -e 's/^CONFIG_FEATURE_TC_INGRESS=y/# CONFIG_FEATURE_TC_INGRESS is not set/' .config
make -s oldconfig </dev/null >/dev/null
echo "[initramfs-riscv64] compiling busybox with $(nproc) jobs"
make -j"$(nproc)" CROSS_COMPILE=riscv64-linux-gnu- busybox 2>&1 | grep --line-buffered -E '^\s+LINK|error:' || true
[ -x busybox ] || { echo "error: busybox build failed" >&2; exit 1; }
root="$work/root"; mkdir -p "$root"/{bin,sbin,etc/init.d,proc,sys,dev,tmp,root,mnt,usr/bin,usr/sbin}
cp busybox "$root/bin/busybox"
ln -s bin/busybox "$root/init"
cp "$here/inittab" "$root/etc/inittab"
install -m 755 "$here/rcS" "$root/etc/init.d/rcS"
echo "[initramfs-riscv64] packing"
cd "$root"
fakeroot sh -c '
  mknod -m 600 dev/console c 5 1
  mknod -m 666 dev/null c 1 3
  find . | sort | cpio -o -H newc --quiet' | gzip -9 > "$out/initramfs.cpio.gz"
cd "$out" && rm -rf "$work"
echo "[initramfs-riscv64] done: $out/initramfs.cpio.gz"
