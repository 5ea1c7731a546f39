# Sourced by deploy/demo.sh and tests/run.sh: makes sure the tools herd's networking drives are
# installed (nft for herd's firewall, iptables for Docker's DOCKER-USER chain, ip for checks),
# installing Debian's packages when one is missing.
ensure_network_tools() {
    local missing=()
    command -v nft >/dev/null 2>&1 || missing+=(nftables)
    command -v iptables >/dev/null 2>&1 || missing+=(iptables)
    command -v ip >/dev/null 2>&1 || missing+=(iproute2)
    ((${#missing[@]} == 0)) && return 0
    echo "==> installing ${missing[*]} (herd's networking needs them)"
    if ! command -v apt-get >/dev/null 2>&1 || [[ $(id -u) != 0 ]]; then
        echo "error: install ${missing[*]} (as root) and retry" >&2
        return 1
    fi
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
}
