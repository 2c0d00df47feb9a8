#!/usr/bin/env bash
# make bench: builds the non-debug variant of the test kernel (tests/kernel.config +
# tests/bench.config, in its own build dir), its module and initramfs, boots it, runs
# `robust-harness bench` (which times with the TSC itself: the guest kernel's calibration of it
# against the PIT fails on a loaded TCG host), and reduces its samples to
# build/results/bench.{json,txt,rst,svg}. RF_BENCH=unmap,exit runs only those figures (while
# working on them; the reduction then shows only theirs).
export RF_VARIANT=bench
. "$(dirname "$0")/lib.sh"

build_all
out=$BUILD/results
mkdir -p "$out"
log "booting the benchmark kernel (the measurements take about 2 minutes under TCG)"
rc=0
RF_APPEND="kunit.enable=0${RF_BENCH:+ rf.bench=$RF_BENCH}" RF_MEM=2G "$ROOT/scripts/qemu.sh" bench "$out/bench.log" 3000 || rc=$?
grep -q '@@@ END bench rc=0' "$out/bench.log" && [ "$rc" = 0 ] ||
	{ tail -30 "$out/bench.log" >&2; die "the benchmark did not complete; see $out/bench.log"; }
python3 "$ROOT/scripts/bench.py" --log "$out/bench.log" --out "$out/bench" ${RF_BENCH:+--partial}
