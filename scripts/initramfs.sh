#!/usr/bin/env bash
# Packs the guest's initramfs: busybox, /init, the harness, the 32-bit helper, the module, and
# the preload library with its test programs and the glibc they run on.
. "$(dirname "$0")/lib.sh"

root=$BUILD/initramfs$SUFFIX
rm -rf "$root"
mkdir -p "$root"/{bin,proc,sys,dev,tmp}
cp /bin/busybox "$root/bin/busybox"
cp "$ROOT/tests/guest/init" "$root/init"
cp "$BUILD/harness/x86_64-unknown-linux-gnu/release/robust-harness" "$root/harness"
cp "$BUILD/compat32" "$root/compat32"
cp "$MODDIR/rust/robust_futex.ko" "$root/robust_futex.ko"
# The kernel's own futex selftests (scripts/selftests.sh), when built for this kernel.
if [ -d "$BUILD/selftests-$BASE" ]; then
	mkdir -p "$root/selftests"
	find "$BUILD/selftests-$BASE" -maxdepth 1 -type f -executable -exec cp {} "$root/selftests/" \;
fi
# The preload library, its test programs, and the build machine's own dynamic loader and
# libraries for them and for the selftests: the distribution's glibc, unmodified.
mkdir -p "$root/preload"
cp "$BUILD/preload/x86_64-unknown-linux-gnu/release/librobust_cleanup.so" "$BUILD"/preload/bin/* \
	"$root/preload/"
for f in "$root"/preload/* "$root"/selftests/*; do
	[ -f "$f" ] || continue
	ldd "$f" | grep -o '/[^ ]*'
done | sort -u | while read -r lib; do
	mkdir -p "$root$(dirname "$lib")"
	cp -L "$lib" "$root$lib"
done
(cd "$root" && find . | cpio -o -H newc --quiet | gzip -1) >"$INITRAMFS.tmp"
mv "$INITRAMFS.tmp" "$INITRAMFS"
