#!/bin/sh
# Starts one Hadoop daemon (HERD_ROLE, fixed at build time) in the foreground with herd's layout:
#   $HADOOP_CONF_DIR (/etc/hadoop/conf)  config rendered by herd, mounted read-only; linked over
#                                        the base image's defaults into /hadoop/conf
#   $HADOOP_LOG_DIR (/hadoop/logs)       the instance's log folder on the host
#   $HERD_DATA_DIRS                      data disk folders, comma-separated (/hadoop/dfs/data0,...)
# Storage: DataNode blocks in every data dir (default /hadoop/dfs/data); NameNode metadata in
# HERD_NAME_DIR, else <first data dir>/name, else /hadoop/dfs/name, formatted when empty.
# Starts as root only to create and chown those folders, then runs the daemon as
# HERD_HADOOP_USER. Extra arguments are passed to the daemon.
set -eu

role=${HERD_ROLE:?HERD_ROLE is not set: build the image with --build-arg ROLE=...}
user=${HERD_HADOOP_USER:-hadoop}
herd_conf=${HADOOP_CONF_DIR:-/etc/hadoop/conf}
conf=/hadoop/conf
HADOOP_LOG_DIR=${HADOOP_LOG_DIR:-/hadoop/logs}
YARN_LOG_DIR=$HADOOP_LOG_DIR
export HADOOP_LOG_DIR YARN_LOG_DIR

say() { echo "herd-entrypoint: $*" >&2; }

# Configuration: the base image's defaults, then herd's files over them (herd's win).
# (Not running as root, the folder may not be ours: then use one under /tmp.)
if ! { mkdir -p "$conf" && [ -w "$conf" ]; } 2>/dev/null; then conf=${TMPDIR:-/tmp}/herd-hadoop-conf; mkdir -p "$conf"; fi
rm -f "$conf"/*
for f in "${HADOOP_HOME:-/opt/hadoop}"/etc/hadoop/* "$herd_conf"/*; do
    if [ -e "$f" ]; then ln -sf "$f" "$conf/"; fi
done
if [ -z "$(ls -A "$herd_conf" 2>/dev/null)" ]; then
    say "warning: $herd_conf is empty; running on the base image's default configuration"
fi
HADOOP_CONF_DIR=$conf
export HADOOP_CONF_DIR

data_dirs=${HERD_DATA_DIRS:-/hadoop/dfs/data}
name_dir=${HERD_NAME_DIR:-}
if [ -z "$name_dir" ]; then
    if [ -n "${HERD_DATA_DIRS:-}" ]; then name_dir=${HERD_DATA_DIRS%%,*}/name; else name_dir=/hadoop/dfs/name; fi
fi

# Folders the daemon writes to must exist and belong to it (herd's agent creates them as root).
dirs=$HADOOP_LOG_DIR
case $role in
    datanode) dirs="$dirs $(echo "$data_dirs" | tr ',' ' ')" ;;
    namenode) dirs="$dirs $name_dir" ;;
esac
# shellcheck disable=SC2086 # $dirs is a space-separated list of paths without spaces
mkdir -p $dirs

# drop: the command prefix that runs the daemon as $user, when we are root and it exists.
drop=
if [ "$(id -u)" = 0 ] && id -u "$user" >/dev/null 2>&1; then
    # shellcheck disable=SC2086
    chown "$(id -u "$user"):$(id -g "$user")" $dirs
    if command -v setpriv >/dev/null; then
        drop="setpriv --reuid=$(id -u "$user") --regid=$(id -g "$user") --init-groups --"
    else
        drop="runuser -u $user --"
    fi
    HOME=$(awk -F: -v u="$user" '$1 == u { print $6 }' /etc/passwd)
    export HOME USER="$user"
fi

case $role in
    namenode)
        if [ -z "$(ls -A "$name_dir" 2>/dev/null)" ]; then
            say "formatting the empty NameNode metadata folder $name_dir"
            # shellcheck disable=SC2086
            $drop hdfs namenode -D dfs.namenode.name.dir="file://$name_dir" \
                -format -nonInteractive -clusterid "${HERD_TENANT:-herd}-${HERD_CLUSTER:-cluster}"
        fi
        set -- hdfs namenode -D dfs.namenode.name.dir="file://$name_dir" "$@"
        ;;
    datanode)
        set -- hdfs datanode -D dfs.datanode.data.dir="$(echo "$data_dirs" | sed 's#\([^,][^,]*\)#file://\1#g')" "$@"
        ;;
    resourcemanager) set -- yarn resourcemanager "$@" ;;
    # Container logs default to ${yarn.log.dir}/userlogs, i.e. under HADOOP_LOG_DIR.
    nodemanager) set -- yarn nodemanager "$@" ;;
    *) say "unknown role '$role' (datanode, nodemanager, namenode, resourcemanager)"; exit 2 ;;
esac
say "starting $role: $*"
# shellcheck disable=SC2086
exec $drop "$@"
