#!/usr/bin/env bash
# Boots the test kernel with the initramfs under TCG with two vCPUs (qboot brings both up),
# runs /init in the given mode, and writes the console to a log.
# Usage: [RF_FILTER=substring] qemu.sh MODE LOG [TIMEOUT_SECONDS]
# RF_FILTER restricts the harness to the cases whose name contains it; RF_APPEND adds to the
# kernel command line; RF_MEM sets the guest's memory (default 1G).
. "$(dirname "$0")/lib.sh"

mode=$1
logf=$2
limit=${3:-1200}
rc=0
timeout --kill-after=10 "$limit" qemu-system-x86_64 \
	-machine pc -accel tcg -bios /usr/share/qemu/qboot.rom \
	-smp 2 -m "${RF_MEM:-1G}" -no-reboot -serial stdio -monitor none -display none \
	-kernel "$KOUT/arch/x86/boot/bzImage" -initrd "$INITRAMFS" \
	-append "console=ttyS0 loglevel=5 panic=-1 oops=panic rf.mode=$mode rf.filter=${RF_FILTER:-} ${RF_APPEND:-}" \
	</dev/null >"$logf" 2>&1 || rc=$?
if [ "$rc" = 124 ] || [ "$rc" = 137 ]; then
	echo "@@@ host: QEMU timed out after ${limit}s" >>"$logf"
fi
exit "$rc"
