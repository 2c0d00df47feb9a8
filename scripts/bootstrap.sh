#!/usr/bin/env bash
# Installs what the build and the tests need, idempotently: Debian packages, the pinned
# rustc with rust-src, rustfmt and clippy, and the pinned bindgen-cli.
. "$(dirname "$0")/lib.sh"

as_root() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }

pkgs=(clang lld llvm libclang-dev flex bison bc libelf-dev libssl-dev cpio
      qemu-system-x86 busybox-static dwarves gcc gcc-multilib libc6-dev-i386 make
      python3 python3-docutils xz-utils git man-db file liblmdb-dev "$KERNEL_PKG")
missing=()
for p in "${pkgs[@]}"; do
	dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
	log "installing Debian packages: ${missing[*]}"
	as_root apt-get update -qq
	as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
		--no-install-recommends "${missing[@]}" >/dev/null
fi

command -v rustup >/dev/null || die "rustup is needed to install rustc $RUST_VERSION"
if ! rustup toolchain list | grep -q "^$RUST_VERSION-"; then
	log "installing rustc $RUST_VERSION"
	rustup toolchain install "$RUST_VERSION" --profile minimal \
		--component rust-src --component rustfmt --component clippy
fi
have=$(rustup component list --toolchain "$RUST_VERSION" --installed)
for c in rust-src rustfmt clippy; do
	grep -q "^$c" <<<"$have" || rustup component add --toolchain "$RUST_VERSION" "$c"
done

if [ "$(bindgen --version 2>/dev/null)" != "bindgen $BINDGEN_VERSION" ]; then
	log "installing bindgen-cli $BINDGEN_VERSION"
	cargo install --locked --quiet bindgen-cli --version "$BINDGEN_VERSION"
fi
