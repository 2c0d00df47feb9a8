#!/usr/bin/env bash
# make stress: 1,000 (RF_STRESS_CYCLES) insmod/rmmod cycles of the module in the test guest
# while processes, threads and 32-bit processes keep dying with owned robust futexes and a
# thread keeps calling cleanup_robust_list(). Every death must be walked, every call return a
# count or ENOSYS, and the guest log stay free of warnings, lockdep reports and oopses. Prints
# the counts. make check runs the same with 50 cycles (section switch-walkers).
. "$(dirname "$0")/lib.sh"

build_all
cycles=${RF_STRESS_CYCLES:-1000}
log "booting the test kernel (stress mode, $cycles cycles)"
guest_section stress stress 7200 "rf.cycles=$cycles"
