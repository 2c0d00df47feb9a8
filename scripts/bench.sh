#!/usr/bin/env bash
# make bench: builds the non-debug variant of the test kernel (tests/kernel.config +
# tests/bench.config, in its own build dir), its module and initramfs, boots it with a reliable
# TSC clocksource (without it, TCG guests fall back to jiffies), runs `robust-harness bench`, and
# reduces its samples to build/results/bench.{json,txt,rst,svg}.
export RF_VARIANT=bench
. "$(dirname "$0")/lib.sh"

build_all
out=$BUILD/results
mkdir -p "$out"
# The TSC's calibration against the PIT can fail on a loaded host, leaving the guest on jiffies:
# the harness then refuses to measure ("no-tsc"), and the kernel is booted again.
for attempt in 1 2 3; do
	log "booting the benchmark kernel (the measurements take about 2 minutes under TCG)"
	rc=0
	RF_APPEND="tsc=reliable kunit.enable=0" RF_MEM=2G \
		"$ROOT/scripts/qemu.sh" bench "$out/bench.log" 3000 || rc=$?
	grep -q '# bench: no-tsc' "$out/bench.log" || break
	log "attempt $attempt: the guest's clocksource is not the TSC; booting again"
done
grep -q '@@@ END bench rc=0' "$out/bench.log" && [ "$rc" = 0 ] ||
	{ tail -30 "$out/bench.log" >&2; die "the benchmark did not complete; see $out/bench.log"; }
python3 "$ROOT/scripts/bench.py" --log "$out/bench.log" --out "$out/bench"
