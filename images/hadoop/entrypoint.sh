#!/usr/bin/env bash
# Starts one Hadoop daemon in the foreground with herd's layout (see the Dockerfile).
set -euo pipefail
role=${HERD_ROLE:?HERD_ROLE is not set; build the image with --build-arg ROLE=...}
mkdir -p "$HADOOP_LOG_DIR"
data_dirs=${HERD_DATA_DIRS:-/hadoop/dfs/data0}

case $role in
    namenode)
        name_dir=${data_dirs%%,*}/name
        if [[ ! -d $name_dir/current ]]; then
            # First start of this NameNode: format its (empty) metadata directory once.
            hdfs namenode -format -nonInteractive -force \
                -D dfs.namenode.name.dir="file://$name_dir" -clusterId "${HERD_TENANT:-herd}-${HERD_CLUSTER:-cluster}"
        fi
        exec hdfs namenode -D dfs.namenode.name.dir="file://$name_dir"
        ;;
    datanode)
        dirs=$(echo "$data_dirs" | sed 's#\([^,]*\)#file://\1#g')
        exec hdfs datanode -D dfs.datanode.data.dir="$dirs"
        ;;
    resourcemanager) exec yarn resourcemanager ;;
    nodemanager)
        exec yarn nodemanager -D yarn.nodemanager.log-dirs="$HADOOP_LOG_DIR/userlogs"
        ;;
    *) echo "unknown role $role" >&2; exit 2 ;;
esac
