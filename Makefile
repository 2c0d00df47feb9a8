# robust-futex: a Rust robust-futex walker module and cleanup_robust_list(2) for a patched
# Linux 7.3 test kernel. See README.md.
#
#   make demo     build the test kernel and module, boot QEMU, show a robust mutex survive and
#                 the race reproduced three ways (classic unlock, + cleanup, the merged fix)
#   make check    build everything and run all tests; ends with "N passed, N failed"
#   make check-sanitize  the same tests on a KASAN + UBSAN + DEBUG_LIST kernel (CI runs it)
#   make bench    build a non-debug variant of the test kernel, measure, report
#   make stress   1,000 module load/unload cycles under deaths and cleanup calls
#   make fuzz     differential fuzzing of the exit walk, 100,000 seeds per ABI
#
# Build outputs live under build/ (ignored) and are reused between runs.

SCRIPTS := scripts

.PHONY: all demo check check-sanitize bench stress fuzz deps kernel module clippy harness initramfs patches clean distclean

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

# Regenerate patches/ from the commits on top of "base" in build/linux-7.3 (edit the series
# in a worktree of that tree: scripts/kernel.sh checks its work tree out at base + patches/).
patches:
	rm -f patches/*.patch
	git -C build/linux-7.3 format-patch -q --no-signature --zero-commit -o $(CURDIR)/patches \
		base..HEAD

clean:
	rm -rf build/module-7.3* build/module-clippy-7.3 build/harness build/initramfs-7.3* \
		build/results build/results-7.3* build/compat32 build/preload build/selftests-7.3

distclean:
	rm -rf build
