#!/usr/bin/env bash
# Builds the static userspace harness (Rust) and its 32-bit helper (C).
. "$(dirname "$0")/lib.sh"

RUSTFLAGS="-C target-feature=+crt-static" cargo build --quiet --release --locked \
	--manifest-path "$ROOT/tests/harness/Cargo.toml" \
	--target x86_64-unknown-linux-gnu --target-dir "$BUILD/harness"
src=$ROOT/tests/compat32/compat32.c
if [ ! -f "$BUILD/compat32" ] || [ "$src" -nt "$BUILD/compat32" ]; then
	gcc -m32 -static -pthread -O2 -Wall -Werror -o "$BUILD/compat32" "$src"
fi
