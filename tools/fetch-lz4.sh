#!/bin/sh
# Fetch Debian's lz4 source package into $1 (default build/lz4) with
# apt-get source, and check that it is a release with LZ4_FREESTANDING
# (1.9.4 or later). Nothing from it is ever committed.
set -eu
dest=${1:-build/lz4}
if [ -f "$dest/lib/lz4.c" ] && grep -q LZ4_FREESTANDING "$dest/lib/lz4.h"; then
    exit 0
fi
work=$(dirname "$dest")/lz4-src
rm -rf "$work"
mkdir -p "$work"
echo "fetch-lz4: apt-get source lz4 (Debian source package)"
(cd "$work" && apt-get source -qq lz4 2>&1 | grep -v "unsandboxed" || true)
src=$(find "$work" -mindepth 1 -maxdepth 1 -type d -name 'lz4-*' | head -n 1)
if [ -z "$src" ] || [ ! -f "$src/lib/lz4.c" ]; then
    echo "fetch-lz4: error: apt-get source lz4 gave no lib/lz4.c (is a deb-src entry configured? run tools/deps.sh)" >&2
    exit 1
fi
major=$(sed -n 's/^#define LZ4_VERSION_MAJOR *\([0-9]*\).*/\1/p' "$src/lib/lz4.h")
minor=$(sed -n 's/^#define LZ4_VERSION_MINOR *\([0-9]*\).*/\1/p' "$src/lib/lz4.h")
release=$(sed -n 's/^#define LZ4_VERSION_RELEASE *\([0-9]*\).*/\1/p' "$src/lib/lz4.h")
if ! grep -q LZ4_FREESTANDING "$src/lib/lz4.h"; then
    echo "fetch-lz4: error: lz4 $major.$minor.$release has no LZ4_FREESTANDING (need 1.9.4+)" >&2
    exit 1
fi
rm -rf "$dest"
mv "$src" "$dest"
touch "$dest/lib/lz4.c"
echo "fetch-lz4: lz4 $major.$minor.$release ready in $dest"
