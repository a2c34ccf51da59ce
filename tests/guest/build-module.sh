#!/bin/sh
# Build the balloon driver (guest/linux) as a module for the guest kernel
# that fetch-kernel.sh fetched, against its Debian headers (fetched here
# by fetch-headers.sh). Kbuild builds an external module in the folder it
# is given, so the sources are copied to DIR/overcommithv_balloon-build/ first and
# nothing is written into guest/linux.
#   build-module.sh [OUT.ko]     (default build/guest/overcommithv_balloon.ko)
set -eu
out=${1:-build/guest/overcommithv_balloon.ko}
here=$(cd "$(dirname "$0")" && pwd)
src=$(cd "$here/../../guest/linux" && pwd)
mkdir -p "$(dirname "$out")"
dir=$(cd "$(dirname "$out")" && pwd)

sh "$here/fetch-headers.sh" "$dir"
kpkg=$(cat "$dir/kernel-package")
release=${kpkg#linux-image-}
kdir="$dir/headers/usr/src/linux-headers-$release"

obj="$dir/overcommithv_balloon-build"
mkdir -p "$obj"
for f in Kbuild overcommithv_balloon.c; do
    cmp -s "$src/$f" "$obj/$f" || cp -p "$src/$f" "$obj/$f"
done

# The calling make's flags and variables (CC=..., -j) are not the kernel's.
log="$obj/build.log"
if ! env -u MAKEFLAGS -u MFLAGS -u MAKELEVEL -u MAKEOVERRIDES \
        make -C "$kdir" M="$obj" modules > "$log" 2>&1; then
    cat "$log" >&2
    echo "build-module: error: kbuild failed (log: $log)" >&2
    exit 1
fi
if grep -qi "warning:" "$log"; then
    grep -i -B2 -A4 "warning:" "$log" >&2
    echo "build-module: error: compiler warnings (log: $log)" >&2
    exit 1
fi

modinfo=$(command -v modinfo || echo /sbin/modinfo)
vermagic=$("$modinfo" -F vermagic "$obj/overcommithv_balloon.ko")
case "$vermagic" in
    "$release "*) ;;
    *) echo "build-module: error: vermagic '$vermagic' is not for $release" >&2; exit 1 ;;
esac
# Without its debug information (as INSTALL_MOD_STRIP=1 would): a tenth of the size.
strip --strip-debug -o "$out" "$obj/overcommithv_balloon.ko"
echo "build-module: $out ($(stat -c %s "$out") bytes, vermagic $vermagic)"
