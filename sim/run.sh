#!/usr/bin/env bash
# Starts a release herd-orchestrator on a fresh store under $DIR (default: a new folder in
# /var/tmp, on the local disk), runs herd-sim against it with the given arguments, stops it.
#   cargo build --release -p herd-orchestrator -p herd-sim
#   sim/run.sh --hosts 10000 --interval 3s --duration 60s [-o json] [--apply spec.yaml]
# ORCH_ARGS adds orchestrator flags (e.g. ORCH_ARGS="--cluster-cidr 10.64.0.0/10"). The simulated
# fleet's status readers share one token and its clusters may wait by the thousand: the rate
# and admission limits are lifted unless ORCH_ARGS sets them.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
bin=${BIN:-$root/target/release}
dir=${DIR:-$(mktemp -d /var/tmp/herd-sim.XXXXXX)}
interval=3s
args=("$@")
for ((i = 0; i < ${#args[@]}; i++)); do
    [[ ${args[i]} == --interval ]] && interval=${args[i+1]}
done
"$bin/herd-orchestrator" --data-dir "$dir" --listen 127.0.0.1:0 --heartbeat-interval "$interval" \
    --rate-limit 1000000 --max-pending-per-cluster 4000000000 ${ORCH_ARGS:-} \
    >"$dir/stdout" 2>"$dir/orchestrator.log" &
pid=$!
# SIGTERM, then SIGKILL if it is still draining requests after 5 s.
trap 'kill $pid 2>/dev/null; for _ in $(seq 50); do kill -0 $pid 2>/dev/null || break; sleep 0.1; done; kill -9 $pid 2>/dev/null; wait $pid 2>/dev/null || true' EXIT
for _ in $(seq 100); do
    url=$(sed -n 's/.*listening on //p' "$dir/stdout")
    [[ -n $url ]] && break
    sleep 0.1
done
[[ -n ${url:-} ]] || { echo "orchestrator did not start" >&2; cat "$dir/orchestrator.log" >&2; exit 1; }
RUST_LOG=${RUST_LOG:-warn} "$bin/herd-sim" --orchestrator "$url" --token-file "$dir/admin.token" --orchestrator-pid "$pid" "$@"
