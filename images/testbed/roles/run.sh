#!/bin/sh
# Test double of a Hadoop daemon (herd/$ROLE:testbed): NOT Hadoop. It prints the startup line
# the real daemon logs, writes to $HADOOP_LOG_DIR like the real one, heartbeats on stdout,
# and exits promptly and cleanly on SIGTERM, as the tests and the demo need.
ROLE=${HERD_ROLE:-unknown}
HADOOP_LOG_DIR=${HADOOP_LOG_DIR:-/hadoop/logs}
trap 'echo "SHUTDOWN_MSG: Shutting down $ROLE at ${HERD_HOSTNAME:-$(hostname)}"; exit 0' TERM INT

log() {
    echo "$*"
    if mkdir -p "$HADOOP_LOG_DIR" 2>/dev/null; then
        echo "$(date -u +%Y-%m-%dT%H:%M:%SZ) $*" >>"$HADOOP_LOG_DIR/$ROLE.log" 2>/dev/null
    fi
}

log "STARTUP_MSG: Starting $ROLE (herd testbed double) tenant=${HERD_TENANT:-} cluster=${HERD_CLUSTER:-} instance=${HERD_INSTANCE:-} pool=${HERD_POOL:-} host=${HERD_HOSTNAME:-$(hostname)} data_dirs=${HERD_DATA_DIRS:-}"
n=0
while :; do
    n=$((n + 1))
    echo "$ROLE heartbeat $n"
    sleep 5 &
    wait $!
done
