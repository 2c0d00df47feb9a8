#!/usr/bin/env bash
# make stress: 1,000 (RF_STRESS_CYCLES) insmod/rmmod cycles of the module in the test guest
# while processes, threads and 32-bit processes keep dying with owned robust futexes and a
# thread keeps calling cleanup_robust_list(). Every death must be walked, every call return a
# count or ENOSYS, and the guest log stay free of warnings, lockdep reports and oopses. Prints
# the counts. make check runs the same with 50 cycles (section switch-walkers). The same boot
# then has 4,096 processes map one memfd with a slot each on it, which one call must clear
# (many-mappers; make check runs it with 256).
. "$(dirname "$0")/lib.sh"

build_all
cycles=${RF_STRESS_CYCLES:-1000}
log "booting the test kernel (stress mode, $cycles cycles)"
guest_section stress stress 7200 "rf.cycles=$cycles"
logf=$BUILD/results/stress.log
sed -n "/@@@ BEGIN many-mappers/,/@@@ END many-mappers/p" "$logf" | grep -aE '^(# |ok|not ok)' || true
grep -aq "@@@ END many-mappers rc=0" "$logf" || die "many-mappers failed; see $logf"
log "many-mappers: passed"
