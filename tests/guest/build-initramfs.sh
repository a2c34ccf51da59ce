#!/bin/sh
# Build the guest initramfs: Debian's busybox-static, the project's static
# memcheck, kcoreread and workload, and tests/guest/init, as a gzip'd newc cpio archive. When the
# balloon driver has been built (overcommithv_balloon.ko beside OUT.img, by
# build-module.sh) it goes in as /lib/modules/overcommithv_balloon.ko; init loads it
# when the kernel command line says balloon=1.
#   build-initramfs.sh OUT.img
set -eu
out=${1:-build/guest/initrd.img}
here=$(cd "$(dirname "$0")" && pwd)
dir=$(dirname "$out")
root="$dir/initramfs-root"
rm -rf "$root"
mkdir -p "$root/bin" "$root/proc" "$root/sys" "$root/dev" "$root/tmp"
bb=/bin/busybox
[ -x "$bb" ] || { echo "build-initramfs: $bb missing (busybox-static)" >&2; exit 1; }
cp "$bb" "$root/bin/busybox"
for app in sh mount echo cat uname poweroff sleep ls insmod rmmod; do
    ln -s busybox "$root/bin/$app"
done
gcc -static -O2 -Wall -Wextra -Werror -o "$root/bin/memcheck" "$here/memcheck.c"
gcc -static -O2 -Wall -Wextra -Werror -o "$root/bin/kcoreread" "$here/kcoreread.c"
gcc -static -O2 -Wall -Wextra -Werror -o "$root/bin/workload" "$here/workload.c"
if [ -f "$dir/overcommithv_balloon.ko" ]; then
    mkdir -p "$root/lib/modules"
    cp "$dir/overcommithv_balloon.ko" "$root/lib/modules/overcommithv_balloon.ko"
fi
cp "$here/init" "$root/init"
chmod +x "$root/init"
(cd "$root" && find . | LC_ALL=C sort | cpio -o -H newc --quiet) | gzip -9 > "$out"
rm -rf "$root"
echo "build-initramfs: $out ($(stat -c %s "$out") bytes)"
