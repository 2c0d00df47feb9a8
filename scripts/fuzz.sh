#!/usr/bin/env bash
# make fuzz: differential fuzzing of the exit walk in the test guest: RF_FUZZ_SEEDS (100,000)
# seeded random robust lists per ABI (native and compat), each registered by a task that dies,
# under the built-in walker twice (it must agree with itself: the outcomes are deterministic)
# and under the module's walker; any seed whose outcomes differ fails, with its seed and a dump.
# make check runs 3,000 seeds per ABI (section fuzz), without the second built-in pass.
. "$(dirname "$0")/lib.sh"

build_all
seeds=${RF_FUZZ_SEEDS:-100000}
log "booting the test kernel (fuzz mode, $seeds seeds per ABI)"
guest_section fuzz fuzz 36000 "rf.seeds=$seeds"
