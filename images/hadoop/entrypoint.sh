#!/bin/sh
# Starts one Hadoop daemon (HERD_ROLE, fixed at build time) in the foreground with herd's layout:
#   $HADOOP_CONF_DIR (/etc/hadoop/conf)  config rendered by herd (herd-hadoop's render), mounted
#                                        read-only; linked over the base image's defaults into
#                                        /hadoop/conf (herd's files win)
#   $HADOOP_LOG_DIR (/hadoop/logs)       the instance's log folder on the host
#   $HERD_DATA_DIRS                      data disk folders, comma-separated (/hadoop/dfs/data0,...)
# Storage folders are the rendered config's: DataNode blocks in dfs.datanode.data.dir
# (herd renders file:///hadoop/dfs/data0,... one per data disk, else file:///hadoop/dfs/data),
# NameNode metadata in dfs.namenode.name.dir (file:///hadoop/dfs/data0/name on the first data
# disk, else file:///hadoop/dfs/name), formatted when empty. Without a rendered config they
# are derived from HERD_DATA_DIRS the same way (HERD_NAME_DIR overrides the name folder) and
# passed to the daemon with -D.
# Starts as root only to create and chown those folders, then runs the daemon as
# HERD_HADOOP_USER. The heap comes from HADOOP_HEAPSIZE_MAX, which herd sets per role
# (herd-hadoop's daemon_env). Extra arguments are passed to the daemon.
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

# conf_dirs KEY: the local folders a rendered comma-separated URI list names (file:// cut),
# space-separated; empty when the config does not set KEY.
conf_dirs() {
    [ -e "$herd_conf/hdfs-site.xml" ] || return 0
    hdfs getconf -confKey "$1" 2>/dev/null | tr ',' ' ' | sed 's#\[[A-Za-z_]*\]##g; s#file://##g'
}
# Defaults when herd rendered nothing: the same layout herd renders.
data_dirs=$(echo "${HERD_DATA_DIRS:-/hadoop/dfs/data}" | tr ',' ' ')
name_dir=${HERD_NAME_DIR:-}
if [ -z "$name_dir" ]; then
    if [ -n "${HERD_DATA_DIRS:-}" ]; then name_dir=${HERD_DATA_DIRS%%,*}/name; else name_dir=/hadoop/dfs/name; fi
fi
# set_by_conf: 1 when the rendered config names the folders (then no -D is passed).
set_by_conf=0
case $role in
    datanode) rendered=$(conf_dirs dfs.datanode.data.dir) ;;
    namenode) rendered=$(conf_dirs dfs.namenode.name.dir) ;;
    *) rendered= ;;
esac
if [ -n "$rendered" ]; then
    set_by_conf=1
    case $role in
        datanode) data_dirs=$rendered ;;
        namenode) name_dir=${rendered%% *} ;;
    esac
fi

# Folders the daemon writes to must exist and belong to it (herd's agent creates them as root).
dirs=$HADOOP_LOG_DIR
case $role in
    datanode) dirs="$dirs $data_dirs" ;;
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

# -D only when herd rendered no config (the rendered one already says it).
name_opt=
if [ "$set_by_conf" = 0 ]; then name_opt="-D dfs.namenode.name.dir=file://$name_dir"; fi
case $role in
    namenode)
        if [ -z "$(ls -A "$name_dir" 2>/dev/null)" ]; then
            say "formatting the empty NameNode metadata folder $name_dir"
            # shellcheck disable=SC2086 # $drop and $name_opt are word lists or empty
            $drop hdfs namenode $name_opt \
                -format -nonInteractive -clusterid "${HERD_TENANT:-herd}-${HERD_CLUSTER:-cluster}"
        fi
        # shellcheck disable=SC2086
        set -- hdfs namenode $name_opt "$@"
        ;;
    datanode)
        if [ "$set_by_conf" = 0 ]; then
            set -- hdfs datanode -D dfs.datanode.data.dir="$(echo "$data_dirs" | sed 's#\([^ ][^ ]*\)#file://\1#g; s# #,#g')" "$@"
        else
            set -- hdfs datanode "$@"
        fi
        ;;
    resourcemanager) set -- yarn resourcemanager "$@" ;;
    # Container logs default to ${yarn.log.dir}/userlogs, i.e. under HADOOP_LOG_DIR.
    nodemanager) set -- yarn nodemanager "$@" ;;
    *) say "unknown role '$role' (datanode, nodemanager, namenode, resourcemanager)"; exit 2 ;;
esac
say "starting $role: $*"
# shellcheck disable=SC2086
exec $drop "$@"
