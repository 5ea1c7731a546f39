#!/usr/bin/env bash
# Runs herd's whole test suite: unit, table and integration tests, including the ones that
# drive the real Docker engine (they fail, never skip, when no engine answers).
set -euo pipefail
cd "$(dirname "$0")/.."

if ! docker info >/dev/null 2>&1; then
    echo "error: no Docker engine answers; herd's tests drive the real engine. Start dockerd and retry." >&2
    exit 1
fi
source deploy/lib/network-tools.sh
ensure_network_tools
source deploy/lib/registry.sh
ensure_registry
# Debian's etcd-server, which the etcd store's contract tests start on loopback.
source deploy/lib/etcd.sh
ensure_etcd
# Debian's kubectl, which the operator tests drive the fake Kubernetes API server with.
source deploy/lib/kube-tools.sh
echo "==> kubectl: $(ensure_kubectl)"
./images/testbed/build.sh
cargo build --workspace --locked
if cargo nextest --version >/dev/null 2>&1; then
    cargo nextest run --workspace --locked --no-fail-fast
else
    cargo test --workspace --locked --no-fail-fast
fi
