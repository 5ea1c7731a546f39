#!/usr/bin/env bash
# Builds herd's testbed images locally, without any registry:
#   herd/testbed-base:latest   a rootfs of Debian's busybox-static, made with `docker import`
#   herd/<role>:testbed        a test double of each Hadoop role (roles/), FROM that base: the
#                              hadoop-double binary (tests/double, `cargo build -p
#                              herd-hadoop-double --locked`, honouring CARGO_TARGET_DIR) with the
#                              glibc libraries ldd lists, /etc/nsswitch.conf (hosts: files) and
#                              /bin/hdfs, /bin/yarn symlinks; command `hadoop-double daemon`
# Idempotent: each image carries a herd.testbed.hash label over its inputs (the busybox .deb,
# this script, roles/Dockerfile, the double's sources, lock file, compiler and C library) and
# is rebuilt only when they change; when every image is current nothing is compiled.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo=$(cd "$here/../.." && pwd)
target=${CARGO_TARGET_DIR:-$repo/target}
cache=$here/.cache
base=herd/testbed-base:latest
roles=(datanode nodemanager namenode resourcemanager)

say() { echo "testbed: $*"; }
die() { echo "testbed: $*" >&2; exit 1; }

command -v docker >/dev/null || die "docker is not installed (need the Docker CLI and a running engine)"
timeout 30 docker info >/dev/null 2>&1 || die "the Docker engine does not answer (docker info failed): start dockerd or check DOCKER_HOST"

mkdir -p "$cache"
# Concurrent runs (parallel test binaries) wait for each other instead of building twice.
# NB: the lock is the Docker engine's, not this checkout's: image tags are global to the
# engine, so builds from two checkouts must not interleave (one's prune would delete the
# other's intermediate images).
exec 9>"${TMPDIR:-/tmp}/herd-testbed-images.lock"
flock 9

debs=("$cache"/busybox-static_*.deb)
if [[ ! -f ${debs[-1]} ]]; then
    say "downloading Debian's busybox-static into $cache"
    command -v apt-get >/dev/null || die "apt-get is missing: put a busybox-static .deb in $cache"
    if ! (cd "$cache" && apt-get download busybox-static) >/dev/null 2>&1; then
        say "apt-get download failed; running apt-get update and retrying"
        apt-get update -qq >/dev/null || die "apt-get update failed"
        (cd "$cache" && apt-get download busybox-static) >/dev/null 2>&1 ||
            die "apt-get download busybox-static failed: put a busybox-static .deb in $cache"
    fi
    debs=("$cache"/busybox-static_*.deb)
fi
deb=${debs[-1]}

label() { docker image inspect --format '{{ index .Config.Labels "herd.testbed.hash" }}' "$1" 2>/dev/null || true; }
hash() { sha256sum | cut -c1-16; }

base_hash=$( { sha256sum <"$deb"; cat "${BASH_SOURCE[0]}"; } | hash)
if [[ $(label "$base") == "$base_hash" ]]; then
    say "$base up to date"
else
    say "building $base from $(basename "$deb")"
    root=$(mktemp -d)
    trap 'rm -rf "$root"' EXIT
    dpkg-deb -x "$deb" "$root/deb"
    mkdir -p "$root/fs/bin" "$root/fs/etc" "$root/fs/tmp" "$root/fs/hadoop/logs"
    cp "$root/deb/bin/busybox" "$root/fs/bin/busybox"
    "$root/fs/bin/busybox" --list | while read -r applet; do
        [[ $applet == busybox ]] || ln -s busybox "$root/fs/bin/$applet"
    done
    chmod 1777 "$root/fs/tmp"
    echo "root:x:0:0:root:/:/bin/sh" >"$root/fs/etc/passwd"
    echo "root:x:0:" >"$root/fs/etc/group"
    : >"$root/fs/etc/hosts"
    tar --numeric-owner --owner=0 --group=0 -C "$root/fs" -c . |
        docker import -c "LABEL herd.testbed.hash=$base_hash" -c "ENV PATH=/bin" -c 'CMD ["/bin/sh"]' - "$base" >/dev/null
    rm -rf "$root"
    trap - EXIT
fi

# A role image's hash covers the base's and what the doubles' binary is built from (its
# sources, the workspace manifest and lock file, the compiler, the C library), not the binary
# itself: a debug binary embeds its checkout's path, and two checkouts of one source sharing
# this engine would otherwise rebuild each other's images on every test start.
src_hash=$( {
    cat "$repo/Cargo.toml" "$repo/Cargo.lock" "$here/roles/Dockerfile"
    rustc -V
    ldd --version 2>&1 | head -1
    (cd "$repo/tests/double" && find Cargo.toml src -type f | LC_ALL=C sort | xargs sha256sum)
} | hash)
role_hash=$( { echo "$base_hash"; echo "$src_hash"; } | hash)
stale=()
for role in "${roles[@]}"; do
    if [[ $(label "herd/$role:testbed") == "$role_hash" ]]; then
        say "herd/$role:testbed up to date"
    else
        stale+=("$role")
    fi
done
if [[ ${#stale[@]} == 0 ]]; then
    exit 0
fi

# The doubles' binary, staged with the libraries it links (kept at their paths) so it runs on
# the busybox base. Staged under the lock: a concurrent cargo build cannot change it under us.
say "building hadoop-double (cargo build -p herd-hadoop-double --locked)"
(cd "$repo" && CARGO_TARGET_DIR=$target cargo build -q -p herd-hadoop-double --locked) || die "cargo build -p herd-hadoop-double failed"
ctx=$(mktemp -d "$cache/roles.XXXXXX")
trap 'rm -rf "$ctx"' EXIT
mkdir -p "$ctx/rootfs/bin" "$ctx/rootfs/etc"
cp "$target/debug/hadoop-double" "$ctx/rootfs/bin/hadoop-double"
ln -s hadoop-double "$ctx/rootfs/bin/hdfs"
ln -s hadoop-double "$ctx/rootfs/bin/yarn"
ldd "$ctx/rootfs/bin/hadoop-double" | grep -o '/[^ ]*' | while read -r lib; do
    cp -L --parents "$lib" "$ctx/rootfs"
done
echo "hosts: files" >"$ctx/rootfs/etc/nsswitch.conf"
cp "$here/roles/Dockerfile" "$ctx/Dockerfile"

built=0
for role in "${stale[@]}"; do
    tag=herd/$role:testbed
    say "building $tag"
    # The builder chatters on stderr (a deprecation notice); show its output only on failure.
    if ! out=$(docker build -q --force-rm --build-arg ROLE="$role" --build-arg HASH="$role_hash" -t "$tag" "$ctx" 2>&1); then
        echo "$out" >&2
        die "docker build of $tag failed"
    fi
    built=1
done

rm -rf "$ctx"
trap - EXIT

# Drop the untagged images that earlier builds of these tags left behind (unused ones only).
if [[ $built == 1 ]]; then
    docker image prune -f --filter label=herd.testbed.hash >/dev/null || true
fi
