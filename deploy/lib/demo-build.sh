#!/usr/bin/env bash
# What both demos (deploy/demo.sh and its HA variant, deploy/lib/demo-ha.sh) need before they
# start anything: the network tools, a Docker engine, herd built, the testbed images.
#   source deploy/lib/demo-build.sh; demo_build
demo_build() {
    source deploy/lib/network-tools.sh
    ensure_network_tools
    docker info >/dev/null 2>&1 || { echo "error: no Docker engine answers; start dockerd first" >&2; exit 1; }
    echo "==> building herd"
    cargo build --workspace --quiet
    echo "==> building testbed images"
    ./images/testbed/build.sh
}
