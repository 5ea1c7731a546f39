//! herd's Kubernetes operator mode: `HadoopCluster` custom resources (the cluster spec of
//! `herd apply`, one namespace per tenant) reconciled into Kubernetes objects, with the
//! Hadoop rendering and the decommission state machine of bare-metal mode.
//!
//! # Layout
//! - [`crd`]: the `HadoopCluster` and `HadoopPool` resources and their status; the CRDs
//!   generated from herd's spec types.
//! - [`objects`]: every object a cluster becomes (StatefulSets, Services, ConfigMaps, the
//!   PodDisruptionBudget), a pure function.
//! - [`pools`]: a `HadoopPool` per worker pool (the `kubectl scale`/HPA target): its size
//!   and how the cluster's replicas reach it without the two fighting.
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
pub mod pools;
pub mod reconcile;

#[cfg(test)]
mod reconcile_tests;
