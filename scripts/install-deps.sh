#!/usr/bin/env bash
# Installs the Debian packages visor's images, guest programs and tests need.
# Idempotent: does nothing when everything is present.
set -euo pipefail
pkgs=(opensbi qemu-system-misc gcc-riscv64-linux-gnu libc6-dev-riscv64-cross
      gcc-riscv64-unknown-elf linux-source-6.1 bc bison flex libssl-dev libelf-dev
      cpio fakeroot e2fsprogs dpkg-dev make xz-utils iproute2 iputils-ping qemu-system-x86)
missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
need_src=1
grep -rqsE '^(deb-src|Types:.*deb-src)' /etc/apt/sources.list /etc/apt/sources.list.d/ && need_src=0
if [ ${#missing[@]} -eq 0 ] && [ $need_src = 0 ]; then exit 0; fi
sudo=""
[ "$(id -u)" = 0 ] || sudo="sudo"
if [ $need_src = 1 ]; then
  echo "[deps] adding a deb-src entry for bookworm (busybox source)"
  printf 'Types: deb-src\nURIs: http://deb.debian.org/debian\nSuites: bookworm\nComponents: main\nSigned-By: /usr/share/keyrings/debian-archive-keyring.gpg\n' \
    | $sudo tee /etc/apt/sources.list.d/visor-src.sources >/dev/null
fi
echo "[deps] apt-get install ${missing[*]:-(sources only)}"
$sudo apt-get update -q
[ ${#missing[@]} -eq 0 ] || DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -q "${missing[@]}"
