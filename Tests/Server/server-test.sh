#!/usr/bin/env bash
# The release artifacts where they are used (run by scripts/test.sh): a Debian 12 root made with
# `debootstrap --variant=minbase bookworm`, which has no Swift toolchain and no build tree. Into it
# the .deb is installed with apt (so its Depends are what pulls in liblmdb0, libssl3, libpq5 and libcurl4),
# the example plugins built on this machine the documented way (scripts/build-examples.sh) are
# copied to /srv, and Tests/Server/operator-flow.sh runs the operator's flow: apply the Swift and
# the C plugins, status --check, verify, backup and restore, signatures with --trusted-keys, a
# pinned folder, and a run as an unprivileged service user who owns the database. Then the
# package is removed and the same flow runs from the unpacked tarball.
#
# The base root is cached in $MIGRATOR_SERVER_CACHE (default /var/cache/migrator-test), where the
# machine keeps it; each run unpacks a fresh copy and removes it. The artifacts are built as the
# caller (so the build tree stays theirs); only the root's part runs as root (chroot, mounts),
# through `sudo -n` when the caller is not root. Exit status: 0 when every check passed.
set -uo pipefail
cd "$(dirname "$0")/../.."
self=$(pwd)/Tests/Server/server-test.sh
started=$(date +%s)
say() { echo "server-test: $*"; }
die() { echo "FAIL: server-test: $*" >&2; exit 1; }

# Phase 1, as the caller: the .deb, the tarball and the example plugins.
if [ -z "${MIGRATOR_SERVER_ARTIFACTS:-}" ]; then
    artifacts=$(mktemp -d /tmp/migrator-server-artifacts.XXXXXX) || die "mktemp"
    trap 'rm -rf "$artifacts"' EXIT
    log=$artifacts/package.log
    out=$(scripts/package.sh --deb 2>"$log") || { cat "$log" >&2; die "package.sh"; }
    bundle=$(echo "$out" | grep '\.tar\.gz$')
    deb=$(echo "$out" | grep '\.deb$')
    [ -f "$bundle" ] && [ -f "$deb" ] || die "artifacts missing: $out"
    cp "$deb" "$bundle" "$artifacts/" || die "cannot copy the artifacts"
    scripts/build-examples.sh "$artifacts/plugins" release >"$log" 2>&1 || { cat "$log" >&2; die "build-examples.sh"; }
    rm -f "$log"
    chmod -R a+rX "$artifacts"
    if [ "$(id -u)" -eq 0 ]; then
        MIGRATOR_SERVER_ARTIFACTS=$artifacts bash "$self"
    elif sudo -n true 2>/dev/null; then
        sudo -n env MIGRATOR_SERVER_ARTIFACTS="$artifacts" PATH="$PATH" \
            MIGRATOR_SERVER_CACHE="${MIGRATOR_SERVER_CACHE:-}" bash "$self"
    else
        die "the root's part needs root (chroot, mounts): run as root, or allow sudo without a password"
    fi
    exit $?
fi

# Phase 2, as root: the Debian 12 root.
[ "$(id -u)" -eq 0 ] || die "phase 2 runs as root"
artifacts=$MIGRATOR_SERVER_ARTIFACTS
bundle=$(ls "$artifacts"/*.tar.gz) && deb=$(ls "$artifacts"/*.deb) || die "no artifacts in $artifacts"

work=$(mktemp -d /var/tmp/migrator-server.XXXXXX)
root=$work/root
cleanup() {
    # Mounts live in the unshare'd namespace only; nothing is left mounted here.
    rm -rf --one-file-system "$work"
}
trap cleanup EXIT

cache=${MIGRATOR_SERVER_CACHE:-}
cache=${cache:-/var/cache/migrator-test}/bookworm-minbase.tar
if [ ! -s "$cache" ]; then
    say "making the Debian 12 base root (debootstrap, once; cached in $cache)"
    if ! command -v debootstrap >/dev/null; then
        apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq debootstrap >/dev/null \
            || die "cannot install debootstrap"
    fi
    mkdir -p "$(dirname "$cache")" "$work/base"
    debootstrap --variant=minbase bookworm "$work/base" http://deb.debian.org/debian >"$work/debootstrap.log" 2>&1 \
        || { tail -20 "$work/debootstrap.log" >&2; die "debootstrap"; }
    tar -C "$work/base" -cf "$cache.$$" . && mv "$cache.$$" "$cache" || die "cannot write $cache"
    rm -rf --one-file-system "$work/base"
fi
mkdir "$root"
tar -C "$root" -xf "$cache" || die "cannot unpack $cache"
cp /etc/resolv.conf "$root/etc/resolv.conf"
mkdir -p "$root/srv/dist"
cp "$deb" "$bundle" Plugins-Examples/sample-data/*.jsonl Tests/Server/operator-flow.sh "$root/srv/dist/"
install -d -m 0755 "$root/srv/plugins"
install -m 0644 "$artifacts"/plugins/*.so "$root/srv/plugins/"

# in_root COMMAND...: runs COMMAND in the root, with /dev and a /proc of its own mounted.
in_root() {
    unshare --mount --propagation private -- sh -c \
        'mount --rbind /dev "$0/dev" && mount -t proc proc "$0/proc" && exec chroot "$0" /usr/bin/env -i \
            PATH=/usr/sbin:/usr/bin:/sbin:/bin HOME=/root LANG=C.UTF-8 DEBIAN_FRONTEND=noninteractive "$@"' \
        "$root" "$@"
}

failures=0
in_root sh -c '! command -v swift && ! command -v swiftc && ! command -v cc' >/dev/null \
    || die "the root has a Swift toolchain or a C compiler"
runpath=$(readelf -d "$artifacts/plugins/example_swift_migrations.so" | sed -n 's/.*Library runpath: \[\([^]:]*\).*/\1/p')
[ -n "$runpath" ] || die "the Swift plugin has no RUNPATH: the test would not show that a missing one is fine"
in_root sh -c "[ ! -e '$runpath' ]" || die "the Swift plugin's RUNPATH '$runpath' exists in the root"
say "the Swift plugin's RUNPATH '$runpath' does not exist in the root"

t0=$(date +%s)
debname=$(basename "$deb")
if in_root sh -c "apt-get update -qq && apt-get install -y -qq /srv/dist/$debname" >"$work/apt.log" 2>&1; then
    echo "ok: deb: apt installs $debname and its Depends ($(dpkg-deb --field "$deb" Depends))"
else
    tail -20 "$work/apt.log" >&2
    die "apt install $debname"
fi
in_root bash /srv/dist/operator-flow.sh /usr/bin/migrator deb || failures=$((failures + 1))
say "deb: $(($(date +%s) - t0)) s"

t0=$(date +%s)
bundlename=$(basename "$bundle")
in_root sh -c "dpkg -r migrator >/dev/null && tar -C /opt -xzf /srv/dist/$bundlename" || die "unpacking $bundlename"
in_root sh -c '[ ! -e /usr/lib/migrator ] && [ ! -e /usr/bin/migrator ]' || die "the package left files behind"
tarball_bin=/opt/${bundlename%.tar.gz}/bin/migrator
in_root bash /srv/dist/operator-flow.sh "$tarball_bin" tarball || failures=$((failures + 1))
say "tarball: $(($(date +%s) - t0)) s"

say "$failures flow(s) failed; $(($(date +%s) - started)) s in all"
[ "$failures" -eq 0 ]
