#!/usr/bin/env bash
# make demo: builds the test kernel and the module, boots QEMU, and shows a robust mutex
# surviving its owner's death, first with the kernel's built-in walker, then with the
# robust_futex module's walker, and again with the owner unmapping the mutex's memory first
# (the built-in walker loses it, the module's marks it); then the list_op_pending race reproducer, without and with
# cleanup_robust_list(); then the race stepped instruction by instruction three ways: glibc's
# classic unlock, the same with cleanup_robust_list(), and the merged FUTEX_ROBUST_UNLOCK +
# vDSO try_unlock (7.3).
. "$(dirname "$0")/lib.sh"

build_all
logf=$BUILD/demo.log
log "booting the test kernel (demo mode)"
rc=0
"$ROOT/scripts/qemu.sh" demo "$logf" 300 || rc=$?
grep -aE '^\[demo|^\[unmap|^\[race|^\[stepped|@@@ demo' "$logf" | sed 's/\r$//' || true
[ "$rc" = 0 ] && grep -q '@@@ guest: done' "$logf" || die "the demo did not complete; see $logf"
for s in demo-c unmap-c insmod demo-rust unmap-rust race-without race-with stepped; do
	grep -q "@@@ END $s rc=0" "$logf" || die "demo step $s failed; see $logf"
done
