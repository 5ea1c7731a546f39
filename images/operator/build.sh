#!/usr/bin/env bash
# Builds herd's operator image locally, without any registry:
#   herd/operator:<tag>   tag: $1, default the workspace version (Cargo.toml)
# made as the testbed images are (images/testbed/build.sh): a root filesystem assembled here and
# loaded with `docker import`, so nothing is pulled. It holds the herd-operator binary, the glibc
# libraries ldd lists (kept at their paths), /etc/passwd and /etc/group with the nonroot user
# 65532 the Deployment runs as, /etc/nsswitch.conf and /tmp; no shell. Entrypoint
# `/herd-operator` (so `docker run herd/operator:<tag> crd` prints the CRDs).
#
# The binary: $HERD_OPERATOR_BIN when set (e.g. one cargo built already), else
# `cargo build --locked --bin herd-operator`, release unless HERD_OPERATOR_PROFILE=debug,
# honouring CARGO_TARGET_DIR.
# Idempotent: the image carries a herd.operator.hash label over its inputs (binary, libraries,
# this script) and is re-imported only when they change.
#
# Then push it to your registry (README, "On Kubernetes"):
#   docker tag herd/operator:0.1.0 registry.example.com/herd/operator:0.1.0
#   docker push registry.example.com/herd/operator:0.1.0
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo=$(cd "$here/../.." && pwd)
target=${CARGO_TARGET_DIR:-$repo/target}
profile=${HERD_OPERATOR_PROFILE:-release}

say() { echo "operator image: $*"; }
die() { echo "operator image: $*" >&2; exit 1; }

version=$(sed -n '/^\[workspace.package\]/,/^\[/s/^version = "\(.*\)"/\1/p' "$repo/Cargo.toml")
tag=herd/operator:${1:-$version}
[[ $tag =~ ^herd/operator:[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$ ]] || die "\`${1:-}\` is not an image tag (letters, digits, _ . -)"

command -v docker >/dev/null || die "docker is not installed (need the Docker CLI and a running engine)"
timeout 30 docker info >/dev/null 2>&1 || die "the Docker engine does not answer (docker info failed): start dockerd or check DOCKER_HOST"

if [[ -n ${HERD_OPERATOR_BIN:-} ]]; then
    bin=$HERD_OPERATOR_BIN
    [[ -x $bin ]] || die "HERD_OPERATOR_BIN=$bin is not an executable"
else
    case $profile in
        release) flags=(--release) ;;
        debug) flags=() ;;
        *) die "HERD_OPERATOR_PROFILE=$profile: write release or debug" ;;
    esac
    say "building herd-operator ($profile)"
    (cd "$repo" && CARGO_TARGET_DIR=$target cargo build -q --locked --bin herd-operator "${flags[@]}") ||
        die "cargo build --bin herd-operator failed"
    bin=$target/$profile/herd-operator
fi

libs=$(ldd "$bin" | grep -o '/[^ ]*' | LC_ALL=C sort -u)
hash=$( {
    sha256sum <"$bin"
    for lib in $libs; do sha256sum <"$lib"; done
    cat "${BASH_SOURCE[0]}"
} | sha256sum | cut -c1-16)
if [[ $(docker image inspect --format '{{ index .Config.Labels "herd.operator.hash" }}' "$tag" 2>/dev/null || true) == "$hash" ]]; then
    say "$tag up to date"
    exit 0
fi

root=$(mktemp -d)
trap 'rm -rf "$root"' EXIT
mkdir -p "$root/etc" "$root/tmp"
cp "$bin" "$root/herd-operator"
for lib in $libs; do
    cp -L --parents "$lib" "$root"
done
chmod 1777 "$root/tmp"
printf 'root:x:0:0:root:/:/sbin/nologin\nnonroot:x:65532:65532:nonroot:/:/sbin/nologin\n' >"$root/etc/passwd"
printf 'root:x:0:\nnonroot:x:65532:\n' >"$root/etc/group"
echo "hosts: files dns" >"$root/etc/nsswitch.conf"
say "importing $tag"
tar --numeric-owner --owner=0 --group=0 -C "$root" -c . |
    docker import \
        -c "LABEL herd.operator.hash=$hash" \
        -c "LABEL org.opencontainers.image.title=herd-operator" \
        -c "LABEL org.opencontainers.image.version=$version" \
        -c "USER 65532:65532" \
        -c 'ENTRYPOINT ["/herd-operator"]' \
        - "$tag" >/dev/null
# Drop the untagged images earlier builds of the tag left behind (unused ones only).
docker image prune -f --filter label=herd.operator.hash >/dev/null || true
say "built $tag"
