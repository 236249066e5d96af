#!/usr/bin/env bash
# End-to-end test of the release artifacts (run by scripts/test.sh after the Swift tests):
# builds them with scripts/package.sh --deb, then, for the bundle and for the extracted .deb,
# runs migrator with a scrubbed environment and checks that nothing comes from the toolchain,
# builds the C example with only pkg-config pointed at the artifact, and lists and applies the
# example C and Swift plugins to a fresh database. Every check that fails is printed; the exit
# status is the number of failures (capped at 1).
set -uo pipefail
cd "$(dirname "$0")/../.."
failures=0
fail() { echo "FAIL: $*" >&2; failures=$((failures + 1)); }
pass() { echo "ok: $*"; }

out=$(scripts/package.sh --deb 2>/tmp/package.$$.log) || { cat /tmp/package.$$.log >&2; echo "FAIL: package.sh" >&2; exit 1; }
rm -f /tmp/package.$$.log
bundle=$(echo "$out" | grep '\.tar\.gz$')
deb=$(echo "$out" | grep '\.deb$')
[ -f "$bundle" ] && [ -f "$deb" ] || { echo "FAIL: artifacts missing: $out" >&2; exit 1; }
toolchain=$(dirname "$(dirname "$(readlink -f "$(command -v swift)")")")
swift_plugin=$(swift build -c release --show-bin-path)/libExampleMigrations.so
work=$(mktemp -d /tmp/migrator-package-test.XXXXXX)
trap 'rm -rf "$work"' EXIT
clean() { env -i PATH=/usr/bin:/bin HOME="$work" "$@"; }

# check NAME MIGRATOR PKG_CONFIG_ENV...: the checks both artifacts must pass.
check() {
    local name=$1 m=$2
    shift 2
    local pcenv=("$@")
    if clean ldd "$m" | grep -q "$toolchain"; then fail "$name: ldd shows the toolchain: $(clean ldd "$m" | grep "$toolchain")"; else pass "$name: ldd shows no toolchain path"; fi
    if clean ldd "$m" | grep -q "not found"; then fail "$name: a library is not found"; else pass "$name: every library resolves"; fi
    clean "$m" --version | grep -q "^migrator [0-9]" && pass "$name: --version" || fail "$name: --version"
    local dir=$work/$name-migrations db=$work/$name-db
    mkdir -m 755 "$dir"
    # The C example, with migrator_plugin.h from pkg-config alone.
    cp -r "$(dirname "$m")/../share/doc/migrator/examples/c-plugin" "$work/$name-c" 2>/dev/null \
        || cp -r Plugins-Examples/c-plugin "$work/$name-c"
    if clean "${pcenv[@]}" make -s -C "$work/$name-c" OUT="$dir" CC=cc >"$work/$name-make.log" 2>&1; then
        pass "$name: the C example builds with pkg-config ($(clean "${pcenv[@]}" pkg-config --cflags migrator-plugin))"
    else
        fail "$name: the C example does not build with pkg-config: $(cat "$work/$name-make.log")"
    fi
    install -m 0644 "$swift_plugin" "$dir/example_swift_migrations.so"
    local list
    list=$(clean "$m" list --dir "$dir" 2>&1)
    echo "$list" | grep -q "5 migration(s) in 2 plugin(s)" && pass "$name: lists the C and Swift plugins" || fail "$name: list: $list"
    # Apply, watching which libraries the runner and its worker initialise.
    local apply
    apply=$(clean LD_DEBUG=libs "$m" apply --dir "$dir" --db "$db" 2>&1)
    echo "$apply" | grep -q "applied 5 migration(s)" && pass "$name: applies both plugins" || fail "$name: apply: $(echo "$apply" | grep -v ':  ' | tail -5)"
    if echo "$apply" | grep "calling init:" | grep -q "$toolchain"; then
        fail "$name: a toolchain library was loaded: $(echo "$apply" | grep "calling init:" | grep "$toolchain" | head -3)"
    else
        pass "$name: no toolchain library was loaded (LD_DEBUG)"
    fi
    local status
    status=$(clean "$m" status --dir "$dir" --db "$db" 2>&1)
    echo "$status" | grep -q "5 applied" && pass "$name: status" || fail "$name: status: $status"
    clean MANWIDTH=80 man -l "$(dirname "$m")/../share/man/man1/migrator-apply.1"* 2>/dev/null | grep -q "Apply pending migrations" \
        && pass "$name: man migrator-apply renders" || fail "$name: man page"
}

mkdir "$work/bundle"
tar -C "$work/bundle" -xzf "$bundle"
b=$(echo "$work"/bundle/*)
check bundle "$b/bin/migrator" PKG_CONFIG_PATH="$b/lib/pkgconfig"
# Bash completion from the bundle completes a partial command.
reply=$(PATH="$b/bin:/usr/bin:/bin" bash -c "source '$b/share/bash-completion/completions/migrator'
COMP_WORDS=(migrator ro); COMP_CWORD=1; _migrator; echo \"\${COMPREPLY[*]}\"")
[ "$reply" = "rollback" ] && pass "bundle: bash completion" || fail "bundle: bash completion gave '$reply'"

mkdir "$work/deb"
dpkg-deb -x "$deb" "$work/deb"
check deb "$work/deb/usr/bin/migrator" PKG_CONFIG_SYSROOT_DIR="$work/deb" PKG_CONFIG_LIBDIR="$work/deb/usr/share/pkgconfig"
units=$(dpkg-deb -c "$deb" | grep -cE 'lib/systemd/system/migrator-apply@\.(service|timer)$' || true)
dpkg-deb -e "$deb" "$work/control"
if [ "$units" -eq 2 ] && [ ! -e "$work/control/postinst" ]; then
    pass "deb: migrator-apply@.service and .timer are shipped, and nothing enables them"
else
    fail "deb: the systemd units ($units of 2 shipped; a postinst would enable them)"
fi
depends=$(dpkg-deb --field "$deb" Depends)
missing_dep=""
for lib in liblmdb0 libssl3 libpq5 libcurl4; do case "$depends" in *"$lib"*) ;; *) missing_dep="$missing_dep $lib" ;; esac; done
if [ -z "$missing_dep" ]; then pass "deb: Depends: $depends"; else fail "deb: Depends lacks$missing_dep: $depends"; fi
for f in usr/share/man/man1/migrator.1.gz usr/share/bash-completion/completions/migrator \
    usr/share/zsh/vendor-completions/_migrator usr/include/migrator_plugin.h usr/share/pkgconfig/migrator-plugin.pc \
    usr/lib/migrator/swift/libswiftCore.so usr/share/doc/migrator/copyright usr/share/doc/migrator/changelog.gz; do
    [ -e "$work/deb/$f" ] && pass "deb: /$f" || fail "deb: /$f missing"
done

echo "packaging: $failures failure(s)"
[ "$failures" -eq 0 ]
