#!/usr/bin/env bash
# The local demo, end to end: builds herd and the testbed images, starts an orchestrator
# (with its embedded store) and one agent on the local Docker engine, applies
# manifests/examples/quickstart.yaml (a NameNode, a ResourceManager, DataNodes and
# NodeManagers: the Hadoop test doubles), waits until every DataNode is live in HDFS and every
# NodeManager RUNNING in YARN, and prints the cluster's status.
#
#   deploy/demo.sh        start (or restart) the demo; leaves it running
#   deploy/demo.sh ha     the high-availability variant instead (deploy/lib/demo-ha.sh): etcd,
#                         two orchestrators, the leader killed and replaced
#   deploy/demo.sh down   stop the demo's processes (either variant's), remove its containers
#                         and its host networking
set -euo pipefail
cd "$(dirname "$0")/.."
[[ ${1:-} != ha ]] || exec deploy/lib/demo-ha.sh

DEMO_DIR=${HERD_DEMO_DIR:-$PWD/.herd-demo}
PORT=${HERD_DEMO_PORT:-7480}
# TLS end to end: a local CA made once by `herd-orchestrator tls-init` (kept with the demo's state).
export HERD_SERVER="https://127.0.0.1:$PORT"
export HERD_CA_FILE=$DEMO_DIR/tls/ca.pem
BIN=$PWD/target/debug

stop() {
    for p in agent orchestrator; do
        if [[ -f $DEMO_DIR/$p.pid ]]; then
            kill "$(cat "$DEMO_DIR/$p.pid")" 2>/dev/null || true
            rm -f "$DEMO_DIR/$p.pid"
        fi
    done
}

if [[ ${1:-} == down ]]; then
    stop
    deploy/lib/demo-ha.sh down
    ids=$(docker ps -aq --filter label=herd.host=demo-host)
    [[ -z $ids ]] || docker rm -f $ids >/dev/null
    # The demo agent's host networking: its bridge, firewall tables, routes, DOCKER-USER accepts.
    ip link delete herd0 2>/dev/null || true
    for family in inet bridge; do nft delete table $family herd 2>/dev/null || true; done
    ip route flush proto 104 2>/dev/null || true
    for dir in -i -o; do
        while iptables -C DOCKER-USER $dir herd0 -j ACCEPT 2>/dev/null; do iptables -D DOCKER-USER $dir herd0 -j ACCEPT; done
    done
    echo "demo stopped; its state is in $DEMO_DIR (delete it to start afresh)"
    exit 0
fi
source deploy/lib/demo-build.sh
demo_build
stop
mkdir -p "$DEMO_DIR"

if [[ ! -s $HERD_CA_FILE ]]; then
    echo "==> making a local CA and the orchestrator's certificate ($DEMO_DIR/tls)"
    "$BIN/herd-orchestrator" tls-init --dir "$DEMO_DIR/tls" --name 127.0.0.1 --name localhost >/dev/null
fi
echo "==> starting herd-orchestrator on $HERD_SERVER (log: $DEMO_DIR/orchestrator.log)"
"$BIN/herd-orchestrator" --data-dir "$DEMO_DIR/orchestrator" --listen "127.0.0.1:$PORT" \
    --tls-cert "$DEMO_DIR/tls/server.pem" --tls-key "$DEMO_DIR/tls/server.key" \
    >"$DEMO_DIR/orchestrator.out" 2>"$DEMO_DIR/orchestrator.log" &
echo $! >"$DEMO_DIR/orchestrator.pid"
for _ in $(seq 50); do
    curl -fsS --cacert "$HERD_CA_FILE" "$HERD_SERVER/healthz" >/dev/null 2>&1 && break
    sleep 0.2
done
curl -fsS --cacert "$HERD_CA_FILE" "$HERD_SERVER/healthz" >/dev/null || { echo "orchestrator did not start:" >&2; tail "$DEMO_DIR/orchestrator.log" >&2; exit 1; }
# The orchestrator wrote its first admin token there on first start (mode 0600).
export HERD_TOKEN_FILE=$DEMO_DIR/orchestrator/admin.token
unset HERD_TOKEN

if [[ ! -s $DEMO_DIR/agent.token ]]; then
    (umask 077; "$BIN/herd" tokens create --agent --host demo-host --description demo-host >"$DEMO_DIR/agent.token")
fi
echo "==> starting herd-agent for host demo-host (log: $DEMO_DIR/agent.log)"
# NB: the testbed doubles idle, so the demo host offers 4 CPUs even on a 2-core laptop.
# Its log endpoint (proxied by `herd logs`) listens on a free loopback port.
"$BIN/herd-agent" --orchestrator "$HERD_SERVER" --ca-file "$HERD_CA_FILE" --host-id demo-host --data-dir "$DEMO_DIR/agent" --rack demo --cpus 4 \
    --token-file "$DEMO_DIR/agent.token" --listen 127.0.0.1:0 >/dev/null 2>"$DEMO_DIR/agent.log" &
echo $! >"$DEMO_DIR/agent.pid"

echo "==> applying manifests/examples/quickstart.yaml"
"$BIN/herd" tenants create acme
"$BIN/herd" tenants quota acme --cpu 4 --memory 8Gi >/dev/null
"$BIN/herd" apply -f manifests/examples/quickstart.yaml --wait --timeout 2m
echo
"$BIN/herd" hosts
echo
"$BIN/herd" status acme/quickstart
echo
echo "==> backing up the store while the orchestrator serves (SQLite online backup, integrity checked)"
"$BIN/herd-orchestrator" --data-dir "$DEMO_DIR/orchestrator" backup --to "$DEMO_DIR/herd-backup.db"
cat <<MSG

The demo is running. Try:
  export HERD_SERVER=$HERD_SERVER HERD_TOKEN_FILE=$HERD_TOKEN_FILE HERD_CA_FILE=$HERD_CA_FILE
  $BIN/herd scale acme/quickstart datanode=4 --wait
  docker exec herd.acme.quickstart.namenode-0 hdfs dfsadmin -report
  docker exec herd.acme.quickstart.namenode-0 sh -c 'head -c 1000000 /dev/urandom >/tmp/f; hdfs dfs -put /tmp/f /f; hdfs fsck /'
  docker exec herd.acme.quickstart.resourcemanager-0 yarn node -list -all
  cat $DEMO_DIR/agent/conf/acme/quickstart/datanode-0/hdfs-site.xml   # the config herd rendered
  $BIN/herd tenants quota acme
  $BIN/herd audit
  $BIN/herd status -o yaml
  $BIN/herd logs acme/quickstart/datanode-0 -f --tail 5
  ls $DEMO_DIR/agent/logs/acme/quickstart/datanode-0/   # hadoop/ (HADOOP_LOG_DIR) and stdio/
  docker ps --filter label=herd.tenant=acme
  curl -s $HERD_SERVER/metrics | grep ^herd_   # Prometheus metrics; also /healthz and /readyz
  # restore the backup (stop the orchestrator first: restore refuses while it runs):
  #   deploy/demo.sh down; $BIN/herd-orchestrator --data-dir $DEMO_DIR/orchestrator restore --from $DEMO_DIR/herd-backup.db
Stop it with: deploy/demo.sh down
MSG
