#!/usr/bin/env bash
# Makes sure Debian's etcd server (package etcd-server, etcd 3.4; binary /usr/bin/etcd) is on
# this machine, for the store tests that start their own single-member etcd on loopback (the
# etcd store implementation). Idempotent; fails loudly when it cannot be had.
#   source deploy/lib/etcd.sh; ensure_etcd
#   bash deploy/lib/etcd.sh          # the same, as a command
ensure_etcd() {
    [[ -x /usr/bin/etcd ]] && return 0
    echo "==> installing etcd-server (the etcd store tests start their own etcd)"
    if ! command -v apt-get >/dev/null 2>&1 || [[ $(id -u) != 0 ]]; then
        echo "error: install Debian's etcd-server package (as root) and retry" >&2
        return 1
    fi
    if ! DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends etcd-server >/dev/null 2>&1; then
        apt-get update -qq >/dev/null
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends etcd-server >/dev/null
    fi
    # NB: the package enables a system-wide etcd on port 2379; herd's tests start their own on
    # free ports and never use it.
}

if [[ ${BASH_SOURCE[0]} == "$0" ]]; then
    set -euo pipefail
    ensure_etcd
fi
