#!/usr/bin/env bash
# Prepares and builds the test kernel:
#  1. extracts Debian's linux-source-7.3 into build/linux-7.3, as a git tree (never committed);
#  2. brings that tree to "base + the series" (patches/*.patch), touching only the files that
#     differ;
#  3. configures it from tinyconfig + the variant's fragments (only when they change);
#  4. builds it with LLVM (a no-op make when nothing changed).
# With RF_KSRC set (your own tree, patches applied), steps 1 and 2 are skipped.
. "$(dirname "$0")/lib.sh"
kernel_rust

git_k() { git -C "$KSRC" -c core.excludesFile=/dev/null -c user.name=robust-futex \
	-c user.email=robust-futex@localhost "$@"; }

# The version of the source package bootstrap.sh downloaded.
pkg_version() {
	cat "$KERNEL_APT/version"
}

extract() {
	local version
	version=$(pkg_version)
	if [ -f "$KSRC/.rf-version" ] && [ "$(cat "$KSRC/.rf-version")" = "$version" ]; then
		return
	fi
	[ "$version" = "$KERNEL_BASE_VERSION" ] ||
		log "warning: patches were made against $KERNEL_PKG $KERNEL_BASE_VERSION;" \
			"trying the installed $version"
	log "extracting $KERNEL_PKG $version"
	rm -rf "$KSRC" "$KOUT"
	mkdir -p "$(dirname "$KSRC")"
	local tmp
	tmp=$(mktemp -d "$BUILD/extract.XXXXXX")
	tar -C "$tmp" -xf "$KERNEL_TARBALL"
	mv "$tmp/$KERNEL_PKG" "$KSRC"
	rmdir "$tmp"
	# Debian's tarball ignores everything at the top level: track it all.
	git_k init -q
	git_k add -f -A .
	git_k commit -q -m "Debian $KERNEL_PKG $version"
	git_k tag -f base >/dev/null
	echo "$version" >"$KSRC/.rf-version"
}

apply_patches() {
	# Compute base + patches in a scratch index, without touching the work tree.
	local idx commit p tree
	idx=$(mktemp)
	trap 'rm -f "$idx"' RETURN
	commit=$(git_k rev-parse base)
	GIT_INDEX_FILE=$idx git_k read-tree base
	for p in "$PATCHES"/*.patch; do
		GIT_INDEX_FILE=$idx git_k apply --cached "$p" 2>/dev/null ||
			die "patch $(basename "$p") does not apply to $KERNEL_PKG $(pkg_version)" \
				"(the series was made against $KERNEL_BASE_VERSION)"
		tree=$(GIT_INDEX_FILE=$idx git_k write-tree)
		commit=$(git_k commit-tree "$tree" -p "$commit" -m "$(basename "$p")")
	done
	if [ "$(git_k rev-parse 'HEAD^{tree}')" != "$(git_k rev-parse "$commit^{tree}")" ] ||
		[ -n "$(git_k status --porcelain --untracked-files=no)" ]; then
		log "applying ${PATCHES#"$ROOT/"}/ to $KSRC"
		# Checkout rewrites only the files that differ, so make rebuilds only what changed.
		git_k checkout -q -f --detach "$commit"
	fi
}

# The config lines the fragments ask for, later fragments overriding earlier ones.
wanted_config() {
	grep -hE '^(CONFIG_|# CONFIG_)' "${FRAGMENTS[@]}" |
		awk '{ k = ($1 == "#") ? $2 : $1; sub(/=.*/, "", k); v[k] = $0; o[k] = NR }
		     END { for (k in v) print o[k] "\t" v[k] }' | sort -n | cut -f2-
}

configure() {
	local stamp
	# Only the config lines count: a comment edited in a fragment does not reconfigure. The
	# compilers do (an option such as RUST_INLINE_HELPERS depends on their versions), so that
	# a changed pin reconfigures and checks again that every line stuck.
	stamp=$({ wanted_config; rustc --version; clang-19 --version | head -1; } |
		sha256sum | cut -d' ' -f1)
	if [ -f "$KOUT/.config" ] && [ "$(cat "$KOUT/.rf-config" 2>/dev/null)" = "$stamp" ]; then
		return
	fi
	log "configuring $KOUT from tinyconfig + ${FRAGMENTS[*]#"$ROOT/"}"
	mkdir -p "$KOUT"
	make -s -C "$KSRC" O="$KOUT" "$LLVM_ARG" tinyconfig >/dev/null
	"$KSRC"/scripts/kconfig/merge_config.sh -m -O "$KOUT" "$KOUT/.config" \
		"${FRAGMENTS[@]}" >/dev/null
	make -s -C "$KSRC" O="$KOUT" "$LLVM_ARG" olddefconfig
	local missing
	# An option asked to be off sticks if it is not on: one whose dependencies are off is not
	# even listed.
	missing=$(wanted_config |
		while read -r line; do
			case $line in
			"# CONFIG_"*)
				opt=$(echo "$line" | cut -d' ' -f2)
				# ... and if the option exists at all (a misspelled one would pass).
				! grep -q "^$opt=" "$KOUT/.config" &&
					grep -rqxE --include='Kconfig*' "\s*(menu)?config ${opt#CONFIG_}" "$KSRC"
				;;
			*) grep -qxF "$line" "$KOUT/.config" ;;
			esac || echo "  $line"
		done)
	[ -z "$missing" ] || die "config lines that did not stick:"$'\n'"$missing"
	make -s -C "$KSRC" O="$KOUT" "$LLVM_ARG" rustavailable >/dev/null ||
		die "Rust is not available to the kernel build (make $LLVM_ARG rustavailable)"
	echo "$stamp" >"$KOUT/.rf-config"
}

if [ -z "$OWN_TREE" ]; then
	[ -f "$KERNEL_TARBALL" ] || die "$KERNEL_TARBALL missing: run scripts/bootstrap.sh"
	mkdir -p "$BUILD"
	extract
	apply_patches
else
	[ -f "$KSRC/include/linux/futex_robust.h" ] ||
		die "$KSRC lacks include/linux/futex_robust.h: apply patches/ first (git am)"
fi
configure
log "building the kernel in $KOUT"
make -s -C "$KSRC" O="$KOUT" "$LLVM_ARG" -j"$JOBS"
