#!/usr/bin/env bash
# Installs what the build and the tests need, idempotently: Debian packages, the two pinned
# rustc (kernel, user space) with rust-src, rustfmt and clippy, and the pinned bindgen-cli.
. "$(dirname "$0")/lib.sh"

as_root() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }

# The kernel is built with LLVM 19 (7.3 wants LLVM >= 17); its headers_install wants rsync.
pkgs=(clang-19 lld-19 llvm-19 libclang-19-dev flex bison bc libelf-dev libssl-dev cpio rsync
      qemu-system-x86 busybox-static dwarves gcc gcc-multilib libc6-dev-i386 make
      python3 python3-docutils xz-utils git man-db file liblmdb-dev)
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

command -v rustup >/dev/null ||
	die "rustup is needed to install rustc $KERNEL_RUST_VERSION and $RUST_VERSION"
for v in "$KERNEL_RUST_VERSION" "$RUST_VERSION"; do
	if ! rustup toolchain list | grep -q "^$v-"; then
		log "installing rustc $v"
		rustup toolchain install "$v" --profile minimal \
			--component rust-src --component rustfmt --component clippy
	fi
	have=$(rustup component list --toolchain "$v" --installed)
	for c in rust-src rustfmt clippy; do
		grep -q "^$c" <<<"$have" || rustup component add --toolchain "$v" "$c"
	done
done

if [ "$(bindgen --version 2>/dev/null)" != "bindgen $BINDGEN_VERSION" ]; then
	log "installing bindgen-cli $BINDGEN_VERSION"
	cargo install --locked --quiet bindgen-cli --version "$BINDGEN_VERSION"
fi

# Debian 12 does not list trixie-backports. Fetch the source package with a private apt
# configuration under build/ (the system's sources stay as they are), once.
if [ ! -f "$KERNEL_APT/version" ]; then
	log "fetching $KERNEL_PKG from trixie-backports into ${KERNEL_APT#"$ROOT/"}"
	mkdir -p "$KERNEL_APT/lists/partial" "$KERNEL_APT/cache/archives/partial"
	echo "deb [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg]" \
		"http://deb.debian.org/debian trixie-backports main" >"$KERNEL_APT/sources.list"
	apt_opts=(-o Dir::Etc::SourceList="$KERNEL_APT/sources.list"
		-o Dir::Etc::SourceParts=/dev/null -o Dir::State::Lists="$KERNEL_APT/lists"
		-o Dir::Cache="$KERNEL_APT/cache" -o APT::Sandbox::User=root)
	apt-get "${apt_opts[@]}" -qq update
	rm -f "$KERNEL_APT"/*.deb
	(cd "$KERNEL_APT" && apt-get "${apt_opts[@]}" -qq download "$KERNEL_PKG")
	deb=$(echo "$KERNEL_APT/${KERNEL_PKG}"_*.deb)
	[ -f "$deb" ] || die "could not download $KERNEL_PKG"
	rm -rf "$KERNEL_APT/src"
	dpkg -x "$deb" "$KERNEL_APT/src"
	[ -f "$KERNEL_TARBALL" ] || die "$deb has no ${KERNEL_TARBALL#"$KERNEL_APT/src"}"
	dpkg-deb -f "$deb" Version >"$KERNEL_APT/version"
	rm -f "$deb"
	log "$KERNEL_PKG $(cat "$KERNEL_APT/version")"
fi
