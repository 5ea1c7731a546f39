//! herd's Kubernetes operator mode: `HadoopCluster` custom resources (the cluster spec of
//! `herd apply`, one namespace per tenant) reconciled into Kubernetes objects, with the
//! Hadoop rendering and the decommission state machine of bare-metal mode.
//!
//! # Layout
//! - [`crd`]: the `HadoopCluster` resource and its status; the CRD generated from herd's
//!   spec types.
//! - [`objects`]: every object a cluster becomes (StatefulSets, Services, ConfigMaps, the
//!   PodDisruptionBudget), a pure function.
//! - [`lifecycle`]: scale-downs through herd's decommission/drain state machine, kept in
//!   the resource's status.
//! - [`health`]: reading the NameNode's `/jmx` and the ResourceManager's `/ws/v1`.
//! - [`reconcile`]: the controller: observe, decide, apply (server-side apply under one
//!   field manager), status, events, backoff.
//! - [`lease`]: leader election through a `coordination.k8s.io` Lease.

pub mod crd;
pub mod objects;
pub mod health;
pub mod lease;
pub mod lifecycle;
pub mod reconcile;

#[cfg(test)]
mod reconcile_tests;
