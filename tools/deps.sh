#!/bin/sh
# Install everything the build and the tests need, from Debian's archive only.
# Idempotent: safe to run any number of times; makes no change when all is there.
# Usage: tools/deps.sh STAMPDIR     (the Makefile calls it when its stamp is missing)
set -eu

stampdir=${1:-build/deps}
mkdir -p "$stampdir"

PKGS="build-essential gnu-efi binutils mtools dosfstools cpio busybox-static \
      bochs bochsbios vgabios bochs-term ovmf qemu-system-x86 qemu-utils \
      libcmocka-dev clang libclang-rt-14-dev dpkg-dev python3 kmod gcc-12 libelf1 libssl3 lz4 \
      tmux python3-matplotlib chromium"

missing=""
for p in $PKGS; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" \
        || missing="$missing $p"
done

SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO=sudo

# Debian's lz4 source package is fetched with apt-get source, which needs a
# deb-src entry beside the deb one: tools/deb-src.sh derives it from the
# machine's own deb entries (same mirror, same signing key).
here=$(dirname "$0")
need_update=""
if ! sh "$here/deb-src.sh" check /etc/apt; then
    $SUDO sh "$here/deb-src.sh" ensure /etc/apt
    need_update=1
fi

if [ -n "$missing" ] || [ -n "$need_update" ]; then
    echo "deps: apt-get update"
    $SUDO apt-get update -qq
fi
if [ -n "$missing" ]; then
    echo "deps: installing$missing"
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends $missing
fi
touch "$stampdir/packages.stamp"
