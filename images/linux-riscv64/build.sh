#!/usr/bin/env bash
# Builds visor's riscv64 Linux `Image` from Debian's linux-source-6.1.
# usage: build.sh OUT_DIR     (writes OUT_DIR/Image, and visor_ipc.ko: the
#                              out-of-tree module of visor-hv's hypercalls)
set -euo pipefail
out=$(realpath -m "$1"); here=$(dirname "$(realpath "$0")")
src=/usr/src/linux-source-6.1.tar.xz
[ -f "$src" ] || { echo "error: $src missing (apt-get install linux-source-6.1)" >&2; exit 1; }
work="$out/build"; rm -rf "$work"; mkdir -p "$work"
echo "[linux-riscv64] unpacking $src"
tar -xJf "$src" -C "$work" --strip-components=1
cd "$work"
export ARCH=riscv CROSS_COMPILE=riscv64-linux-gnu-
echo "[linux-riscv64] configuring (allnoconfig + config.fragment)"
KCONFIG_ALLCONFIG="$here/config.fragment" make -s allnoconfig
# every requested symbol must have survived dependency resolution
missing=0
while IFS= read -r line; do
  case "$line" in CONFIG_*=*) grep -qx "$line" .config || { echo "error: $line did not stick" >&2; missing=1; } ;; esac
done < "$here/config.fragment"
[ "$missing" = 0 ] || exit 1
echo "[linux-riscv64] compiling with $(nproc) jobs (about 10 minutes on 2 cores)"
make -j"$(nproc)" Image modules 2>&1 | grep --line-buffered -E '^\s+(LD|AR|OBJCOPY)\s|error|Error' || true
[ -f arch/riscv/boot/Image ] || { echo "error: kernel build failed" >&2; exit 1; }
echo "[linux-riscv64] building the out-of-tree module visor_ipc.ko"
mkdir -p "$work/visor-ipc"
cp "$here/visor_ipc.c" "$work/visor-ipc/"
echo 'obj-m := visor_ipc.o' > "$work/visor-ipc/Kbuild"
make -s M="$work/visor-ipc" modules
cp "$work/visor-ipc/visor_ipc.ko" "$out/visor_ipc.ko"
cp arch/riscv/boot/Image "$out/Image"
cp .config "$out/config"
cd "$out" && rm -rf "$work"
echo "[linux-riscv64] done: $out/Image"
