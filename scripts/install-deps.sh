#!/usr/bin/env bash
# Installs the Debian packages visor's images, guest programs and tests need.
# Idempotent: does nothing when everything is present.
# With --distro, also what the Debian distribution image (images/debian-
# riscv64, for `cargo xtask bench distro`) needs: mmdebstrap (and its
# arch-test), and qemu-user registered with binfmt_misc to run riscv64
# maintainer scripts.
#
# QEMU (the differential oracle and benchmark peer) and OpenSBI (the default
# firmware) come from bookworm-backports: QEMU 10 and OpenSBI 1.5.1 (SBI 2.0).
# Today's Debian 12 images ship qemu-utils from there already, which apt will
# not mix with bookworm's QEMU 7.2. The backports and deb-src entries this
# script adds reuse the archive URI and keyring of the machine's own bookworm
# entry, so a mirror configured on the machine is the one used.
set -euo pipefail
pkgs=(gcc-riscv64-linux-gnu libc6-dev-riscv64-cross gcc-riscv64-unknown-elf picolibc-riscv64-unknown-elf linux-source-6.1
      bc bison flex libssl-dev libelf-dev cpio fakeroot e2fsprogs dpkg-dev make xz-utils
      iproute2 iputils-ping)
suite=bookworm
backports=$suite-backports
distro=0
case "${1:-}" in
  "") ;;
  --distro) distro=1 ;;
  *) echo "usage: install-deps.sh [--distro]" >&2; exit 2 ;;
esac

installed() { dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q "install ok installed"; }
# Whether the installed version of package $1 is at least $2.
at_least() {
  local v
  v=$(dpkg-query -W -f='${Version}' "$1" 2>/dev/null) || return 1
  dpkg --compare-versions "$v" ge "$2"
}

missing=()
for p in "${pkgs[@]}"; do installed "$p" || missing+=("$p"); done
missing_bp=()
at_least qemu-system-misc 1:10.0 || missing_bp+=(qemu-system-misc)
at_least qemu-system-x86 1:10.0 || missing_bp+=(qemu-system-x86)
at_least opensbi 1.5 || missing_bp+=(opensbi)
if [ $distro = 1 ]; then
  installed mmdebstrap || missing_bp+=(mmdebstrap)
  # mmdebstrap checks with it that the host can run riscv64 binaries.
  installed arch-test || missing+=(arch-test)
  at_least qemu-user-static 1:10.0 || missing_bp+=(qemu-user-static)
fi

# Registers qemu-user's riscv64 interpreter with binfmt_misc where nothing
# (systemd-binfmt, in a container) has done so.
register_binfmt() {
  [ $distro = 1 ] || return 0
  local dir=/proc/sys/fs/binfmt_misc conf=/usr/lib/binfmt.d/qemu-riscv64.conf
  [ -e $dir/qemu-riscv64 ] && return 0
  [ -e $dir/register ] || $sudo mount -t binfmt_misc binfmt_misc $dir
  echo "[deps] registering $conf with binfmt_misc"
  $sudo sh -c "cat $conf > $dir/register"
}
sudo=""
[ "$(id -u)" = 0 ] || sudo="sudo"

# All apt sources as deb822 stanzas (one-line entries converted), one
# "Types|URIs|Suites|Signed-By" record per line.
apt_entries() {
  local f
  for f in /etc/apt/sources.list /etc/apt/sources.list.d/*.list; do
    [ -f "$f" ] || continue
    # deb [signed-by=K] URI SUITE COMPONENTS...
    sed -nE 's/^[[:space:]]*(deb|deb-src)[[:space:]]+(\[([^]]*)\][[:space:]]+)?([^[:space:]]+)[[:space:]]+([^[:space:]]+).*/\1|\4|\5|\3/p' "$f" |
      while IFS='|' read -r type uri suites opts; do
        key=$(sed -nE 's/.*signed-by=([^[:space:]]+).*/\1/p' <<<"$opts")
        echo "$type|$uri|$suites|$key"
      done
  done
  for f in /etc/apt/sources.list.d/*.sources; do
    [ -f "$f" ] || continue
    awk 'function flush() { if (t != "" && en != "no") print t "|" u "|" s "|" k; t = u = s = k = en = "" }
         /^[[:space:]]*$/ { flush(); next }
         /^[[:space:]]*#/ { next }
         { key = tolower($1); sub(/:$/, "", key); $1 = ""; sub(/^[[:space:]]+/, "")
           if (key == "types") t = $0; else if (key == "uris") u = $0;
           else if (key == "suites") s = $0; else if (key == "signed-by") k = $0;
           else if (key == "enabled") en = $0 }
         END { flush() }' "$f"
  done
}

# Whether some entry of type $1 (deb or deb-src) serves suite $2.
has_entry() {
  apt_entries | awk -F'|' -v type="$1" -v suite="$2" '
    { n = split($1, ts, " "); okt = 0; for (i = 1; i <= n; i++) if (ts[i] == type) okt = 1
      m = split($3, ss, " "); oks = 0; for (i = 1; i <= m; i++) if (ss[i] == suite) oks = 1
      if (okt && oks) found = 1 }
    END { exit !found }'
}

need_src=1
has_entry deb-src $suite && need_src=0
need_bp=1
has_entry deb $backports && need_bp=0

if [ ${#missing[@]} -eq 0 ] && [ ${#missing_bp[@]} -eq 0 ] && [ $need_src = 0 ]; then
  register_binfmt
  exit 0
fi

if [ $need_src = 1 ] || { [ ${#missing_bp[@]} -gt 0 ] && [ $need_bp = 1 ]; }; then
  # The machine's own bookworm archive: its URI and keyring.
  entry=$(apt_entries | awk -F'|' -v suite=$suite '
    { n = split($1, ts, " "); okt = 0; for (i = 1; i <= n; i++) if (ts[i] == "deb") okt = 1
      m = split($3, ss, " "); for (i = 1; i <= m; i++) if (okt && ss[i] == suite) { print; exit } }')
  if [ -z "$entry" ]; then
    echo "[deps] error: no apt entry for $suite found in /etc/apt; cannot add $backports and deb-src" >&2
    exit 1
  fi
  uri=$(cut -d'|' -f2 <<<"$entry" | awk '{print $1}')
  key=$(cut -d'|' -f4 <<<"$entry")
  # stanza TYPE SUITE FILE: write one deb822 entry to FILE.
  stanza() {
    echo "[deps] adding $1 $2 ($uri) in $3"
    { echo "# Added by visor's scripts/install-deps.sh"
      printf 'Types: %s\nURIs: %s\nSuites: %s\nComponents: main\n' "$1" "$uri" "$2"
      [ -z "$key" ] || printf 'Signed-By: %s\n' "$key"
    } | $sudo tee "$3" >/dev/null
  }
  [ $need_src = 0 ] || stanza deb-src $suite /etc/apt/sources.list.d/visor-src.sources
  [ $need_bp = 0 ] || stanza deb $backports /etc/apt/sources.list.d/visor-backports.sources
fi

echo "[deps] apt-get update"
$sudo apt-get update -q
if [ ${#missing[@]} -gt 0 ]; then
  echo "[deps] apt-get install ${missing[*]}"
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -q "${missing[@]}"
fi
if [ ${#missing_bp[@]} -gt 0 ]; then
  echo "[deps] apt-get install -t $backports ${missing_bp[*]}"
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -q --no-install-recommends -t $backports "${missing_bp[@]}"
fi
register_binfmt
