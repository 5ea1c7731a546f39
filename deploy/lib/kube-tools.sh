#!/usr/bin/env bash
# Makes sure Debian's kubectl (package kubernetes-client, kubectl 1.20) is on this machine, for
# herd's operator tests, which drive the fake API server (tests/kube-double) with it as a user
# would. Idempotent. Prints the kubectl to use on stdout; fails loudly when it cannot be had.
#
# The package is unpacked under /opt/herd/kubernetes-client (not installed with dpkg): another
# kubectl may own /usr/bin/kubectl (e.g. a Cloud SDK's), and the tests must run Debian's.
#   source deploy/lib/kube-tools.sh; kubectl=$(ensure_kubectl)
#   bash deploy/lib/kube-tools.sh          # the same, as a command
ensure_kubectl() {
    local root=/opt/herd/kubernetes-client
    local bin=$root/usr/bin/kubectl
    if [[ -x $bin ]]; then
        echo "$bin"
        return 0
    fi
    if ! command -v apt-get >/dev/null 2>&1 || [[ $(id -u) != 0 ]]; then
        echo "error: Debian's kubernetes-client is needed: run this as root on Debian, or unpack the package under $root" >&2
        return 1
    fi
    local tmp
    tmp=$(mktemp -d)
    if ! (cd "$tmp" && apt-get download kubernetes-client >/dev/null 2>&1); then
        echo "==> apt-get update (kubernetes-client not in the package lists yet)" >&2
        apt-get update -qq >/dev/null
        if ! (cd "$tmp" && apt-get download kubernetes-client >/dev/null); then
            rm -rf "$tmp"
            echo "error: cannot download Debian's kubernetes-client package" >&2
            return 1
        fi
    fi
    mkdir -p "$root"
    dpkg-deb -x "$tmp"/kubernetes-client_*.deb "$root"
    rm -rf "$tmp"
    [[ -x $bin ]] || { echo "error: the kubernetes-client package has no usr/bin/kubectl" >&2; return 1; }
    echo "$bin"
}

if [[ ${BASH_SOURCE[0]} == "$0" ]]; then
    set -euo pipefail
    ensure_kubectl
fi
