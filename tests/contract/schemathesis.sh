#!/usr/bin/env bash
# Runs Schemathesis (pinned, from PyPI) against a live orchestrator's served OpenAPI document,
# with herd's hooks (tests/contract/hooks.py: fresh Idempotency-Keys, and the check that a
# valid request is never refused for its shape).
# Installs it once into a venv under the target directory; fails loudly if it cannot.
#   tests/contract/schemathesis.sh URL TOKEN [extra st run flags]
set -euo pipefail
VERSION=4.32.5
root=$(cd "$(dirname "$0")/../.." && pwd)
venv=${CARGO_TARGET_DIR:-$root/target}/schemathesis-$VERSION
if ! "$venv/bin/st" --version 2>/dev/null | grep -q "$VERSION"; then
    rm -rf "$venv"
    python3 -m venv "$venv" || { echo "error: cannot create a Python venv at $venv (apt-get install python3-venv)" >&2; exit 2; }
    "$venv/bin/pip" install --quiet --disable-pip-version-check "schemathesis==$VERSION" \
        || { echo "error: cannot install schemathesis==$VERSION from PyPI" >&2; exit 2; }
fi
url=$1 token=$2
shift 2
# Its cache (.schemathesis/) goes beside it, not into the checkout.
cd "$venv"
export SCHEMATHESIS_HOOKS=$root/tests/contract/hooks.py
exec "$venv/bin/st" --config-file "$root/tests/contract/schemathesis.toml" run "$url/v1/openapi.json" --url "$url" -H "Authorization: Bearer $token" "$@"
