#!/bin/sh
# Fetch the kernel headers that match the kernel fetch-kernel.sh fetched:
# its DIR/kernel-package names linux-image-RELEASE, whose headers are
# linux-headers-RELEASE, which depends on linux-headers-*-common (the
# source-side headers) and linux-kbuild-* (the build tools). Downloads the
# three with apt-get (no root install) and extracts them to DIR/headers/,
# with the absolute paths they carry made relative, so that
#   make -C DIR/headers/usr/src/linux-headers-RELEASE M=... modules
# works there. Never committed. Does nothing when already extracted.
#   fetch-headers.sh [DIR]     (default build/guest)
set -eu
dir=${1:-build/guest}
kpkg=$(cat "$dir/kernel-package" 2>/dev/null || true)
case "$kpkg" in
    linux-image-*) ;;
    *) echo "fetch-headers: error: no kernel in $dir/kernel-package (run fetch-kernel.sh first)" >&2
       exit 1 ;;
esac
release=${kpkg#linux-image-}
hpkg=linux-headers-$release
out="$dir/headers"
if [ "$(cat "$out/package" 2>/dev/null)" = "$hpkg" ] && [ -d "$out/usr/src/$hpkg" ]; then
    exit 0
fi

deps=$(apt-cache depends "$hpkg" 2>/dev/null |
       sed -n 's/^ *Depends: \(linux-\(headers\|kbuild\)-[^ ]*\)$/\1/p')
common=$(echo "$deps" | grep -- '-common$' | head -n 1 || true)
kbuild=$(echo "$deps" | grep '^linux-kbuild-' | head -n 1 || true)
if [ -z "$common" ] || [ -z "$kbuild" ]; then
    echo "fetch-headers: error: cannot resolve the dependencies of $hpkg (apt-get update?)" >&2
    exit 1
fi
# The kernel was built with a given gcc (linux-compiler-gcc-N-x86 depends
# on gcc-N); modules must be built with the same one.
cc=$(apt-cache depends "$hpkg" 2>/dev/null |
     sed -n 's/^ *Depends: linux-compiler-\(gcc-[0-9]*\)-.*$/\1/p' | head -n 1)
if [ -n "$cc" ] && ! command -v "$cc" >/dev/null 2>&1; then
    echo "fetch-headers: error: $hpkg needs $cc (Debian package $cc), which is not installed" >&2
    exit 1
fi

# The kbuild tools are programs: their libraries must be installed.
missing=""
for lib in $(apt-cache depends "$kbuild" 2>/dev/null | sed -n 's/^ *Depends: \([^ <]*\)$/\1/p'); do
    dpkg-query -W -f='${Status}' "$lib" 2>/dev/null | grep -q "install ok installed" ||
        missing="$missing $lib"
done
if [ -n "$missing" ]; then
    echo "fetch-headers: error: $kbuild needs$missing, not installed (tools/deps.sh)" >&2
    exit 1
fi

work="$dir/headers-deb"
rm -rf "$work" "$out"
mkdir -p "$work/root"
echo "fetch-headers: apt-get download $hpkg $common $kbuild"
(cd "$work" && apt-get download -qq "$hpkg" "$common" "$kbuild" 2>&1 | grep -v unsandboxed || true)
for p in "$hpkg" "$common" "$kbuild"; do
    deb=$(ls "$work/${p}_"*.deb 2>/dev/null | head -n 1)
    [ -n "$deb" ] || { echo "fetch-headers: error: download of $p failed" >&2; exit 1; }
    dpkg-deb -x "$deb" "$work/root"
done
root="$work/root"

# The -RELEASE tree's Makefile includes the -common one by its absolute
# path; make runs it from the -RELEASE folder (make -C), so a path
# relative to that folder works wherever the tree is.
sed -i 's|^include /usr/src/|include ../|' "$root/usr/src/$hpkg/Makefile"
# Absolute symlinks (lib/modules/RELEASE/build and source): relative ones.
find "$root" -type l -lname '/*' | while read -r link; do
    target=$(readlink "$link")
    rel=$(realpath -m --relative-to="$(dirname "$link")" "$root$target")
    ln -sfn "$rel" "$link"
done
if grep -q '/usr/src/' "$root/usr/src/$hpkg/Makefile"; then
    echo "fetch-headers: error: $hpkg/Makefile still names /usr/src" >&2
    exit 1
fi
[ -x "$root/usr/src/$hpkg/scripts/basic/fixdep" ] ||
    { echo "fetch-headers: error: kbuild tools missing from $kbuild" >&2; exit 1; }

mv "$root" "$out"
echo "$hpkg" > "$out/package"
rm -rf "$work"
echo "fetch-headers: $hpkg ($common, $kbuild) -> $out/usr/src/$hpkg"
