#!/usr/bin/env bash
# Builds a self-contained release bundle, and with --deb a Debian package:
#   dist/migrator-VERSION-linux-ARCH.tar.gz   bin/ lib/swift/ include/ lib/pkgconfig/ share/{man,bash-completion,zsh,doc}
#   dist/migrator_VERSION_DEBARCH.deb          /usr/bin, /usr/lib/migrator/swift, /usr/include, man pages, completions
# bin/migrator is the release build with its RUNPATH replaced (patchelf) by $ORIGIN/../lib/swift
# (bundle) and $ORIGIN/../lib/migrator/swift (package): nothing from the toolchain is needed, or
# found, where it runs.
# The runtime libraries are the ones `ldd` resolves into the toolchain for migrator and for a
# Swift plugin built with MigrationKit (the example), not a fixed list.
#   scripts/package.sh [--deb]
set -euo pipefail
cd "$(dirname "$0")/.."
deb=false
[ "${1:-}" = "--deb" ] && deb=true
scripts/install-deps.sh
missing=()
for pkg in patchelf binutils $($deb && echo dpkg-dev); do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
done
if [ ${#missing[@]} -gt 0 ]; then
    sudo=""; [ "$(id -u)" -ne 0 ] && sudo="sudo"
    $sudo apt-get update -qq && DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${missing[@]}" >&2
fi

swift build -c release --product migrator >&2
swift build -c release --product ExampleMigrations >&2
bin=$(swift build -c release --show-bin-path)
toolchain_lib=$(dirname "$(readlink -f "$(command -v swift)")")/../lib/swift/linux
toolchain_lib=$(cd "$toolchain_lib" && pwd)

# Stage the bundle.
stage=$(mktemp -d /tmp/migrator-stage.XXXXXX)
trap 'rm -rf "$stage"' EXIT
root=$stage/bundle
mkdir -p "$root"/{bin,lib/swift,lib/pkgconfig,include,share/man/man1,share/bash-completion/completions}
mkdir -p "$root"/share/zsh/site-functions "$root"/share/doc/migrator/examples
install -m 0755 "$bin/migrator" "$root/bin/migrator"
strip --strip-unneeded "$root/bin/migrator"
patchelf --set-rpath '$ORIGIN/../lib/swift:$ORIGIN/../lib/migrator/swift' "$root/bin/migrator"
# The Swift runtime the binary and a Swift plugin resolve into the toolchain, transitively.
for elf in "$bin/migrator" "$bin/libExampleMigrations.so"; do
    LD_LIBRARY_PATH=$toolchain_lib ldd "$elf" | awk -v t="$toolchain_lib/" 'index($3, t) == 1 { print $3 }'
done | sort -u | while read -r lib; do
    install -m 0644 "$lib" "$root/lib/swift/"
    strip --strip-unneeded "$root/lib/swift/$(basename "$lib")"
done
if LD_LIBRARY_PATH= ldd "$root/bin/migrator" | grep -q "not found"; then
    echo "error: the bundle misses a library:" >&2
    ldd "$root/bin/migrator" | grep "not found" >&2
    exit 1
fi
version=$("$root/bin/migrator" --version | awk '{ print $2 }')
arch=$(uname -m)
install -m 0644 Sources/MigratorPluginABI/include/migrator_plugin.h "$root/include/"
pc() {
    cat <<PC
prefix=$1
includedir=\${prefix}/include

Name: migrator-plugin
Description: The C ABI of migrator plugins (migrator_plugin.h)
Version: $version
Cflags: -I\${includedir}
PC
}
pc '${pcfiledir}/../..' >"$root/lib/pkgconfig/migrator-plugin.pc"
"$root/bin/migrator" __generate man "$root/share/man/man1"
"$root/bin/migrator" __generate bash >"$root/share/bash-completion/completions/migrator"
"$root/bin/migrator" __generate zsh >"$root/share/zsh/site-functions/_migrator"
cp README.md CHANGELOG.md docs/*.md "$root/share/doc/migrator/"
cp -r Plugins-Examples/c-plugin Plugins-Examples/swift-plugin Plugins-Examples/sample-data \
    Plugins-Examples/operator-demo "$root/share/doc/migrator/examples/"
chmod -R u=rwX,go=rX "$root"
name=migrator-$version-linux-$arch
mkdir -p dist
rm -rf "dist/$name" "dist/$name.tar.gz"
cp -a "$root" "dist/$name"
tar -C dist --owner=0 --group=0 -czf "dist/$name.tar.gz" "$name"
rm -rf "dist/$name"
echo "dist/$name.tar.gz"

$deb || exit 0
# The Debian package: the same files in the FHS places.
debarch=$(dpkg --print-architecture)
pkg=$stage/deb
mkdir -p "$pkg"/DEBIAN "$pkg"/usr/bin "$pkg"/usr/lib/migrator "$pkg"/usr/share/pkgconfig "$pkg"/usr/include \
    "$pkg"/usr/share/man/man1 "$pkg"/usr/share/bash-completion/completions "$pkg"/usr/share/zsh/vendor-completions \
    "$pkg"/usr/share/doc/migrator
cp -a "$root/bin/migrator" "$pkg/usr/bin/"
cp -a "$root/lib/swift" "$pkg/usr/lib/migrator/swift"
cp -a "$root/include/migrator_plugin.h" "$pkg/usr/include/"
# Header-only, so architecture-independent: /usr/share/pkgconfig (pkg-config searches it).
pc /usr >"$pkg/usr/share/pkgconfig/migrator-plugin.pc"
for page in "$root"/share/man/man1/*.1; do gzip -9n <"$page" >"$pkg/usr/share/man/man1/$(basename "$page").gz"; done
cp -a "$root/share/bash-completion/completions/migrator" "$pkg/usr/share/bash-completion/completions/"
cp -a "$root/share/zsh/site-functions/_migrator" "$pkg/usr/share/zsh/vendor-completions/"
cp -a "$root"/share/doc/migrator/. "$pkg/usr/share/doc/migrator/"
# The fleet's service and timer, installed disabled (no maintainer script enables them).
mkdir -p "$pkg/lib/systemd/system"
cp scripts/systemd/migrator-apply@.service scripts/systemd/migrator-apply@.timer "$pkg/lib/systemd/system/"
# A native package's changelog.gz is a Debian changelog; CHANGELOG.md has the details.
when=$(date -R -u -d "@${SOURCE_DATE_EPOCH:-$(date +%s)}")
printf 'migrator (%s) unstable; urgency=medium\n\n  * Release %s: see /usr/share/doc/migrator/CHANGELOG.md.\n\n -- migrator maintainers <migrator@example.org>  %s\n' \
    "$version" "$version" "$when" | gzip -9n >"$pkg/usr/share/doc/migrator/changelog.gz"
cat >"$pkg/usr/share/doc/migrator/copyright" <<'COPYRIGHT'
Format: https://www.debian.org/doc/packaging-manuals/copyright-format/1.0/
Upstream-Name: migrator
Comment: The Swift runtime libraries in /usr/lib/migrator/swift are from the Swift
 toolchain (swift.org), Apache License 2.0 with Runtime Library Exception.

Files: *
Copyright: 2026 the migrator authors
License: Apache-2.0
 On Debian systems, the full text of the Apache License 2.0 is in
 /usr/share/common-licenses/Apache-2.0.
COPYRIGHT
chmod -R u=rwX,go=rX "$pkg"
# Depends: from dpkg-shlibdeps over every ELF file in the package (the Swift
# runtime is in the package, so only its system dependencies count).
shl=$stage/shlibs
mkdir -p "$shl/debian"
printf 'Source: migrator\n\nPackage: migrator\nArchitecture: any\n' >"$shl/debian/control"
elfs=("$pkg/usr/bin/migrator" "$pkg"/usr/lib/migrator/swift/*.so)
depends=$(cd "$shl" && dpkg-shlibdeps -O -l"$pkg/usr/lib/migrator/swift" --ignore-missing-info "${elfs[@]}" 2>/dev/null \
    | sed -n 's/^shlibs:Depends=//p')
for required in liblmdb0 libssl3 libpq5 libcurl4; do
    case "$depends" in *"$required"*) ;; *) echo "error: Depends lacks $required: $depends" >&2; exit 1 ;; esac
done
size=$(du -sk "$pkg/usr" | cut -f1)
cat >"$pkg/DEBIAN/control" <<CONTROL
Package: migrator
Version: $version
Architecture: $debarch
Maintainer: migrator maintainers <migrator@example.org>
Installed-Size: $size
Depends: $depends
Section: database
Priority: optional
Homepage: https://example.org/migrator
Description: compiled database migrations on an embedded LMDB document store
 migrator applies migrations compiled into shared libraries (plugins, in
 Swift or C) to an embedded JSON document store on LMDB, each in one
 transaction with its record. Plugin code runs in a worker process; pins
 and signatures decide which plugin files may load.
CONTROL
out=dist/migrator_${version}_${debarch}.deb
dpkg-deb --root-owner-group -Zxz --build "$pkg" "$out" >/dev/null
echo "$out"
if command -v lintian >/dev/null; then
    lintian --no-tag-display-limit "$out" || true
fi
