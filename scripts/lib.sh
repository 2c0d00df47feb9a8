# shellcheck shell=bash
# Common settings of the robust-futex scripts. Sourced, not run.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
BUILD=${RF_BUILD:-$ROOT/build}

# Toolchain pins. The kernel and the module: rustc 1.86 (the module must be built by the rustc
# that built the kernel), built on LLVM 19 as Debian 12's clang-19 is, so that 7.3 inlines its
# C helpers into Rust code (CONFIG_RUST_INLINE_HELPERS needs the same LLVM major version;
# 7.3 accepts rustc >= 1.85). User space (the harness, the preload library): the newer rustc
# they are written for. kernel_rust selects the kernel's for the rest of a script.
KERNEL_RUST_VERSION=1.86.0
RUST_VERSION=1.95.0
BINDGEN_VERSION=0.73.2

# Kernel base: Debian's linux-source-7.3 from trixie-backports (a Debian 12 machine does not
# list that suite: scripts/bootstrap.sh fetches it with a private apt configuration under
# build/apt-7.3), the version the patch series was made against, the series, and the LLVM
# toolchain it is built with (Debian 12's LLVM 19: 7.3 needs 17 or later). The 6.12 base the
# project started on is retired (see README.md).
BASE=7.3
KERNEL_PKG=linux-source-7.3
KERNEL_APT=$BUILD/apt-7.3
KERNEL_TARBALL=$KERNEL_APT/src/usr/src/linux-source-7.3.tar.xz
KERNEL_BASE_VERSION=7.3.4-1~bpo13+1
PATCHES=$ROOT/patches
MODSRC=$ROOT/rust
LLVM_ARG=LLVM=-19
# bindgen must load LLVM 19's libclang, not another one installed (Debian 12's default is 14).
export LIBCLANG_PATH=/usr/lib/llvm-19/lib
BASE_SUFFIX=-7.3

# Build variants of the test kernel, from one source tree: "check" (tests/kernel.config, with
# lock and context debugging), "bench" (the same minus that debugging, tests/bench.config) and
# "sanitize" (check plus KASAN, UBSAN and list debugging, tests/sanitize.config), each with its
# own build dir, module and initramfs. RF_VARIANT selects one.
VARIANT=${RF_VARIANT:-check}
case "$VARIANT" in
check)
	SUFFIX=
	FRAGMENTS=("$ROOT/tests/kernel.config")
	;;
bench)
	SUFFIX=-bench
	FRAGMENTS=("$ROOT/tests/kernel.config" "$ROOT/tests/bench.config")
	;;
sanitize)
	SUFFIX=-sanitize
	FRAGMENTS=("$ROOT/tests/kernel.config" "$ROOT/tests/sanitize.config")
	;;
*)
	printf 'error: unknown RF_VARIANT %s\n' "$VARIANT" >&2
	exit 1
	;;
esac

# RF_KSRC/RF_KOUT select your own kernel tree (patches already applied) and build dir.
SUFFIX=$BASE_SUFFIX$SUFFIX
KSRC=${RF_KSRC:-$BUILD/linux$BASE_SUFFIX}
KOUT=${RF_KOUT:-$BUILD/kbuild$SUFFIX}
OWN_TREE=${RF_KSRC:+1}
MODDIR=$BUILD/module$SUFFIX
INITRAMFS=$BUILD/initramfs$SUFFIX.cpio.gz

export PATH="$HOME/.cargo/bin:$PATH"
export RUSTUP_TOOLCHAIN=$RUST_VERSION
kernel_rust() { export RUSTUP_TOOLCHAIN=$KERNEL_RUST_VERSION; }
JOBS=$(nproc)

log() { printf '==> %s\n' "$*" >&2; }
die() { printf 'error: %s\n' "$*" >&2; exit 1; }

# Copies $1 to $2 only if the content differs, keeping mtimes stable for make.
sync_file() {
	mkdir -p "$(dirname "$2")"
	cmp -s "$1" "$2" || cp -p "$1" "$2"
}

# guest_section MODE SECTION TIMEOUT [KERNEL ARGS]: boots the test kernel in MODE, writes the
# console to build/results/MODE.log, prints the section's KTAP comments and results, and fails
# unless the section ended with rc=0 and the log has no kernel report (the patterns of
# scripts/results.py).
guest_section() {
	local mode=$1 section=$2 limit=$3 append=${4:-} logf rc=0 splats
	logf=$BUILD/results/$mode.log
	mkdir -p "$BUILD/results"
	RF_APPEND="$append" "$ROOT/scripts/qemu.sh" "$mode" "$logf" "$limit" || rc=$?
	sed -n "/@@@ BEGIN $section/,/@@@ END $section/p" "$logf" | grep -aE '^(# |ok|not ok)' || true
	splats=$(python3 -c 'import re, sys; sys.path.insert(0, sys.argv[1]); import results
for l in open(sys.argv[2], errors="replace"):
    if results.SPLATS.search(l): print(l.strip())' "$ROOT/scripts" "$logf")
	[ -z "$splats" ] || die "the guest log has kernel reports: $(head -3 <<<"$splats")"
	[ "$rc" = 0 ] && grep -aq "@@@ END $section rc=0" "$logf" || die "$section failed; see $logf"
	log "$section: passed ($logf)"
}

# Installs what is missing, then builds the kernel of the variant, the module, the harness and
# the initramfs (each step a no-op when nothing changed), with the kernel's futex selftests.
build_all() {
	local step steps=(bootstrap kernel module harness preload selftests initramfs)
	for step in "${steps[@]}"; do
		"$ROOT/scripts/$step.sh"
	done
}
