#!/usr/bin/env bash
# Builds the preload library (Rust cdylib) and its test programs (plain glibc C programs).
. "$(dirname "$0")/lib.sh"

out=$BUILD/preload
cargo build --quiet --release --locked --manifest-path "$ROOT/preload/Cargo.toml" \
	--target x86_64-unknown-linux-gnu --target-dir "$out"
mkdir -p "$out/bin"
for t in "$ROOT"/preload/tests/*.c; do
	bin=$out/bin/$(basename "$t" .c)
	if [ ! -f "$bin" ] || [ "$t" -nt "$bin" ] ||
		[ -n "$(find "$ROOT/preload/tests" -name '*.h' -newer "$bin")" ]; then
		gcc -O2 -Wall -Werror -pthread -o "$bin" "$t" $(sed -n 's|^/\* libs: \(.*\) \*/$|\1|p' "$t")
	fi
done
