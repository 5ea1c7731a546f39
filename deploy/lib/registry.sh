# Sourced by tests/run.sh (and run by the image-pull test): makes sure Debian's container
# registry (`docker-registry`, the CNCF distribution registry) is installed, for the tests that
# pull images from a local registry they start on loopback.
ensure_registry() {
    command -v docker-registry >/dev/null 2>&1 && return 0
    echo "==> installing docker-registry (the image-pull tests start a local registry)"
    if ! command -v apt-get >/dev/null 2>&1 || [[ $(id -u) != 0 ]]; then
        echo "error: install Debian's docker-registry package (as root) and retry" >&2
        return 1
    fi
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends docker-registry >/dev/null
}
