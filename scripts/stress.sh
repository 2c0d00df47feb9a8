#!/usr/bin/env bash
# make stress: 1,000 (RF_STRESS_CYCLES) insmod/rmmod cycles of the module in the test guest
# while processes, threads and 32-bit processes keep dying with owned robust futexes and a
# thread keeps calling cleanup_robust_list(). Every death must be walked, every call return a
# count or ENOSYS, and the guest log stay free of warnings, lockdep reports and oopses. Prints
# the counts. make check runs the same with 50 cycles (section switch-walkers).
. "$(dirname "$0")/lib.sh"

build_all
cycles=${RF_STRESS_CYCLES:-1000}
logf=$BUILD/results/stress.log
mkdir -p "$BUILD/results"
log "booting the test kernel (stress mode, $cycles cycles)"
rc=0
RF_APPEND="rf.cycles=$cycles" "$ROOT/scripts/qemu.sh" stress "$logf" 3600 || rc=$?
sed -n '/@@@ BEGIN stress/,/@@@ END stress/p' "$logf" | grep -aE '^(# |ok|not ok)' || true
splats=$(grep -aE "BUG:|WARNING:|Oops|Kernel panic|general protection fault|Call Trace:|UBSAN|kernel BUG|INFO: task .* blocked|DEADLOCK" "$logf" || true)
[ -z "$splats" ] || die "the guest log has kernel reports: $(head -3 <<<"$splats")"
[ "$rc" = 0 ] && grep -aq '@@@ END stress rc=0' "$logf" || die "stress failed; see $logf"
log "stress: passed ($logf)"
