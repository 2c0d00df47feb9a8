# robust-futex: a Rust robust-futex walker module and cleanup_robust_list(2) for a patched
# Linux 6.12 test kernel. See README.md.
#
#   make demo     build the test kernel and module, boot QEMU, show a robust mutex survive
#   make check    build everything and run all tests; ends with "N passed, N failed"
#   make check-sanitize  the same tests on a KASAN + UBSAN + DEBUG_LIST kernel (CI runs it)
#   make bench    build a non-debug variant of the test kernel, measure, report
#   make stress   1,000 module load/unload cycles under deaths and cleanup calls
#   make fuzz     differential fuzzing of the exit walk, 100,000 seeds per ABI
#   make check-7.3  the move to Linux 7.3 so far: its patch series, its kernel booted with the
#                 harness on the built-in walker and the kernel's own futex selftests
#
# Build outputs live under build/ (ignored) and are reused between runs.

SCRIPTS := scripts

.PHONY: all demo check check-sanitize check-7.3 bench stress fuzz deps kernel module clippy harness initramfs patches clean distclean

all: module

deps:
	$(SCRIPTS)/bootstrap.sh

kernel: deps
	$(SCRIPTS)/kernel.sh

module: kernel
	$(SCRIPTS)/module.sh

clippy: kernel
	$(SCRIPTS)/module.sh CLIPPY=1

harness: deps
	$(SCRIPTS)/harness.sh

initramfs: module harness
	$(SCRIPTS)/initramfs.sh

demo:
	$(SCRIPTS)/demo.sh

check:
	$(SCRIPTS)/check.sh

bench:
	$(SCRIPTS)/bench.sh

stress:
	$(SCRIPTS)/stress.sh

fuzz:
	$(SCRIPTS)/fuzz.sh

check-sanitize:
	RF_VARIANT=sanitize $(SCRIPTS)/check.sh

# The move to Linux 7.3, as far as it has come (not in CI yet).
check-7.3:
	RF_BASE=7.3 $(SCRIPTS)/check.sh

# Regenerate patches/ from the commits on top of "base" in build/linux.
patches:
	rm -f patches/*.patch
	git -C build/linux format-patch -q --no-signature --zero-commit -o $(CURDIR)/patches base..HEAD

clean:
	rm -rf build/module build/module-clippy build/harness build/initramfs build/results \
		build/initramfs.cpio.gz build/compat32 build/module-bench build/initramfs-bench \
		build/initramfs-bench.cpio.gz build/module-sanitize build/initramfs-sanitize \
		build/initramfs-sanitize.cpio.gz build/results-sanitize build/preload

distclean:
	rm -rf build
