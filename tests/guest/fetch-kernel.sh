#!/bin/sh
# Fetch Debian's stock kernel: resolve linux-image-amd64 to the versioned
# package it depends on today, download it with apt-get and extract the
# bzImage to $1 (default build/guest/vmlinuz). Never committed.
set -eu
out=${1:-build/guest/vmlinuz}
dir=$(dirname "$out")
mkdir -p "$dir"
pkg=$(apt-cache depends linux-image-amd64 2>/dev/null |
      sed -n 's/^ *Depends: \(linux-image-[0-9].*-amd64\)$/\1/p' | head -n 1)
if [ -z "$pkg" ]; then
    echo "fetch-kernel: error: cannot resolve linux-image-amd64 (apt-get update?)" >&2
    exit 1
fi
if [ -f "$out" ] && [ "$(cat "$dir/kernel-package" 2>/dev/null)" = "$pkg" ]; then
    exit 0
fi
work="$dir/kernel-deb"
rm -rf "$work"
mkdir -p "$work"
echo "fetch-kernel: apt-get download $pkg"
(cd "$work" && apt-get download -qq "$pkg" 2>&1 | grep -v unsandboxed || true)
deb=$(ls "$work"/*.deb 2>/dev/null | head -n 1)
[ -n "$deb" ] || { echo "fetch-kernel: error: download of $pkg failed" >&2; exit 1; }
dpkg-deb -x "$deb" "$work/root"
vmlinuz=$(ls "$work"/root/boot/vmlinuz-* | head -n 1)
cp "$vmlinuz" "$out"
echo "$pkg" > "$dir/kernel-package"
rm -rf "$work"
echo "fetch-kernel: $pkg -> $out ($(stat -c %s "$out") bytes)"
