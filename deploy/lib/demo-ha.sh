#!/usr/bin/env bash
# The high-availability demo (`deploy/demo.sh ha`): a three-member etcd cluster on loopback,
# two orchestrators on it (one leads, the other redirects to it), one agent given both URLs.
# Applies the quickstart cluster, shows GET /v1/leader from both orchestrators, SIGKILLs the
# leader, shows the other taking over, scales the cluster through the list of URLs, and starts
# the killed orchestrator again (it comes back as a follower). Starts afresh on every run
# (free ports each time); `deploy/demo.sh down` stops it and removes its containers.
#
#   deploy/demo.sh ha           start it afresh (runs this script)
#   deploy/lib/demo-ha.sh down  stop its processes and remove its containers (deploy/demo.sh
#                               down runs it, then removes the host networking)
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."

DEMO_DIR=${HERD_DEMO_DIR:-$PWD/.herd-demo}
HA=$DEMO_DIR/ha
BIN=${CARGO_TARGET_DIR:-$PWD/target}/debug
ETCD=/usr/bin/etcd
HOST=demo-ha-host

# Stops the HA demo's processes (pid files in $HA) and waits until they are gone (an etcd
# member left without a quorum takes seconds to give up its leadership); removes nothing else.
ha_stop() {
    local f pids=() deadline=$((SECONDS + 20))
    for f in "$HA"/*.pid; do
        [[ -e $f ]] || continue
        pids+=("$(cat "$f")")
        kill "${pids[-1]}" 2>/dev/null || true
        rm -f "$f"
    done
    for p in "${pids[@]}"; do
        while kill -0 "$p" 2>/dev/null; do
            if ((SECONDS >= deadline)); then
                kill -KILL "$p" 2>/dev/null || true
                break
            fi
            sleep 0.2
        done
    done
}

if [[ ${1:-} == down ]]; then
    ha_stop
    ids=$(docker ps -aq --filter label=herd.host=$HOST 2>/dev/null || true)
    [[ -z $ids ]] || docker rm -f $ids >/dev/null
    exit 0
fi

free_port() {
    python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# until SECONDS WHAT COMMAND...: runs COMMAND every 0.2 s until it succeeds; fails after SECONDS.
until_ok() {
    local within=$1 what=$2
    shift 2
    local deadline=$((SECONDS + within))
    until "$@" >/dev/null 2>&1; do
        if ((SECONDS >= deadline)); then
            echo "error: $what not within ${within}s" >&2
            return 1
        fi
        sleep 0.2
    done
}

leader_of() { # URL: that orchestrator's GET /v1/leader
    curl -fsS --max-time 2 --cacert "$HERD_CA_FILE" "$1/v1/leader"
}

role_of() { # URL: leader, follower, or nothing when it does not answer
    leader_of "$1" 2>/dev/null | python3 -c 'import json, sys; print(json.load(sys.stdin)["role"])' 2>/dev/null || true
}

is_leader() { [[ $(role_of "$1") == leader ]]; }

any_leader() { is_leader "$URL_A" || is_leader "$URL_B"; }

start_orchestrator() { # NAME PORT
    local name=$1 port=$2
    "$BIN/herd-orchestrator" --data-dir "$HA/$name" --listen "127.0.0.1:$port" \
        --store etcd --etcd-endpoints "$ENDPOINTS" \
        --tls-cert "$HA/tls/server.pem" --tls-key "$HA/tls/server.key" \
        >>"$HA/$name.out" 2>>"$HA/$name.log" &
    echo $! >"$HA/$name.pid"
    # NB: the demo SIGKILLs it: no "Killed" notice from bash.
    disown
}

if [[ ! -x $ETCD ]]; then
    echo "error: $ETCD is missing: run deploy/lib/etcd.sh as root (Debian's etcd-server)" >&2
    exit 1
fi
source deploy/lib/demo-build.sh
demo_build

# Afresh: one agent per machine runs herd's host networking (bridge herd0, herd's nft
# tables), so the plain demo stops too, and both demos' containers and networking go.
echo "==> stopping any demo (deploy/demo.sh down)"
deploy/demo.sh down >/dev/null
rm -rf "$HA"
mkdir -p "$HA"

echo "==> starting a three-member etcd cluster on loopback (data and logs: $HA/etcd)"
names=(m1 m2 m3)
declare -A client peer
initial=()
for m in "${names[@]}"; do
    client[$m]=$(free_port)
    peer[$m]=$(free_port)
    initial+=("$m=http://127.0.0.1:${peer[$m]}")
done
ENDPOINTS=$(for m in "${names[@]}"; do printf 'http://127.0.0.1:%s,' "${client[$m]}"; done)
ENDPOINTS=${ENDPOINTS%,}
mkdir -p "$HA/etcd"
for m in "${names[@]}"; do
    "$ETCD" --name "$m" --data-dir "$HA/etcd/$m" \
        --listen-client-urls "http://127.0.0.1:${client[$m]}" --advertise-client-urls "http://127.0.0.1:${client[$m]}" \
        --listen-peer-urls "http://127.0.0.1:${peer[$m]}" --initial-advertise-peer-urls "http://127.0.0.1:${peer[$m]}" \
        --initial-cluster "$(IFS=,; echo "${initial[*]}")" --initial-cluster-state new --initial-cluster-token herd-demo-ha \
        --heartbeat-interval 100 --election-timeout 1000 --max-txn-ops 10000 \
        --logger zap --log-level warn >/dev/null 2>"$HA/etcd/$m.log" &
    echo $! >"$HA/etcd-$m.pid"
done
for m in "${names[@]}"; do
    until_ok 60 "etcd member $m answering" curl -fsS "http://127.0.0.1:${client[$m]}/health"
done
echo "    endpoints: $ENDPOINTS"

echo "==> making a local CA and one certificate for both orchestrators ($HA/tls)"
"$BIN/herd-orchestrator" tls-init --dir "$HA/tls" --name 127.0.0.1 --name localhost >/dev/null
export HERD_CA_FILE=$HA/tls/ca.pem

PORT_A=$(free_port)
PORT_B=$(free_port)
URL_A=https://127.0.0.1:$PORT_A
URL_B=https://127.0.0.1:$PORT_B
declare -A url_of=([orch-a]=$URL_A [orch-b]=$URL_B) port_of=([orch-a]=$PORT_A [orch-b]=$PORT_B)

echo "==> starting orchestrator orch-a on $URL_A (log: $HA/orch-a.log)"
start_orchestrator orch-a "$PORT_A"
until_ok 30 "orch-a answering /healthz" curl -fsS --cacert "$HERD_CA_FILE" "$URL_A/healthz"
# Every orchestrator of one control plane signs the agents' log requests with the same key:
# the first one made it; the second gets a copy before it starts.
until_ok 10 "orch-a's agent-logs.key" test -s "$HA/orch-a/agent-logs.key"
mkdir -p "$HA/orch-b"
(umask 077; cp "$HA/orch-a/agent-logs.key" "$HA/orch-b/agent-logs.key")
echo "==> starting orchestrator orch-b on $URL_B with orch-a's agent-logs.key (log: $HA/orch-b.log)"
start_orchestrator orch-b "$PORT_B"
until_ok 30 "orch-b answering /healthz" curl -fsS --cacert "$HERD_CA_FILE" "$URL_B/healthz"
until_ok 30 "a leader" any_leader

# The CLI and the agent get both URLs: they try them in turn and follow a follower's 307.
export HERD_SERVER=$URL_A,$URL_B
# The first orchestrator wrote the first admin token (it lives in etcd; the file is its secret).
export HERD_TOKEN_FILE=$HA/orch-a/admin.token
unset HERD_TOKEN

(umask 077; "$BIN/herd" tokens create --agent --host $HOST --description $HOST >"$HA/agent.token")
echo "==> starting herd-agent for host $HOST with --orchestrator $HERD_SERVER (log: $HA/agent.log)"
"$BIN/herd-agent" --orchestrator "$HERD_SERVER" --ca-file "$HERD_CA_FILE" --host-id $HOST --data-dir "$HA/agent" --rack demo --cpus 4 \
    --token-file "$HA/agent.token" --listen 127.0.0.1:0 >/dev/null 2>"$HA/agent.log" &
echo $! >"$HA/agent.pid"

echo "==> applying manifests/examples/quickstart.yaml"
"$BIN/herd" tenants create acme
"$BIN/herd" tenants quota acme --cpu 4 --memory 8Gi >/dev/null
"$BIN/herd" apply -f manifests/examples/quickstart.yaml --wait --timeout 2m

echo
echo "==> GET /v1/leader from both orchestrators"
for o in orch-a orch-b; do
    printf '    %s: %s\n' "$o" "$(leader_of "${url_of[$o]}")"
done
if is_leader "$URL_A"; then leader=orch-a follower=orch-b; else leader=orch-b follower=orch-a; fi

echo
echo "==> SIGKILL the leader, $leader (pid $(cat "$HA/$leader.pid"))"
kill -KILL "$(cat "$HA/$leader.pid")"
rm -f "$HA/$leader.pid"
killed_at=$(date +%s.%N)
until_ok 60 "$follower taking over" is_leader "${url_of[$follower]}"
took=$(python3 -c "import time; print(f'{time.time() - $killed_at:.1f}')")
printf '    %s leads %s s after the kill: %s\n' "$follower" "$took" "$(leader_of "${url_of[$follower]}")"

echo
echo "==> herd scale acme/quickstart nodemanager=3 --wait, with HERD_SERVER=$HERD_SERVER ($leader is gone)"
start=$(date +%s.%N)
"$BIN/herd" scale acme/quickstart nodemanager=3 --wait --timeout 2m
printf '    scaled in %s s\n' "$(python3 -c "import time; print(f'{time.time() - $start:.1f}')")"

echo
echo "==> starting $leader again: it comes back as a follower"
start_orchestrator "$leader" "${port_of[$leader]}"
until_ok 30 "$leader answering /healthz" curl -fsS --cacert "$HERD_CA_FILE" "${url_of[$leader]}/healthz"
is_follower() { [[ $(role_of "$1") == follower ]]; }
until_ok 30 "$leader following" is_follower "${url_of[$leader]}"
for o in orch-a orch-b; do
    printf '    %s: %s\n' "$o" "$(leader_of "${url_of[$o]}")"
done

cat <<MSG

The HA demo is running (state and logs in $HA). Try:
  export HERD_SERVER=$HERD_SERVER HERD_TOKEN_FILE=$HERD_TOKEN_FILE HERD_CA_FILE=$HERD_CA_FILE
  curl -s --cacert \$HERD_CA_FILE $URL_A/v1/leader; curl -s --cacert \$HERD_CA_FILE $URL_B/v1/leader
  curl -si --cacert \$HERD_CA_FILE -H "Authorization: Bearer \$(cat \$HERD_TOKEN_FILE)" ${url_of[$leader]}/v1/hosts   # $leader follows: 307 to the leader
  kill -9 \$(cat $HA/$follower.pid)   # the leader now; $leader takes over within --lease-ttl (5 s)
  kill -9 \$(cat $HA/etcd-m1.pid)      # etcd keeps its quorum with two of three members
  $BIN/herd scale acme/quickstart nodemanager=2 --wait
Stop it with: deploy/demo.sh down
MSG
