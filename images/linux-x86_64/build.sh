#!/usr/bin/env bash
# Builds the x86-64 Linux guest for visor's KVM VMM from Debian's
# linux-source-6.1: a small kernel with the PVH entry point, 8250 console
# and virtio-mmio (command-line devices) + virtio-blk, as both `vmlinux`
# (PVH ELF) and `bzImage`, plus an initramfs whose init (init.c, static)
# prints a marker and reboots.
# usage: build.sh OUT_DIR   (writes OUT_DIR/{vmlinux,bzImage,initramfs.cpio})
set -euo pipefail
out=$(realpath -m "$1"); here=$(dirname "$(realpath "$0")")
src=/usr/src/linux-source-6.1.tar.xz
[ -f "$src" ] || { echo "error: $src missing (apt-get install linux-source-6.1)" >&2; exit 1; }
work="$out/build"; rm -rf "$work"; mkdir -p "$work"
echo "[linux-x86_64] building init"
mkdir -p "$work/root/proc" "$work/root/dev"
gcc -static -O2 -o "$work/root/init" "$here/init.c"
(cd "$work/root" && fakeroot sh -c 'mknod -m 600 dev/console c 5 1; find . | sort | cpio -o -H newc --quiet') > "$out/initramfs.cpio"
echo "[linux-x86_64] unpacking $src"
mkdir -p "$work/linux"
tar -xJf "$src" -C "$work/linux" --strip-components=1
cd "$work/linux"
echo "[linux-x86_64] configuring (allnoconfig + config.fragment)"
KCONFIG_ALLCONFIG="$here/config.fragment" make -s ARCH=x86_64 allnoconfig
missing=0
while IFS= read -r line; do
  case "$line" in CONFIG_*=*) grep -qx "$line" .config || { echo "error: $line did not stick" >&2; missing=1; } ;; esac
done < "$here/config.fragment"
[ "$missing" = 0 ] || exit 1
echo "[linux-x86_64] compiling with $(nproc) jobs"
make -j"$(nproc)" ARCH=x86_64 vmlinux bzImage 2>&1 | grep --line-buffered -E '^\s+LD\s|error|Error' || true
[ -f vmlinux ] || { echo "error: kernel build failed" >&2; exit 1; }
[ -f arch/x86/boot/bzImage ] || { echo "error: bzImage build failed" >&2; exit 1; }
cp vmlinux "$out/vmlinux"
cp arch/x86/boot/bzImage "$out/bzImage"
cp .config "$out/config"
cd "$out" && rm -rf "$work"
echo "[linux-x86_64] done: $out/vmlinux"
