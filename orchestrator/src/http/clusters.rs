//! Clusters: list, get (with `ETag`), create or replace (`PUT`, the spec as JSON or YAML),
//! delete, and pool scaling (`PATCH`). A tenant token sees its own tenant's clusters only;
//! any other answers 404 as if it did not exist.

use axum::Extension;
use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, PathRejection, QueryRejection};
use axum::extract::{Path, Query, State as AxumState};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::Json;
use herd_api::wire::{ClusterStatus, Page, Problem, ScaleRequest, Scope};
use herd_api::validate::PortPolicy;
use herd_api::{Role, yaml};

use super::auth::Caller;
use super::{ListParams, Result, check_name, etag, if_match, parse};
use crate::error::Error;
use crate::state::{Applied, State};

fn with_etag(status: StatusCode, cluster: ClusterStatus) -> Response {
    let tag = etag(cluster.generation);
    (status, [(header::ETAG, tag)], Json(cluster)).into_response()
}

/// Checks the path's names and that the caller sees the tenant.
fn visible(caller: &Caller, tenant: &str, cluster: &str) -> std::result::Result<(), Error> {
    check_name("tenant", tenant)?;
    check_name("cluster", cluster)?;
    caller.principal.require_tenant(tenant, "cluster", format!("{tenant}/{cluster}"))
}

/// Every cluster the caller sees: all of them for an admin, its own tenant's for a tenant.
#[utoipa::path(get, path = "/v1/clusters", tag = "clusters", params(ListParams),
    responses((status = 200, body = Page<ClusterStatus>), (status = 401, body = Problem), (status = 422, body = Problem)),
    security(("bearer" = [])))]
pub async fn all(
    AxumState(s): AxumState<State>,
    Extension(caller): Extension<Caller>,
    q: std::result::Result<Query<ListParams>, QueryRejection>,
) -> Result<Json<Page<ClusterStatus>>> {
    let (limit, after) = q?.0.checked()?;
    let tenant = match caller.principal.scope {
        Scope::Admin => None,
        _ => Some(caller.principal.tenant.clone().unwrap_or_default()),
    };
    Ok(Json(s.clusters(tenant, after, limit).await?))
}

/// One tenant's clusters.
#[utoipa::path(get, path = "/v1/tenants/{tenant}/clusters", tag = "clusters", params(("tenant" = String, Path), ListParams),
    responses((status = 200, body = Page<ClusterStatus>), (status = 404, body = Problem), (status = 422, body = Problem)),
    security(("bearer" = [])))]
pub async fn of_tenant(
    AxumState(s): AxumState<State>,
    Extension(caller): Extension<Caller>,
    path: std::result::Result<Path<String>, PathRejection>,
    q: std::result::Result<Query<ListParams>, QueryRejection>,
) -> Result<Json<Page<ClusterStatus>>> {
    let Path(tenant) = path?;
    check_name("tenant", &tenant)?;
    caller.principal.require_tenant(&tenant, "tenant", &tenant)?;
    let (limit, after) = q?.0.checked()?;
    s.tenant(tenant.clone()).await?;
    Ok(Json(s.clusters(Some(tenant), after, limit).await?))
}

/// Which page of a cluster's instances to answer with.
#[derive(Debug, serde::Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct InstanceParams {
    /// Instances per page, 1 to 10000 (default 1000); `pools` always counts them all.
    #[param(minimum = 1, maximum = 10000)]
    pub limit: Option<u32>,
    /// The `instances_next` cursor of the previous page (an instance name); one that names no
    /// instance of the cluster (any more) is refused by the state (422).
    #[param(min_length = 1, max_length = 63, pattern = "^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$")]
    pub after: Option<String>,
}

pub const INSTANCES_DEFAULT: u32 = crate::clusters::INSTANCES_PAGE as u32;
pub const INSTANCES_MAX: u32 = 10_000;

/// A cluster: spec, generation (also as `ETag`), pool summaries and one page of instances
/// (`instances_next` says where the next one starts), desired next to observed.
#[utoipa::path(get, path = "/v1/tenants/{tenant}/clusters/{cluster}", tag = "clusters",
    params(("tenant" = String, Path), ("cluster" = String, Path), InstanceParams),
    responses((status = 200, body = ClusterStatus, headers(("ETag" = String, description = "the generation, for If-Match"))),
        (status = 404, body = Problem)),
    security(("bearer" = [])))]
pub async fn get(
    AxumState(s): AxumState<State>,
    Extension(caller): Extension<Caller>,
    path: std::result::Result<Path<(String, String)>, PathRejection>,
    q: std::result::Result<Query<InstanceParams>, QueryRejection>,
) -> Result<Response> {
    let Path((tenant, cluster)) = path?;
    visible(&caller, &tenant, &cluster)?;
    let q = q?.0;
    let limit = q.limit.unwrap_or(INSTANCES_DEFAULT);
    if limit == 0 || limit > INSTANCES_MAX {
        return Err(Error::invalid("limit", format!("must be from 1 to {INSTANCES_MAX}, got {limit}")).into());
    }
    if let Some(a) = &q.after
        && herd_api::names::check_dns_label(a).is_err()
    {
        return Err(Error::invalid("after", "must be the `instances_next` cursor of the previous page (an instance name)").into());
    }
    Ok(with_etag(StatusCode::OK, s.cluster_page(tenant, cluster, q.after, limit as usize).await?))
}

/// Creates (201) or replaces (200) a cluster from its spec, JSON or YAML, as `herd apply`
/// sends it. Idempotent: the same spec again changes nothing. With `If-Match`, refused
/// with 412 unless the cluster is at that generation; a spec naming another tenant or
/// cluster than the URL is refused with 409. Answers with the cluster as `GET` without
/// `?limit=` would: pool summaries counting every instance and the first page of instances
/// (`instances_next` says where the next one starts).
#[utoipa::path(put, path = "/v1/tenants/{tenant}/clusters/{cluster}", tag = "clusters",
    params(("tenant" = String, Path), ("cluster" = String, Path),
        ("If-Match" = Option<String>, Header, description = "the generation the change is based on, e.g. \"3\"")),
    request_body(content((herd_api::ClusterSpec = "application/json"), (herd_api::ClusterSpec = "application/yaml"))),
    responses((status = 200, body = ClusterStatus), (status = 201, body = ClusterStatus),
        (status = 404, body = Problem), (status = 409, body = Problem, description = "the spec names another tenant or cluster than the URL"),
        (status = 412, body = Problem, description = "stale generation (If-Match)"),
        (status = 413, body = Problem), (status = 422, body = Problem, description = "invalid spec, or refused by the state (over quota, unknown tenant)")),
    security(("bearer" = [])))]
pub async fn apply(
    AxumState(s): AxumState<State>,
    Extension(caller): Extension<Caller>,
    policy: Option<Extension<PortPolicy>>,
    path: std::result::Result<Path<(String, String)>, PathRejection>,
    headers: HeaderMap,
    body: std::result::Result<Bytes, BytesRejection>,
) -> Result<Response> {
    let Path((tenant, cluster)) = path?;
    visible(&caller, &tenant, &cluster)?;
    let expect = if_match(&headers)?;
    let body = body?;
    let text = std::str::from_utf8(&body).map_err(|_| Error::invalid("", "request body is not UTF-8"))?;
    let spec = yaml::parse_cluster_spec(text).map_err(Error::from)?;
    // NB: a representation that names another resource than the URL conflicts with its
    // target: 409, as RFC 9110 (section 9.3.4) suggests for PUT.
    if spec.tenant != tenant {
        return Err(Error::Conflict(format!("tenant: `{}` does not match the URL's tenant `{tenant}`", spec.tenant)).into());
    }
    if spec.name != cluster {
        return Err(Error::Conflict(format!("name: `{}` does not match the URL's cluster `{cluster}`", spec.name)).into());
    }
    // The orchestrator's port range (its flag; the default when the router runs without it),
    // and never a port an agent serves on.
    let mut policy = policy.map(|Extension(p)| p).unwrap_or_default();
    if spec.pools.values().any(|p| !p.publish.is_empty()) {
        policy.reserved.extend(s.agent_ports().await?);
    }
    // The admin's range and herd's own ports: this orchestrator's configuration refuses it.
    policy.check(&spec).map_err(|e| Error::Refused(e.field_errors()))?;
    if caller.principal.scope != Scope::Admin {
        // Capabilities are the admin's: a tenant may keep what an admin granted, no more.
        let stored = match s.cluster(tenant.clone(), cluster.clone()).await {
            Ok(c) => Some(c.spec),
            Err(Error::NotFound { .. }) => None,
            Err(e) => return Err(e.into()),
        };
        for (role, pool) in &spec.pools {
            let granted = stored.as_ref().and_then(|c| c.pools.get(role)).map(|p| &p.capabilities.add);
            if let Some(extra) = pool.capabilities.add.iter().find(|c| !granted.is_some_and(|g| g.contains(c))) {
                return Err(Error::Forbidden(format!(
                    "pools.{role}.capabilities.add: only an admin may grant capabilities (`{extra}` was not granted to this pool); ask your platform team"
                ))
                .into());
            }
        }
    }
    let (status, applied) = s.apply(caller.principal.actor(), spec, expect).await?;
    let code = if applied == Applied::Created { StatusCode::CREATED } else { StatusCode::OK };
    Ok(with_etag(code, status))
}

/// `?purgeData=true` on a cluster `DELETE`.
#[derive(Debug, Default, serde::Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct DeleteParams {
    /// Also remove the instances' data folders on their hosts (HDFS blocks, NameNode
    /// metadata); without it they are kept.
    #[serde(default)]
    pub purge_data: bool,
}

/// Deletes a cluster; its containers stop at their hosts' next heartbeat. Data folders stay
/// on the hosts unless `purgeData=true`.
#[utoipa::path(delete, path = "/v1/tenants/{tenant}/clusters/{cluster}", tag = "clusters",
    params(("tenant" = String, Path), ("cluster" = String, Path), DeleteParams, ("If-Match" = Option<String>, Header)),
    responses((status = 204), (status = 404, body = Problem), (status = 409, body = Problem)),
    security(("bearer" = [])))]
pub async fn delete(
    AxumState(s): AxumState<State>,
    Extension(caller): Extension<Caller>,
    path: std::result::Result<Path<(String, String)>, PathRejection>,
    q: std::result::Result<Query<DeleteParams>, QueryRejection>,
    headers: HeaderMap,
) -> Result<Response> {
    let Path((tenant, cluster)) = path?;
    visible(&caller, &tenant, &cluster)?;
    let purge = q?.0.purge_data;
    s.delete(caller.principal.actor(), tenant, cluster, purge, if_match(&headers)?).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// Sets one pool's replicas; the rest of the spec stays. Refused over the tenant's quota
/// (422) or, with `If-Match`, when the cluster moved on (412). DataNodes of a cluster with a
/// NameNode leave by decommission, NodeManagers of one with a ResourceManager by a graceful
/// drain; a DataNode scale-down below `hdfs.replication` is refused (422) unless `force`.
/// Answers with the cluster's first page of instances, as `PUT` does.
#[utoipa::path(patch, path = "/v1/tenants/{tenant}/clusters/{cluster}/pools/{pool}", tag = "clusters",
    params(("tenant" = String, Path), ("cluster" = String, Path), ("pool" = Role, Path), ("If-Match" = Option<String>, Header)),
    request_body = ScaleRequest,
    responses((status = 200, body = ClusterStatus), (status = 404, body = Problem), (status = 409, body = Problem),
        (status = 422, body = Problem)),
    security(("bearer" = [])))]
pub async fn scale(
    AxumState(s): AxumState<State>,
    Extension(caller): Extension<Caller>,
    path: std::result::Result<Path<(String, String, String)>, PathRejection>,
    headers: HeaderMap,
    body: std::result::Result<Bytes, BytesRejection>,
) -> Result<Response> {
    let Path((tenant, cluster, pool)) = path?;
    visible(&caller, &tenant, &cluster)?;
    let pool: Role = pool.parse().map_err(|m: String| Error::invalid("pool", m))?;
    let expect = if_match(&headers)?;
    let req: ScaleRequest = parse(&body?)?;
    let status = s.scale(caller.principal.actor(), tenant, cluster, pool, req, expect).await?;
    Ok(with_etag(StatusCode::OK, status))
}
