#!/usr/bin/env bash
# make check: builds everything, runs the host checks and the guest (harness with the C
# walker, KUnit suites, harness with the module's walker, load/unload under fire, harness again
# after rmmod, differential fuzzing), and ends with "N passed, N failed". Exits non-zero on any
# failure. make check-sanitize (RF_VARIANT=sanitize) runs the guest part on the sanitizer
# kernel (KASAN, UBSAN, list debugging), where any report fails it. The guest also runs the
# kernel's own futex selftests, with the built-in walker and with the module loaded.
. "$(dirname "$0")/lib.sh"

out=$BUILD/results$SUFFIX
mkdir -p "$out"
# Start afresh, but keep the last make bench results.
find "$out" -mindepth 1 -maxdepth 1 ! -name 'bench*' -exec rm -rf {} +
host=$out/host.tsv
: >"$host"

# record NAME CMD...: runs CMD, records PASS/FAIL with the last lines of its output.
record() {
	local name=$1 o
	shift
	if o=$("$@" 2>&1); then
		printf '%s\tPASS\t\n' "$name" >>"$host"
	else
		printf '%s\tFAIL\t%s\n' "$name" "$(tail -5 <<<"$o" | tr '\n\t' '  ')" >>"$host"
		printf '%s\n' "$o" >"$out/${name//\//_}.log"
	fi
}

build_all

# Host checks: the patch series, formatting, lints, headers (once, not per kernel variant).
# checkpatch's ENOSYS rule ("ENOSYS means invalid syscall nr") fires on any use of the name;
# cleanup_robust_list() returns it exactly in that sense (no implementation: as if the call did
# not exist), as patch 0004 explains, so that one rule is ignored. So is FILE_PATH_CHANGES
# ("does MAINTAINERS need updating?"), which fires on any new file in a patch that leaves
# MAINTAINERS alone: patch 0012's kernel/futex/robust_kunit.c is under the FUTEX SUBSYSTEM
# entry's "F: kernel/futex/*".
if [ "$VARIANT" = check ]; then
for p in "$PATCHES"/*.patch; do
	record "checkpatch/$(basename "$p" .patch | cut -c1-40)" \
		"$KSRC/scripts/checkpatch.pl" --strict --no-tree -q --ignore ENOSYS,FILE_PATH_CHANGES "$p"
done
fi
if [ "$VARIANT" = check ]; then
record rustfmt/module env RUSTUP_TOOLCHAIN="$KERNEL_RUST_VERSION" \
	rustfmt --color never --check --config-path "$KSRC/.rustfmt.toml" "$MODSRC"/*.rs
record clippy/module "$ROOT/scripts/module.sh" CLIPPY=1
fi
if [ "$VARIANT" = check ]; then
record rustfmt/harness cargo fmt --check --manifest-path "$ROOT/tests/harness/Cargo.toml"
record clippy/harness cargo clippy --quiet --release --locked \
	--manifest-path "$ROOT/tests/harness/Cargo.toml" --target-dir "$BUILD/harness" \
	-- -D warnings
# The preload library: formatting, lints, and its unit tests (the record of shared mappings).
preload=(--manifest-path "$ROOT/preload/Cargo.toml" --target-dir "$BUILD/preload")
record rustfmt/preload cargo fmt --check --manifest-path "$ROOT/preload/Cargo.toml"
record clippy/preload cargo clippy --quiet --release --locked "${preload[@]}" --all-targets \
	-- -D warnings
record preload/unit-tests cargo test --quiet --release --locked "${preload[@]}"
# The mutex layout the library reads is the one of the glibc it runs on: __kind at 16, robust bit.
record preload/glibc_layout "$BUILD/preload/bin/layout"
# The man page renders with man -l, and groff has nothing to say about it.
man_renders() {
	local err
	err=$(MANWIDTH=80 man --warnings -l "$1" 2>&1 >/dev/null)
	[ -z "$err" ] || { echo "$err"; return 1; }
	MANWIDTH=80 man -l "$1" | grep -q "cleanup_robust_list"
}
record manpage_renders man_renders "$ROOT/Documentation/robust-futex/cleanup_robust_list.2"
record documentation_rst python3 "$ROOT/scripts/rstcheck.py" "$ROOT"/Documentation/robust-futex/*.rst
record uapi_header_matches_kernel diff -u "$ROOT/include/linux/futex_robust.h" \
	"$KSRC/include/linux/futex_robust.h"
fi

log "booting the $VARIANT test kernel"
"$ROOT/scripts/qemu.sh" check "$out/guest.log" || true

leaks=()
[ "$VARIANT" = sanitize ] && leaks=(--kmemleak)
python3 "$ROOT/scripts/results.py" --log "$out/guest.log" --host "$host" "${leaks[@]}" \
	--kunit-py "$KSRC/tools/testing/kunit/kunit.py" --outdir "$out" ||
	{ log "guest log: $out/guest.log"; tail -40 "$out/guest.log" >&2; exit 1; }
