#!/usr/bin/env bash
# Builds the kernel's own futex selftests (tools/testing/selftests/futex/functional of the test
# kernel's tree) for the guest, against that kernel's UAPI headers: 64-bit, dynamically linked
# (robust_list looks up the vDSO's try_unlock with dlopen()); the initramfs carries the build
# machine's glibc for them. Outputs in build/selftests-7.3. Each runs in the guest as a
# section of its own, its KTAP parsed like the harness's.
#
# One change: robust_list's holders sleep SLEEP_US (100 us) between releasing their waiters
# from a barrier and dying, so that the waiters are inside futex_wait() when the death's wakeup
# comes ("There's a race here ... We wait a little bit", says the test). Under TCG, the more so
# with KASAN, 100 us is not enough: test_robust_list_multiple_elements then fails in some runs
# with no module loaded (a waiter marks the word FUTEX_WAITERS after the death set
# FUTEX_OWNER_DIED). The copy built here sleeps 100 ms; the assertions are the test's own.
. "$(dirname "$0")/lib.sh"

src=$KSRC/tools/testing/selftests
out=$BUILD/selftests-$BASE
hdr=$KOUT/usr/include
if [ ! -f "$hdr/linux/futex.h" ] || [ "$KSRC/include/uapi/linux/futex.h" -nt "$hdr/linux/futex.h" ]; then
	make -s -C "$KSRC" O="$KOUT" "$LLVM_ARG" headers_install INSTALL_HDR_PATH="$KOUT/usr" >/dev/null
fi
mkdir -p "$out/src"
sed 's/^#define SLEEP_US 100$/#define SLEEP_US 100000/' "$src/futex/functional/robust_list.c" \
	>"$out/src/robust_list.c.new"
grep -q '^#define SLEEP_US 100000$' "$out/src/robust_list.c.new" ||
	die "robust_list.c has no SLEEP_US of 100 us to scale"
sync_file "$out/src/robust_list.c.new" "$out/src/robust_list.c"
rm -f "$out/src/robust_list.c.new"
for c in "$src"/futex/functional/*.c; do
	[ "${c##*/}" = robust_list.c ] && c=$out/src/robust_list.c
	t=$out/$(basename "$c" .c)
	case "${t##*/}" in
	# futex_numa_mpol needs libnuma and NUMA; futex_numa is a load generator, not a test;
	# futex_priv_hash's one test needs more than 16 CPUs (the guest has 2).
	futex_numa_mpol | futex_numa | futex_priv_hash) rm -f "$t"; continue ;;
	esac
	[ -f "$t" ] && [ "$t" -nt "$c" ] && continue
	gcc -O2 -g -Wall -pthread -D_FILE_OFFSET_BITS=64 -D_TIME_BITS=64 \
		-I"$src/futex/include" -I"$src" -isystem "$hdr" -o "$t" "$c" -lpthread -lrt
done
