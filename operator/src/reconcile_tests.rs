//! The reconciler against kube's `Client` over a scripted API server (a `tower-test` mock, as
//! kube-rs's controller-rs does): every request it makes is asserted, in order, with its body.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::time::Duration;

use http::{Request, Response};
use kube::Client;
use kube::client::Body;
use kube::runtime::events::{Recorder, Reporter};
use serde_json::{Value, json};

use crate::crd::Watched;
use crate::reconcile::{Context, Options, reconcile};

type Handle = tower_test::mock::Handle<Request<Body>, Response<Body>>;

const SPEC: &str = r#"{
  "apiVersion": "herd.dev/v1alpha1",
  "kind": "HadoopCluster",
  "metadata": {"name": "prod", "namespace": "acme", "uid": "u-1", "generation": 2, "resourceVersion": "7", "finalizers": ["herd.dev/cleanup"]},
  "spec": {
    "images": {"datanode": "r/dn:3.4.1"},
    "hdfs": {"replication": 2},
    "external": {"namenode": {"host": "nn.example"}},
    "pools": {"datanode": {"replicas": 3, "cpu": "500m", "memory": "1Gi", "disk": "10Gi", "nodeSelector": {"disk": "ssd"}, "maxPerHost": 2}}
  }
}"#;

fn cluster(patch: impl FnOnce(&mut Value)) -> Arc<Watched> {
    let mut v: Value = serde_json::from_str(SPEC).unwrap();
    patch(&mut v);
    Arc::new(serde_json::from_value(v).unwrap())
}

/// A context whose client is the mock, and whose NameNode is a closed loopback port (its
/// health is then an error, at once).
async fn context() -> (Arc<Context>, Handle) {
    let (service, handle) = tower_test::mock::pair::<Request<Body>, Response<Body>>();
    let client = Client::new(service, "default");
    let recorder = Recorder::new(client.clone(), Reporter { controller: "herd-operator".into(), instance: Some("test".into()) });
    let http = reqwest::Client::builder().resolve("nn.example", "127.0.0.1:9".parse().unwrap()).build().unwrap();
    let options = Options { health_timeout: Duration::from_millis(500), reconcile_timeout: Duration::from_secs(3), ..Options::default() };
    let ctx = Context::new(client, http, recorder, options).with_clock(Arc::new(|| 1_700_000_000_000));
    (Arc::new(ctx), handle)
}

/// One expected request: method, path and query; answers `reply` (status, body) and returns
/// the request's JSON body.
async fn expect(handle: &mut Handle, method: &str, path_and_query: &str, status: u16, reply: Value) -> Value {
    let (request, send) = tokio::time::timeout(Duration::from_secs(10), handle.next_request())
        .await
        .unwrap_or_else(|_| panic!("no request came; expected {method} {path_and_query}"))
        .expect("the client is gone");
    assert_eq!(format!("{} {}", request.method(), request.uri()), format!("{method} {path_and_query}"));
    let bytes = request.into_body().collect_bytes().await.unwrap();
    let body = if bytes.is_empty() { Value::Null } else { serde_json::from_slice(&bytes).unwrap() };
    // `Value::Null`: answer what was sent (an apply's answer is the object as stored); a
    // status write is answered with the whole resource.
    let reply = match reply {
        Value::Null if path_and_query.contains("/hadooppools/") && path_and_query.contains("/status?") => {
            let mut pool = stored_pool(3, "3");
            pool["status"] = body["status"].clone();
            pool
        }
        Value::Null if path_and_query.contains("/status?") => {
            let mut hc: Value = serde_json::from_str(SPEC).unwrap();
            hc["status"] = body["status"].clone();
            hc
        }
        Value::Null => body.clone(),
        other => other,
    };
    send.send_response(Response::builder().status(status).body(Body::from(reply.to_string().into_bytes())).unwrap());
    body
}

fn not_found() -> Value {
    json!({"kind": "Status", "apiVersion": "v1", "status": "Failure", "reason": "NotFound", "code": 404, "message": "not found"})
}

const APPLY: &str = "?&force=true&fieldManager=herd-operator";
const POOLS: &str = "/apis/herd.dev/v1alpha1/namespaces/acme/hadooppools";

#[tokio::test]
async fn a_new_cluster_becomes_its_objects_then_its_status() {
    let (ctx, mut api) = context().await;
    let hc = cluster(|_| {});
    let run = tokio::spawn(reconcile(hc, ctx));

    // The DataNode pool's HadoopPool: made with the cluster's replicas, remembering them.
    expect(&mut api, "GET", &format!("{POOLS}/prod-datanode"), 404, not_found()).await;
    let pool = expect(&mut api, "POST", &format!("{POOLS}?&fieldManager=herd-operator"), 201, Value::Null).await;
    assert_eq!(pool["metadata"]["name"], "prod-datanode");
    assert_eq!(pool["metadata"]["annotations"], json!({"herd.dev/cluster-replicas": "3"}));
    assert_eq!(pool["metadata"]["ownerReferences"][0]["uid"], "u-1");
    assert_eq!(pool["spec"], json!({"cluster": "prod", "role": "datanode", "replicas": 3}));
    let event = expect(&mut api, "POST", "/apis/events.k8s.io/v1/namespaces/acme/events?", 201, Value::Null).await;
    assert_eq!(event["reason"], "PoolCreated");
    // No NodeManager pool, no HadoopPool for it.
    expect(&mut api, "GET", &format!("{POOLS}/prod-nodemanager"), 404, not_found()).await;

    expect(&mut api, "GET", "/apis/apps/v1/namespaces/acme/statefulsets/prod-datanode", 404, not_found()).await;
    let pods = "/api/v1/namespaces/acme/pods?&labelSelector=app.kubernetes.io%2Finstance%3Dprod%2Capp.kubernetes.io%2Fname%3Dhadoop";
    expect(&mut api, "GET", pods, 200, json!({"kind": "PodList", "apiVersion": "v1", "metadata": {}, "items": []})).await;

    // Discovery ConfigMap named after the cluster: client config pointing at the external NameNode.
    let body = expect(&mut api, "PATCH", &format!("/api/v1/namespaces/acme/configmaps/prod{APPLY}"), 200, Value::Null).await;
    assert_eq!(body["kind"], "ConfigMap");
    assert_eq!(body["metadata"]["ownerReferences"][0], json!({"apiVersion": "herd.dev/v1alpha1", "kind": "HadoopCluster", "name": "prod", "uid": "u-1", "controller": true, "blockOwnerDeletion": true}));
    assert!(body["data"]["core-site.xml"].as_str().unwrap().contains("<value>hdfs://nn.example:8020</value>"), "{body}");
    assert!(body["data"]["hdfs-site.xml"].as_str().unwrap().contains("<name>dfs.replication</name>\n    <value>2</value>"), "{body}");

    // The live files: nothing leaving, no pod placed yet.
    let body = expect(&mut api, "PATCH", &format!("/api/v1/namespaces/acme/configmaps/prod-hosts{APPLY}"), 200, Value::Null).await;
    assert_eq!(body["data"]["dfs.exclude"], "");
    assert_eq!(body["data"]["yarn.exclude"], "");
    assert!(body["data"]["topology.table"].as_str().unwrap().starts_with("# Rendered by herd"), "{body}");

    // The pool's files, by herd's renderer: the pod's own name through ${env.POD_NAME}.
    let body = expect(&mut api, "PATCH", &format!("/api/v1/namespaces/acme/configmaps/prod-datanode{APPLY}"), 200, Value::Null).await;
    let hdfs = body["data"]["hdfs-site.xml"].as_str().unwrap();
    assert!(hdfs.contains("<name>dfs.datanode.hostname</name>"), "{hdfs}");
    assert!(hdfs.contains("${env.POD_NAME}.prod.acme"), "{hdfs}");
    assert!(hdfs.contains("file:///hadoop/dfs/data0"), "one volume claim, one data folder: {hdfs}");
    assert_eq!(body["metadata"]["labels"]["app.kubernetes.io/component"], "datanode");

    let body = expect(&mut api, "PATCH", &format!("/api/v1/namespaces/acme/services/prod{APPLY}"), 200, Value::Null).await;
    assert_eq!(body["spec"]["clusterIP"], "None");
    assert_eq!(body["spec"]["publishNotReadyAddresses"], true);

    // replication 2: one DataNode may be drained at a time.
    let body = expect(&mut api, "PATCH", &format!("/apis/policy/v1/namespaces/acme/poddisruptionbudgets/prod-datanode{APPLY}"), 200, Value::Null).await;
    assert_eq!(body["spec"]["maxUnavailable"], 1);
    assert_eq!(body["spec"]["selector"]["matchLabels"]["app.kubernetes.io/component"], "datanode");

    let sts = expect(&mut api, "PATCH", &format!("/apis/apps/v1/namespaces/acme/statefulsets/prod-datanode{APPLY}"), 200, Value::Null).await;
    assert_eq!(sts["spec"]["replicas"], 3);
    assert_eq!(sts["spec"]["serviceName"], "prod");
    assert_eq!(sts["spec"]["volumeClaimTemplates"][0]["spec"]["resources"]["requests"]["storage"], "10737418240");
    assert_eq!(sts["spec"]["persistentVolumeClaimRetentionPolicy"], json!({"whenDeleted": "Retain", "whenScaled": "Delete"}));
    let pod = &sts["spec"]["template"]["spec"];
    let spread = &pod["affinity"]["podAntiAffinity"]["preferredDuringSchedulingIgnoredDuringExecution"];
    assert_eq!(spread[0]["podAffinityTerm"]["topologyKey"], "kubernetes.io/hostname");
    assert_eq!(spread[1]["podAffinityTerm"]["topologyKey"], "topology.kubernetes.io/zone");
    // The pool's nodeSelector and maxPerHost.
    assert_eq!(pod["nodeSelector"], json!({"disk": "ssd"}));
    assert_eq!(
        pod["topologySpreadConstraints"],
        json!([{"maxSkew": 2, "topologyKey": "kubernetes.io/hostname", "whenUnsatisfiable": "DoNotSchedule", "nodeAffinityPolicy": "Honor",
                "labelSelector": {"matchLabels": {"app.kubernetes.io/component": "datanode", "app.kubernetes.io/instance": "prod", "app.kubernetes.io/name": "hadoop"}}}])
    );
    let container = &pod["containers"][0];
    assert_eq!(container["image"], "r/dn:3.4.1");
    assert_eq!(container["resources"]["limits"], json!({"cpu": "500m", "memory": "1073741824"}));
    assert!(container["env"].as_array().unwrap().contains(&json!({"name": "HADOOP_HEAPSIZE_MAX", "value": "512m"})), "{container}");
    assert_eq!(pod["volumes"][0]["projected"]["sources"][1]["configMap"]["name"], "prod-hosts");

    // Status: the NameNode does not answer, so not Available, with HDFS' reason.
    let status = expect(&mut api, "PATCH", &format!("/apis/herd.dev/v1alpha1/namespaces/acme/hadoopclusters/prod/status{APPLY}"), 200, Value::Null).await;
    assert_eq!(status["apiVersion"], "herd.dev/v1alpha1");
    let s = &status["status"];
    assert_eq!(s["observedGeneration"], 2);
    assert_eq!(s["datanodes"], json!({"desired": 3, "replicas": 3, "ready": 0, "summary": "0/3", "selector": "app.kubernetes.io/component=datanode,app.kubernetes.io/instance=prod,app.kubernetes.io/name=hadoop"}));
    let condition = |t: &str| s["conditions"].as_array().unwrap().iter().find(|c| c["type"] == t).cloned().unwrap();
    assert_eq!(condition("Available")["status"], "False");
    assert_eq!(condition("Available")["reason"], "NameNodeUnreachable");
    assert_eq!(condition("Progressing")["reason"], "PodsNotReady");
    assert!(s["hdfs"].as_str().unwrap().starts_with("Unknown: GET http://nn.example:9870/jmx"), "{s}");

    // The pool's status: what its scale subresource (and an HPA) reads.
    let status = expect(&mut api, "PATCH", &format!("{POOLS}/prod-datanode/status{APPLY}"), 200, Value::Null).await;
    assert_eq!(status["kind"], "HadoopPool");
    assert_eq!(status["status"], json!({"replicas": 3, "ready": 0, "leaving": 0, "selector": "app.kubernetes.io/component=datanode,app.kubernetes.io/instance=prod,app.kubernetes.io/name=hadoop"}));

    let action = tokio::time::timeout(Duration::from_secs(10), run).await.unwrap().unwrap().unwrap();
    assert_eq!(action, kube::runtime::controller::Action::requeue(Duration::from_secs(5)), "pods not ready: look again soon");
}

#[tokio::test]
async fn an_invalid_cluster_is_not_applied_and_its_status_names_the_fields() {
    let (ctx, mut api) = context().await;
    let hc = cluster(|v| {
        v["spec"]["pools"]["datanode"]["memory"] = json!("64Mi");
        v["spec"]["pools"]["datanode"]["publish"] = json!([{"port": 9864}]);
    });
    let run = tokio::spawn(reconcile(hc, ctx));

    // Only the status and an event: no StatefulSet, ConfigMap or Service is touched.
    let status = expect(&mut api, "PATCH", &format!("/apis/herd.dev/v1alpha1/namespaces/acme/hadoopclusters/prod/status{APPLY}"), 200, Value::Null).await;
    let s = &status["status"];
    let fields: Vec<&str> = s["invalid"].as_array().unwrap().iter().map(|p| p["field"].as_str().unwrap()).collect();
    assert_eq!(fields, ["spec.pools.datanode.memory", "spec.pools.datanode.publish"], "{s}");
    assert!(s["invalid"][0]["message"].as_str().unwrap().contains("at least 256Mi"), "{s}");
    let degraded = s["conditions"].as_array().unwrap().iter().find(|c| c["type"] == "Degraded").unwrap();
    assert_eq!(degraded["status"], "True");
    assert_eq!(degraded["reason"], "InvalidSpec");
    assert!(degraded["message"].as_str().unwrap().contains("spec.pools.datanode.memory"), "{degraded}");

    let event = expect(&mut api, "POST", "/apis/events.k8s.io/v1/namespaces/acme/events?", 201, Value::Null).await;
    assert_eq!(event["type"], "Warning");
    assert_eq!(event["reason"], "InvalidSpec");
    assert_eq!(event["regarding"]["name"], "prod");

    let action = tokio::time::timeout(Duration::from_secs(10), run).await.unwrap().unwrap().unwrap();
    assert_eq!(action, kube::runtime::controller::Action::await_change(), "nothing to retry until the spec changes");
}

#[tokio::test]
async fn an_api_error_fails_the_reconcile_and_sets_a_condition() {
    let (ctx, mut api) = context().await;
    let run = tokio::spawn(reconcile(cluster(|_| {}), ctx.clone()));
    let unavailable = json!({"kind": "Status", "apiVersion": "v1", "status": "Failure", "reason": "ServiceUnavailable", "code": 503, "message": "etcd is down"});
    expect(&mut api, "GET", &format!("{POOLS}/prod-datanode"), 503, unavailable).await;
    let status = expect(&mut api, "PATCH", &format!("/apis/herd.dev/v1alpha1/namespaces/acme/hadoopclusters/prod/status{APPLY}"), 200, Value::Null).await;
    let degraded = status["status"]["conditions"].as_array().unwrap().iter().find(|c| c["type"] == "Degraded").unwrap().clone();
    assert_eq!(degraded["reason"], "ReconcileError");
    assert!(degraded["message"].as_str().unwrap().contains("etcd is down"), "{degraded}");
    let err = tokio::time::timeout(Duration::from_secs(10), run).await.unwrap().unwrap().unwrap_err();
    // The backoff doubles per failure, capped.
    let hc = cluster(|_| {});
    let first = crate::reconcile::error_policy(hc.clone(), &err, ctx.clone());
    let second = crate::reconcile::error_policy(hc.clone(), &err, ctx.clone());
    let secs = |a: kube::runtime::controller::Action| format!("{a:?}");
    assert_ne!(secs(first), secs(second));
    let options = Options::default();
    assert!(crate::reconcile::backoff(&options, 1) >= Duration::from_secs(1) && crate::reconcile::backoff(&options, 1) < Duration::from_millis(1101));
    assert!(crate::reconcile::backoff(&options, 3) >= Duration::from_secs(4) && crate::reconcile::backoff(&options, 3) < Duration::from_millis(4401));
    assert!(crate::reconcile::backoff(&options, 30) <= Duration::from_secs(330));
}

#[tokio::test]
async fn an_unreadable_cluster_is_refused_in_its_status_naming_the_field() {
    let (ctx, mut api) = context().await;
    let hc = cluster(|v| {
        v["spec"]["pools"]["datanode"]["cpu"] = json!("lots");
    });
    let run = tokio::spawn(reconcile(hc, ctx));
    let status = expect(&mut api, "PATCH", &format!("/apis/herd.dev/v1alpha1/namespaces/acme/hadoopclusters/prod/status{APPLY}"), 200, Value::Null).await;
    let invalid = &status["status"]["invalid"];
    assert_eq!(invalid[0]["field"], "spec.pools.datanode.cpu", "{status}");
    assert!(invalid[0]["message"].as_str().unwrap().contains("`lots` is not a CPU quantity"), "{status}");
    let event = expect(&mut api, "POST", "/apis/events.k8s.io/v1/namespaces/acme/events?", 201, Value::Null).await;
    assert_eq!(event["reason"], "InvalidSpec");
    let action = tokio::time::timeout(Duration::from_secs(10), run).await.unwrap().unwrap().unwrap();
    assert_eq!(action, kube::runtime::controller::Action::await_change());
}

#[tokio::test]
async fn an_api_server_that_stops_answering_times_the_reconcile_out_with_a_condition() {
    let (ctx, mut api) = context().await;
    let run = tokio::spawn(reconcile(cluster(|_| {}), ctx.clone()));
    // The first request is never answered.
    let (request, _never) = tokio::time::timeout(Duration::from_secs(10), api.next_request()).await.unwrap().unwrap();
    assert_eq!(request.uri().path(), format!("{POOLS}/prod-datanode"));
    let status = expect(&mut api, "PATCH", &format!("/apis/herd.dev/v1alpha1/namespaces/acme/hadoopclusters/prod/status{APPLY}"), 200, Value::Null).await;
    let degraded = status["status"]["conditions"].as_array().unwrap().iter().find(|c| c["type"] == "Degraded").unwrap().clone();
    assert_eq!(degraded["reason"], "ReconcileError");
    assert!(degraded["message"].as_str().unwrap().contains("took longer than 3s"), "{degraded}");
    let err = tokio::time::timeout(Duration::from_secs(10), run).await.unwrap().unwrap().unwrap_err();
    assert!(matches!(err, crate::reconcile::Error::Timeout(_)), "{err}");
}

/// A HadoopPool as the API server stores it: `replicas` in its spec, `taken_in` the cluster's
/// replicas it last took in.
fn stored_pool(replicas: u32, taken_in: &str) -> Value {
    stored_pool_of("datanode", replicas, taken_in)
}

fn stored_pool_of(role: &str, replicas: u32, taken_in: &str) -> Value {
    json!({
        "apiVersion": "herd.dev/v1alpha1",
        "kind": "HadoopPool",
        "metadata": {
            "name": format!("prod-{role}"), "namespace": "acme", "uid": "p-1", "generation": 4, "resourceVersion": "41",
            "annotations": {"herd.dev/cluster-replicas": taken_in},
            "ownerReferences": [{"apiVersion": "herd.dev/v1alpha1", "kind": "HadoopCluster", "name": "prod", "uid": "u-1", "controller": true}],
        },
        "spec": {"cluster": "prod", "role": role, "replicas": replicas},
    })
}

/// Answers every request of a reconcile as an empty API server would (GET: not found, or an
/// empty list; writes: the object as sent), but for the HadoopPools in `pools`, by name;
/// returns the requests (`METHOD path?query`, body) once the reconcile is done.
async fn record(api: &mut Handle, run: tokio::task::JoinHandle<crate::reconcile::Result<kube::runtime::controller::Action>>, pools: &[Value]) -> Vec<(String, Value)> {
    let mut seen = Vec::new();
    let mut run = run;
    loop {
        let next = tokio::select! {
            r = api.next_request() => r,
            done = &mut run => {
                done.unwrap().unwrap();
                return seen;
            }
        };
        // The client goes with the finished reconcile (its context held it).
        let Some((request, send)) = next else {
            tokio::time::timeout(Duration::from_secs(10), run).await.unwrap().unwrap().unwrap();
            return seen;
        };
        let line = format!("{} {}", request.method(), request.uri());
        let path = request.uri().path().to_string();
        let bytes = request.into_body().collect_bytes().await.unwrap();
        let body: Value = if bytes.is_empty() { Value::Null } else { serde_json::from_slice(&bytes).unwrap() };
        let pool = path
            .strip_prefix(&format!("{POOLS}/"))
            .and_then(|rest| pools.iter().find(|p| p["metadata"]["name"] == rest.trim_end_matches("/status")))
            .cloned();
        let (status, reply) = match (line.split(' ').next().unwrap_or_default(), pool) {
            ("GET", Some(pool)) => (200, pool),
            ("PATCH", Some(mut pool)) if path.ends_with("/status") => {
                pool["status"] = body["status"].clone();
                (200, pool)
            }
            ("PATCH", Some(mut pool)) => {
                merge(&mut pool, &body);
                (200, pool)
            }
            ("DELETE", Some(pool)) => (200, pool),
            ("GET", None) if line.contains("/pods?") => (200, json!({"kind": "PodList", "apiVersion": "v1", "metadata": {}, "items": []})),
            ("GET", None) => (404, not_found()),
            (_, None) if line.contains("/hadoopclusters/prod/status?") => {
                let mut hc: Value = serde_json::from_str(SPEC).unwrap();
                hc["status"] = body["status"].clone();
                (200, hc)
            }
            ("POST", _) => (201, body.clone()),
            _ => (200, body.clone()),
        };
        send.send_response(Response::builder().status(status).body(Body::from(reply.to_string().into_bytes())).unwrap());
        seen.push((line, body));
    }
}

fn writes_to<'a>(seen: &'a [(String, Value)], what: &str) -> Vec<&'a Value> {
    seen.iter().filter(|(l, _)| !l.starts_with("GET ") && l.contains(what)).map(|(_, b)| b).collect()
}

/// `kubectl scale hadooppool prod-datanode --replicas=2` (an HPA likewise): the pool says 2
/// and still holds the cluster's 3 it took in, so 2 is the pool's size: nothing is written to
/// the pool's spec, the StatefulSet and the cluster's status follow it.
#[tokio::test]
async fn a_scaled_pool_is_the_size_and_the_operator_does_not_take_it_back() {
    let (ctx, mut api) = context().await;
    let run = tokio::spawn(reconcile(cluster(|_| {}), ctx));
    let seen = record(&mut api, run, &[stored_pool(2, "3")]).await;
    let lines: Vec<&str> = seen.iter().map(|(l, _)| l.as_str()).collect();
    assert!(
        !lines.iter().any(|l| (l.starts_with("PATCH ") || l.starts_with("PUT ") || l.starts_with("POST ")) && l.contains("/hadooppools/prod-datanode?")),
        "the pool's spec is not written: {lines:#?}"
    );
    assert!(!lines.iter().any(|l| l.starts_with("POST ") && l.contains("/hadooppools?")), "{lines:#?}");
    let sts = writes_to(&seen, "/statefulsets/prod-datanode?");
    assert_eq!(sts.len(), 1, "{lines:#?}");
    assert_eq!(sts[0]["spec"]["replicas"], 2);
    let status = writes_to(&seen, "/hadoopclusters/prod/status?");
    assert_eq!(status.last().unwrap()["status"]["datanodes"]["desired"], 2);
    let pool = writes_to(&seen, "/hadooppools/prod-datanode/status?");
    assert_eq!(pool.len(), 1, "{lines:#?}");
    assert_eq!(pool[0]["status"]["replicas"], 2);
    assert_eq!(pool[0]["status"]["observedGeneration"], 4);
}

/// The cluster's `spec.pools.datanode.replicas` edited to 5 after the pool was scaled to 2: the
/// edit is sent to the pool (one merge patch, conditional on the version read) and wins.
#[tokio::test]
async fn an_edit_of_the_cluster_replicas_is_sent_to_the_pool() {
    let (ctx, mut api) = context().await;
    let run = tokio::spawn(reconcile(cluster(|v| v["spec"]["pools"]["datanode"]["replicas"] = json!(5)), ctx));
    let seen = record(&mut api, run, &[stored_pool(2, "3")]).await;
    let lines: Vec<&str> = seen.iter().map(|(l, _)| l.as_str()).collect();
    let patches: Vec<&(String, Value)> = seen.iter().filter(|(l, _)| l.starts_with("PATCH ") && l.contains("/hadooppools/prod-datanode?")).collect();
    assert_eq!(patches.len(), 1, "{lines:#?}");
    assert_eq!(patches[0].0, format!("PATCH {POOLS}/prod-datanode?&fieldManager=herd-operator"));
    assert_eq!(
        patches[0].1,
        json!({"metadata": {"resourceVersion": "41", "annotations": {"herd.dev/cluster-replicas": "5"}}, "spec": {"replicas": 5}})
    );
    assert!(seen.iter().any(|(l, b)| l.contains("/events") && b["reason"] == "PoolResized"), "{lines:#?}");
    assert_eq!(writes_to(&seen, "/statefulsets/prod-datanode?")[0]["spec"]["replicas"], 5);
}

/// A HadoopPool of the cluster's name that the cluster does not own is not taken over.
#[tokio::test]
async fn a_pool_the_cluster_does_not_own_fails_the_reconcile() {
    let (ctx, mut api) = context().await;
    let run = tokio::spawn(reconcile(cluster(|_| {}), ctx));
    let mut foreign = stored_pool(2, "3");
    foreign["metadata"]["ownerReferences"] = json!([]);
    expect(&mut api, "GET", &format!("{POOLS}/prod-datanode"), 200, foreign).await;
    let status = expect(&mut api, "PATCH", &format!("/apis/herd.dev/v1alpha1/namespaces/acme/hadoopclusters/prod/status{APPLY}"), 200, Value::Null).await;
    let degraded = status["status"]["conditions"].as_array().unwrap().iter().find(|c| c["type"] == "Degraded").unwrap().clone();
    assert_eq!(degraded["reason"], "ReconcileError");
    assert!(degraded["message"].as_str().unwrap().contains("HadoopPool prod-datanode exists but is not this cluster's"), "{degraded}");
    let err = tokio::time::timeout(Duration::from_secs(10), run).await.unwrap().unwrap().unwrap_err();
    assert!(err.to_string().contains("prod-datanode"), "{err}");
}

/// A JSON merge patch (RFC 7386), as the API server applies one.
fn merge(target: &mut Value, patch: &Value) {
    match (target.as_object_mut(), patch.as_object()) {
        (Some(t), Some(p)) => {
            for (k, v) in p {
                if v.is_null() {
                    t.remove(k);
                } else {
                    merge(t.entry(k.clone()).or_insert(Value::Null), v);
                }
            }
        }
        _ => *target = patch.clone(),
    }
}

/// The cluster lost its NodeManager pool: its HadoopPool is deleted (the DataNode pool's stays).
#[tokio::test]
async fn the_pool_of_a_role_the_cluster_dropped_is_deleted() {
    let (ctx, mut api) = context().await;
    let run = tokio::spawn(reconcile(cluster(|_| {}), ctx));
    let seen = record(&mut api, run, &[stored_pool(3, "3"), stored_pool_of("nodemanager", 4, "4")]).await;
    let lines: Vec<&str> = seen.iter().map(|(l, _)| l.as_str()).collect();
    let deletes: Vec<&&str> = lines.iter().filter(|l| l.starts_with("DELETE ")).collect();
    assert_eq!(deletes, [&format!("DELETE {POOLS}/prod-nodemanager?").as_str()], "{lines:#?}");
    assert!(seen.iter().any(|(l, b)| l.contains("/events") && b["reason"] == "PoolRemoved"), "{lines:#?}");
    assert!(!lines.iter().any(|l| l.contains("/statefulsets/prod-nodemanager")), "{lines:#?}");
}

/// A HadoopPool named like a pool the cluster does not have, and not the cluster's, is left
/// alone: not deleted, and the reconcile goes on.
#[tokio::test]
async fn a_foreign_pool_of_a_role_the_cluster_lacks_is_left_alone() {
    let (ctx, mut api) = context().await;
    let run = tokio::spawn(reconcile(cluster(|_| {}), ctx));
    let mut foreign = stored_pool_of("nodemanager", 4, "4");
    foreign["metadata"]["ownerReferences"] = json!([]);
    let seen = record(&mut api, run, &[stored_pool(3, "3"), foreign]).await;
    let lines: Vec<&str> = seen.iter().map(|(l, _)| l.as_str()).collect();
    assert!(!lines.iter().any(|l| l.starts_with("DELETE ")), "{lines:#?}");
    assert!(lines.iter().any(|l| l.contains("/statefulsets/prod-datanode?")), "the cluster is reconciled: {lines:#?}");
}

/// The cluster's replicas edited to 5, and the pool scaled to 7 by `kubectl scale` after the
/// operator read it: the forward is refused (409), the operator reads the pool again, and the
/// scale, being newer, stays: only the cluster's value is taken in.
#[tokio::test]
async fn a_scale_racing_the_forward_of_a_cluster_edit_wins() {
    let (ctx, mut api) = context().await;
    let run = tokio::spawn(reconcile(cluster(|v| v["spec"]["pools"]["datanode"]["replicas"] = json!(5)), ctx));
    expect(&mut api, "GET", &format!("{POOLS}/prod-datanode"), 200, stored_pool(2, "3")).await;
    let conflict = json!({"kind": "Status", "apiVersion": "v1", "status": "Failure", "reason": "Conflict", "code": 409, "message": "the object has been modified"});
    let first = expect(&mut api, "PATCH", &format!("{POOLS}/prod-datanode?&fieldManager=herd-operator"), 409, conflict).await;
    assert_eq!(first["spec"]["replicas"], 5);
    let mut scaled = stored_pool(7, "3");
    scaled["metadata"]["resourceVersion"] = json!("42");
    expect(&mut api, "GET", &format!("{POOLS}/prod-datanode"), 200, scaled.clone()).await;
    let mut taken_in = scaled.clone();
    taken_in["metadata"]["annotations"]["herd.dev/cluster-replicas"] = json!("5");
    let second = expect(&mut api, "PATCH", &format!("{POOLS}/prod-datanode?&fieldManager=herd-operator"), 200, taken_in.clone()).await;
    assert_eq!(second, json!({"metadata": {"resourceVersion": "42", "annotations": {"herd.dev/cluster-replicas": "5"}}}), "the scale is kept");
    let seen = record(&mut api, run, &[taken_in]).await;
    let lines: Vec<&str> = seen.iter().map(|(l, _)| l.as_str()).collect();
    assert_eq!(writes_to(&seen, "/statefulsets/prod-datanode?")[0]["spec"]["replicas"], 7, "{lines:#?}");
    assert_eq!(writes_to(&seen, "/hadoopclusters/prod/status?").last().unwrap()["status"]["datanodes"]["desired"], 7);
}
