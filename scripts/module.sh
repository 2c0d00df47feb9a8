#!/usr/bin/env bash
# Builds the robust_futex module out of tree against the test kernel. The sources are mirrored
# into build/module (Kbuild writes its outputs next to the sources). With CLIPPY=1 as first
# argument, builds a separate copy with clippy and fails on any warning.
. "$(dirname "$0")/lib.sh"
kernel_rust

dir=$MODDIR
extra=()
if [ "${1:-}" = CLIPPY=1 ]; then
	dir=$BUILD/module-clippy$SUFFIX
	extra=(CLIPPY=1)
fi
sync_file "$ROOT/Kbuild" "$dir/Kbuild"
for f in "$MODSRC"/Kbuild "$MODSRC"/*.rs; do
	sync_file "$f" "$dir/rust/${f##*/}"
done
for f in "$dir"/rust/*.rs; do
	[ -f "$MODSRC/${f##*/}" ] || rm -f "$f"
done
out=$(make -s -C "$KOUT" M="$dir" "$LLVM_ARG" "${extra[@]}" 2>&1) || { echo "$out"; exit 1; }
[ -z "$out" ] || echo "$out"
if [ ${#extra[@]} -gt 0 ] && grep -q "^warning" <<<"$out"; then
	die "clippy warnings in the module"
fi
