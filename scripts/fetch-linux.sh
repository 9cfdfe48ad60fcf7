#!/usr/bin/env bash
# Fetches what the Linux guest tests and `npm run bench -- linux` boot, as a
# user of Debian has it: the stock kernel (linux-image-<abi>-amd64-unsigned,
# built with CONFIG_XEN_PV=y, CONFIG_HVC_XEN=y) and busybox-static, with
# `apt-get download` (no root needed once the package lists are there).
# Unpacked into build/linux/, a cache: nothing is fetched while the files
# are there; the initramfs is built from busybox (needs `npm run build`).
# Prints the kernel's path.
set -euo pipefail
cd "$(dirname "$0")/.."
out=build/linux
mkdir -p "$out"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

# The kernel linux-image-amd64 (the metapackage users install) depends on, unsigned.
kernel_pkg() {
  apt-cache depends linux-image-amd64 2>/dev/null | sed -n 's/^ *Depends: \(linux-image-[0-9].*-amd64\)$/\1-unsigned/p' | head -n1
}
pkg=$(kernel_pkg)
if [ -z "$pkg" ] && [ "$(id -u)" = 0 ]; then
  apt-get update -qq
  pkg=$(kernel_pkg)
fi
[ -n "$pkg" ] || { echo "fetch-linux: apt knows no linux-image-amd64 (run apt-get update as root)" >&2; exit 1; }

if ! ls "$out"/vmlinuz-* >/dev/null 2>&1; then
  (cd "$work" && apt-get download -q "$pkg" >/dev/null 2>&1 || apt-get download "$pkg")
  dpkg-deb -x "$work"/linux-image-*.deb "$work/k"
  cp "$work"/k/boot/vmlinuz-* "$work"/k/boot/config-* "$out"/
fi
if [ ! -x "$out/busybox" ]; then
  (cd "$work" && apt-get download -q busybox-static >/dev/null 2>&1 || apt-get download busybox-static)
  dpkg-deb -x "$work"/busybox-static_*.deb "$work/b"
  cp "$work/b/bin/busybox" "$out/busybox"
fi
# The initramfs around it (src/linux/initramfs.ts; rebuilt each time: it is cheap, and follows /init).
node dist/linux/initramfs.js "$out/busybox" "$out/initramfs.cpio.gz"
ls "$out"/vmlinuz-*
