# robust-futex: a Rust robust-futex walker module and cleanup_robust_list(2) for a patched
# Linux 6.12 test kernel. See README.md.
#
#   make demo     build the test kernel and module, boot QEMU, show a robust mutex survive
#   make check    build everything and run all tests; ends with "N passed, N failed"
#   make bench    build a non-debug variant of the test kernel, measure, report
#
# Build outputs live under build/ (ignored) and are reused between runs.

SCRIPTS := scripts

.PHONY: all demo check bench deps kernel module clippy harness initramfs patches clean distclean

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

# Regenerate patches/ from the commits on top of "base" in build/linux.
patches:
	rm -f patches/*.patch
	git -C build/linux format-patch -q --no-signature --zero-commit -o $(CURDIR)/patches base..HEAD

clean:
	rm -rf build/module build/module-clippy build/harness build/initramfs build/results \
		build/initramfs.cpio.gz build/compat32 build/module-bench build/initramfs-bench \
		build/initramfs-bench.cpio.gz

distclean:
	rm -rf build
