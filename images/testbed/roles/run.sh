#!/bin/sh
# Test double of a Hadoop daemon (image herd/<role>:testbed, label herd.double=true): NOT Hadoop.
# It prints the STARTUP_MSG line the real daemon logs, writes to $HADOOP_LOG_DIR/<role>.log like
# the real one, heartbeats on stdout every 5 s, and exits 0 at once on SIGTERM or SIGINT.
ROLE=${HERD_ROLE:-unknown}
case $ROLE in
    datanode) DAEMON=DataNode ;;
    nodemanager) DAEMON=NodeManager ;;
    namenode) DAEMON=NameNode ;;
    resourcemanager) DAEMON=ResourceManager ;;
    *) DAEMON=$ROLE ;;
esac
HADOOP_LOG_DIR=${HADOOP_LOG_DIR:-/hadoop/logs}
HOST=${HERD_HOSTNAME:-$(hostname)}

# Log to a file only if one can be written there (the folder may be read-only or not ours).
LOG_FILE=$HADOOP_LOG_DIR/$ROLE.log
if ! (mkdir -p "$HADOOP_LOG_DIR" && : >>"$LOG_FILE") 2>/dev/null; then
    LOG_FILE=
fi

# Prints a line on stdout and appends it, timestamped, to the role's log file when there is one.
say() {
    echo "$*"
    if [ -n "$LOG_FILE" ]; then
        { echo "$(date -u +%Y-%m-%dT%H:%M:%SZ) $*" >>"$LOG_FILE"; } 2>/dev/null
    fi
}

pid=
trap 'say "SHUTDOWN_MSG: Shutting down $DAEMON at $HOST"; [ -n "$pid" ] && kill "$pid" 2>/dev/null; exit 0' TERM INT

say "STARTUP_MSG: Starting $DAEMON (herd test double) host=$HOST tenant=${HERD_TENANT:-} cluster=${HERD_CLUSTER:-} instance=${HERD_INSTANCE:-} pool=${HERD_POOL:-} data_dirs=${HERD_DATA_DIRS:-} log_dir=$HADOOP_LOG_DIR"
n=0
while :; do
    n=$((n + 1))
    say "$DAEMON heartbeat $n"
    # Sleep in the background and wait for it, so a signal interrupts the wait at once.
    sleep 5 &
    pid=$!
    wait "$pid"
done
