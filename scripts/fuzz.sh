#!/usr/bin/env bash
# make fuzz: differential fuzzing of the exit walk in the test guest: RF_FUZZ_SEEDS (100,000)
# seeded random robust lists per ABI (native and compat), each registered by a task that dies,
# under the built-in walker twice (it must agree with itself: the outcomes are deterministic)
# and under the module's walker; any seed whose outcomes differ fails, with its seed and a dump.
# make check runs 1,000 seeds per ABI (section fuzz), without the second built-in pass.
. "$(dirname "$0")/lib.sh"

build_all
seeds=${RF_FUZZ_SEEDS:-100000}
logf=$BUILD/results/fuzz.log
mkdir -p "$BUILD/results"
log "booting the test kernel (fuzz mode, $seeds seeds per ABI)"
rc=0
RF_APPEND="rf.seeds=$seeds" "$ROOT/scripts/qemu.sh" fuzz "$logf" 36000 || rc=$?
sed -n '/@@@ BEGIN fuzz/,/@@@ END fuzz/p' "$logf" | grep -aE '^(# |ok|not ok)' || true
splats=$(grep -aE "BUG:|WARNING:|Oops|Kernel panic|general protection fault|Call Trace:|UBSAN|kernel BUG|INFO: task .* blocked|DEADLOCK" "$logf" || true)
[ -z "$splats" ] || die "the guest log has kernel reports: $(head -3 <<<"$splats")"
[ "$rc" = 0 ] && grep -aq '@@@ END fuzz rc=0' "$logf" || die "fuzz failed; see $logf"
log "fuzz: passed ($logf)"
