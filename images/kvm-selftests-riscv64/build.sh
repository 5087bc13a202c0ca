#!/usr/bin/env bash
# Builds the riscv64 KVM selftests that Debian's linux-source-6.1 ships
# (tools/testing/selftests/kvm), static, into a cpio archive that unpacks
# at /kvm next to the project's initramfs (Linux unpacks concatenated
# archives in turn), with /kvm/run as an init that runs them all.
# usage: build.sh OUT_DIR     (writes OUT_DIR/kvm-selftests.cpio.gz)
set -euo pipefail
out=$(realpath -m "$1"); here=$(dirname "$(realpath "$0")")
src=/usr/src/linux-source-6.1.tar.xz
[ -f "$src" ] || { echo "error: $src missing (apt-get install linux-source-6.1)" >&2; exit 1; }
work="$out/build"; rm -rf "$work"; mkdir -p "$work"
echo "[kvm-selftests-riscv64] unpacking $src"
tar -xJf "$src" -C "$work" --strip-components=1
cd "$work"
export ARCH=riscv CROSS_COMPILE=riscv64-linux-gnu-
echo "[kvm-selftests-riscv64] installing the kernel's uapi headers"
make -s headers_install INSTALL_HDR_PATH="$work/usr" >/dev/null
echo "[kvm-selftests-riscv64] compiling the selftests (static)"
make -s -C tools/testing/selftests/kvm -j"$(nproc)" CC=riscv64-linux-gnu-gcc \
  LDFLAGS="-static -pthread" EXTRA_CFLAGS="-include $here/compat.h" 2>&1 \
  | grep --line-buffered -E 'error' || true
root="$work/root"; mkdir -p "$root/kvm"
# The riscv tests of linux-source-6.1's selftests/kvm Makefile.
tests="kvm_create_max_vcpus kvm_binary_stats_test set_memory_region_test kvm_page_table_test
       demand_paging_test dirty_log_test"
count=0
for t in $tests; do
  [ -x "tools/testing/selftests/kvm/$t" ] || { echo "error: selftest $t was not built" >&2; exit 1; }
  cp "tools/testing/selftests/kvm/$t" "$root/kvm/"; count=$((count + 1))
done
install -m 755 "$here/run" "$root/kvm/run"
echo "[kvm-selftests-riscv64] packing $count tests"
cd "$root"
find . | sort | cpio -o -H newc --quiet | gzip -9 > "$out/kvm-selftests.cpio.gz"
cd "$out" && rm -rf "$work"
echo "[kvm-selftests-riscv64] done: $out/kvm-selftests.cpio.gz"
