#!/usr/bin/env bash
# make bench: builds the non-debug variant of the test kernel (tests/kernel.config +
# tests/bench.config, in its own build dir), its module and initramfs, boots it three times
# (RF_BENCH_RUNS), each time running `robust-harness bench` (which times with the TSC itself:
# the guest kernel's calibration of it against the PIT fails on a loaded TCG host), reduces each
# run's samples to build/results/bench-N.{json,txt,rst,svg}, and the runs to
# build/results/bench.txt: per goal, each run's median, met only if every run meets it.
# RF_BENCH=unmap,exit runs only those figures, once (while working on them; the reduction then
# shows only theirs).
export RF_VARIANT=bench
. "$(dirname "$0")/lib.sh"

build_all
out=$BUILD/results
mkdir -p "$out"
runs=${RF_BENCH_RUNS:-3}
[ -z "${RF_BENCH:-}" ] || runs=1
jsons=()
for run in $(seq 1 "$runs"); do
	log "booting the benchmark kernel, run $run of $runs (about 5 minutes under TCG)"
	rc=0
	RF_APPEND="kunit.enable=0${RF_BENCH:+ rf.bench=$RF_BENCH}" RF_MEM=2G \
		"$ROOT/scripts/qemu.sh" bench "$out/bench-$run.log" 3000 || rc=$?
	grep -q '@@@ END bench rc=0' "$out/bench-$run.log" && [ "$rc" = 0 ] ||
		{ tail -30 "$out/bench-$run.log" >&2; die "the benchmark did not complete; see $out/bench-$run.log"; }
	python3 "$ROOT/scripts/bench.py" --log "$out/bench-$run.log" --out "$out/bench-$run" \
		${RF_BENCH:+--partial}
	jsons+=("$out/bench-$run.json")
done
[ -n "${RF_BENCH:-}" ] || python3 "$ROOT/scripts/bench.py" --combine "${jsons[@]}" --out "$out/bench"
