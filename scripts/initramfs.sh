#!/usr/bin/env bash
# Packs the guest's initramfs: busybox, /init, the harness, the 32-bit helper and the module.
. "$(dirname "$0")/lib.sh"

root=$BUILD/initramfs$SUFFIX
rm -rf "$root"
mkdir -p "$root"/{bin,proc,sys,dev,tmp}
cp /bin/busybox "$root/bin/busybox"
cp "$ROOT/tests/guest/init" "$root/init"
cp "$BUILD/harness/x86_64-unknown-linux-gnu/release/robust-harness" "$root/harness"
cp "$BUILD/compat32" "$root/compat32"
cp "$MODDIR/rust/robust_futex.ko" "$root/robust_futex.ko"
(cd "$root" && find . | cpio -o -H newc --quiet | gzip -1) >"$INITRAMFS.tmp"
mv "$INITRAMFS.tmp" "$INITRAMFS"
