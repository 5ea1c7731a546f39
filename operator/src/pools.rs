//! `HadoopPool`s: one per worker pool of a cluster, the target of `kubectl scale` and of a
//! HorizontalPodAutoscaler. Pure: which size a pool has, and what to write so that the
//! cluster's spec and the pool's never fight.
//!
//! ```text
//!  HadoopCluster spec.pools.nodemanager.replicas = C      HadoopPool prod-nodemanager
//!                                                          spec.replicas = P (kubectl scale, HPA)
//!                                                          annotation herd.dev/cluster-replicas = L
//!  no pool yet       -> create it: P = C, L = C           (one write)
//!  C != L            -> the cluster was edited: P = C, L = C (one merge patch, with the
//!                       resourceVersion read; refused if the pool changed since: then read
//!                       again, and if P moved meanwhile, that scale is newer than the edit:
//!                       L = C only, P kept)
//!  C == L            -> P as it is: the pool's size, whoever set it last
//! ```
//!
//! So `spec.replicas` of the pool is the pool's size; the cluster's `replicas` is an input
//! forwarded once per change. The operator writes `spec.replicas` only in those two writes,
//! never in a server-side apply, so it never takes the field back from `kubectl scale` or an
//! HPA (their writes own it until the cluster's value changes again).

use kube::{Resource, ResourceExt};
use serde_json::{Value, json};

use crate::crd::{HadoopCluster, HadoopPool, WorkerRole};
use crate::objects::{self, BuildError, names};

/// The annotation a pool keeps the cluster's `replicas` it last took in.
pub const CLUSTER_REPLICAS: &str = "herd.dev/cluster-replicas";

/// What to write to a pool, besides nothing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Write {
    /// The pool is as it should be: its `spec.replicas` is the size.
    Keep,
    /// There is no pool: create it with the cluster's replicas.
    Create,
    /// The cluster's replicas changed since the pool last took them in: send them.
    Forward,
}

/// A pool's size, and the write that makes the pool say so.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Size {
    pub replicas: u32,
    pub write: Write,
}

/// The size of a worker pool whose cluster asks for `cluster` replicas, given its
/// `HadoopPool` as stored (see the module diagram).
pub fn size(cluster: u32, pool: Option<&HadoopPool>) -> Size {
    let Some(pool) = pool else { return Size { replicas: cluster, write: Write::Create } };
    let taken_in = pool.annotations().get(CLUSTER_REPLICAS).and_then(|v| v.parse::<u32>().ok());
    if taken_in == Some(cluster) {
        Size { replicas: u32::try_from(pool.spec.replicas).unwrap_or(0), write: Write::Keep }
    } else {
        Size { replicas: cluster, write: Write::Forward }
    }
}

/// Whether `pool` is the one of the cluster with uid `uid` (its controller owner reference).
pub fn owned_by(pool: &HadoopPool, uid: Option<&str>) -> bool {
    let Some(uid) = uid else { return false };
    pool.owner_references().iter().any(|r| r.uid == uid && r.controller == Some(true))
}

/// A new pool for `role` of `hc`, sized `replicas`.
pub fn object(hc: &HadoopCluster, role: WorkerRole, replicas: u32) -> Result<HadoopPool, BuildError> {
    let cluster = hc.meta().name.as_deref().ok_or(BuildError::Missing("metadata.name"))?;
    let namespace = hc.meta().namespace.as_deref().ok_or(BuildError::Missing("metadata.namespace"))?;
    let v = json!({
        "apiVersion": format!("{}/{}", crate::crd::GROUP, crate::crd::VERSION),
        "kind": "HadoopPool",
        "metadata": {
            "name": names::pool(cluster, role.role()),
            "namespace": namespace,
            "labels": objects::labels(cluster, Some(role.role())),
            "annotations": {CLUSTER_REPLICAS: replicas.to_string()},
            "ownerReferences": [objects::owner_reference(hc)?],
        },
        "spec": {"cluster": cluster, "role": role, "replicas": replicas},
    });
    serde_json::from_value(v).map_err(|source| BuildError::Shape { what: "a HadoopPool".into(), source })
}

/// The merge patch that forwards the cluster's `replicas` into a pool read at
/// `resource_version` (the API server refuses it if the pool changed since).
pub fn forward(resource_version: Option<&str>, replicas: u32) -> Value {
    json!({
        "metadata": {"resourceVersion": resource_version, "annotations": {CLUSTER_REPLICAS: replicas.to_string()}},
        "spec": {"replicas": replicas},
    })
}

/// After a [`forward`] was refused because the pool changed since it was `read`: the size and
/// the merge patch to send to the pool as it is now (`fresh`). A scale in between (its
/// `spec.replicas` moved) came after the cluster's edit the operator saw, so it wins: the
/// pool takes the cluster's value in without changing size. Any other change: forward again.
pub fn after_conflict(read: &HadoopPool, fresh: &HadoopPool, cluster: u32) -> (u32, Value) {
    let rv = fresh.metadata.resource_version.as_deref();
    if fresh.spec.replicas != read.spec.replicas {
        let replicas = u32::try_from(fresh.spec.replicas).unwrap_or(0);
        (replicas, json!({"metadata": {"resourceVersion": rv, "annotations": {CLUSTER_REPLICAS: cluster.to_string()}}}))
    } else {
        (cluster, forward(rv, cluster))
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;

    fn pool(replicas: i32, taken_in: Option<&str>) -> HadoopPool {
        let mut p = HadoopPool::new("prod-nodemanager", crate::crd::HadoopPoolSpec { cluster: "prod".into(), role: WorkerRole::Nodemanager, replicas });
        if let Some(v) = taken_in {
            p.metadata.annotations = Some([(CLUSTER_REPLICAS.to_string(), v.to_string())].into());
        }
        p
    }

    #[test]
    fn the_pool_is_the_size_unless_the_cluster_changed() {
        // (cluster replicas, pool, want)
        let cases: Vec<(&str, u32, Option<HadoopPool>, Size)> = vec![
            ("no pool yet: created with the cluster's", 4, None, Size { replicas: 4, write: Write::Create }),
            ("settled", 4, Some(pool(4, Some("4"))), Size { replicas: 4, write: Write::Keep }),
            ("kubectl scale hp: the pool wins, nothing written", 4, Some(pool(2, Some("4"))), Size { replicas: 2, write: Write::Keep }),
            ("an HPA scaled up: kept", 4, Some(pool(9, Some("4"))), Size { replicas: 9, write: Write::Keep }),
            ("the cluster edited after a scale: the cluster's is sent", 3, Some(pool(2, Some("4"))), Size { replicas: 3, write: Write::Forward }),
            ("the cluster edited to what the pool has: the annotation catches up", 2, Some(pool(2, Some("4"))), Size { replicas: 2, write: Write::Forward }),
            ("no annotation (made by hand): the cluster's", 4, Some(pool(7, None)), Size { replicas: 4, write: Write::Forward }),
            ("an annotation that is no number: the cluster's", 4, Some(pool(7, Some("four"))), Size { replicas: 4, write: Write::Forward }),
            ("scaled to zero: kept", 4, Some(pool(0, Some("4"))), Size { replicas: 0, write: Write::Keep }),
        ];
        for (case, cluster, pool, want) in cases {
            assert_eq!(size(cluster, pool.as_ref()), want, "{case}");
        }
    }

    #[test]
    fn a_scale_that_raced_a_forward_wins_other_changes_do_not() {
        let mut read = pool(2, Some("4"));
        read.metadata.resource_version = Some("41".into());
        // kubectl scale to 7 after the operator read the pool: the scale stays, the cluster's 3
        // is taken in.
        let mut scaled = pool(7, Some("4"));
        scaled.metadata.resource_version = Some("42".into());
        assert_eq!(
            after_conflict(&read, &scaled, 3),
            (7, json!({"metadata": {"resourceVersion": "42", "annotations": {CLUSTER_REPLICAS: "3"}}}))
        );
        // A label added meanwhile: the forward is sent again, on the new version.
        let mut labelled = pool(2, Some("4"));
        labelled.metadata.resource_version = Some("43".into());
        labelled.metadata.labels = Some([("team".to_string(), "data".to_string())].into());
        assert_eq!(after_conflict(&read, &labelled, 3), (3, forward(Some("43"), 3)));
    }

    #[test]
    fn a_new_pool_is_owned_by_its_cluster_and_remembers_the_replicas_it_took() {
        let mut hc = HadoopCluster::new("prod", serde_json::from_value(json!({})).unwrap());
        hc.metadata.namespace = Some("acme".into());
        hc.metadata.uid = Some("u-1".into());
        let p = object(&hc, WorkerRole::Datanode, 6).unwrap();
        let v = serde_json::to_value(&p).unwrap();
        assert_eq!(v["metadata"]["name"], "prod-datanode");
        assert_eq!(v["metadata"]["namespace"], "acme");
        assert_eq!(v["metadata"]["annotations"][CLUSTER_REPLICAS], "6");
        assert_eq!(v["metadata"]["labels"]["app.kubernetes.io/component"], "datanode");
        assert_eq!(v["metadata"]["ownerReferences"][0]["kind"], "HadoopCluster");
        assert_eq!(v["spec"], json!({"cluster": "prod", "role": "datanode", "replicas": 6}));
        assert!(owned_by(&p, Some("u-1")));
        assert!(!owned_by(&p, Some("u-2")));
        assert!(!owned_by(&p, None));
        assert_eq!(size(6, Some(&p)), Size { replicas: 6, write: Write::Keep });
        assert_eq!(
            forward(Some("42"), 3),
            json!({"metadata": {"resourceVersion": "42", "annotations": {CLUSTER_REPLICAS: "3"}}, "spec": {"replicas": 3}})
        );
    }
}
