#!/usr/bin/env bash
# Builds herd's testbed images locally, without any registry: a base image imported from
# Debian's busybox-static, and one test-double image per Hadoop role on top of it.
# Idempotent: an image whose inputs did not change is not rebuilt.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
cache=$here/.cache
roles=(datanode nodemanager namenode resourcemanager)

command -v docker >/dev/null || { echo "testbed: docker is not installed" >&2; exit 1; }
docker info >/dev/null 2>&1 || { echo "testbed: the Docker engine does not answer; start dockerd" >&2; exit 1; }

mkdir -p "$cache"
deb=$(ls "$cache"/busybox-static_*.deb 2>/dev/null | head -n1 || true)
if [[ -z $deb ]]; then
    echo "testbed: fetching Debian's busybox-static"
    ( cd "$cache" && { apt-get download busybox-static >/dev/null 2>&1 || { apt-get update -qq && apt-get download busybox-static >/dev/null; }; } )
    deb=$(ls "$cache"/busybox-static_*.deb | head -n1)
fi

label() { docker image inspect --format "{{ index .Config.Labels \"herd.testbed.hash\" }}" "$1" 2>/dev/null || true; }

base_hash=$(cat "$deb" "$0" | sha256sum | cut -c1-16)
if [[ $(label herd/testbed-base:latest) == "$base_hash" ]]; then
    echo "testbed: herd/testbed-base:latest up to date"
else
    echo "testbed: building herd/testbed-base:latest"
    root=$(mktemp -d)
    trap 'rm -rf "$root"' EXIT
    dpkg-deb -x "$deb" "$root/deb"
    mkdir -p "$root/fs/bin" "$root/fs/tmp" "$root/fs/etc" "$root/fs/hadoop/logs"
    cp "$root/deb/bin/busybox" "$root/fs/bin/busybox"
    for applet in $("$root/fs/bin/busybox" --list); do
        [[ $applet == busybox ]] || ln -sf busybox "$root/fs/bin/$applet"
    done
    chmod 1777 "$root/fs/tmp"
    echo "root:x:0:0:root:/:/bin/sh" >"$root/fs/etc/passwd"
    echo "root:x:0:" >"$root/fs/etc/group"
    tar -C "$root/fs" -c . | docker import \
        -c "LABEL herd.testbed.hash=$base_hash" -c "ENV PATH=/bin" -c 'CMD ["/bin/sh"]' \
        - herd/testbed-base:latest >/dev/null
fi

role_hash=$(cat "$here/roles/Dockerfile" "$here/roles/run.sh" | sha256sum | cut -c1-16)
role_hash=$(printf '%s%s' "$base_hash" "$role_hash" | sha256sum | cut -c1-16)
for role in "${roles[@]}"; do
    tag=herd/$role:testbed
    if [[ $(label "$tag") == "$role_hash" ]]; then
        echo "testbed: $tag up to date"
        continue
    fi
    echo "testbed: building $tag"
    # NB: the legacy builder warns on stderr on every build; show its output only on failure.
    if ! out=$(docker build -q --build-arg ROLE="$role" --build-arg HASH="$role_hash" -t "$tag" "$here/roles" 2>&1); then
        echo "$out" >&2
        exit 1
    fi
done
