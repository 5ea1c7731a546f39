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
    "pools": {"datanode": {"replicas": 3, "cpu": "500m", "memory": "1Gi", "disk": "10Gi"}}
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

#[tokio::test]
async fn a_new_cluster_becomes_its_objects_then_its_status() {
    let (ctx, mut api) = context().await;
    let hc = cluster(|_| {});
    let run = tokio::spawn(reconcile(hc, ctx));

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
    expect(&mut api, "GET", "/apis/apps/v1/namespaces/acme/statefulsets/prod-datanode", 503, unavailable).await;
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
    assert_eq!(request.uri().path(), "/apis/apps/v1/namespaces/acme/statefulsets/prod-datanode");
    let status = expect(&mut api, "PATCH", &format!("/apis/herd.dev/v1alpha1/namespaces/acme/hadoopclusters/prod/status{APPLY}"), 200, Value::Null).await;
    let degraded = status["status"]["conditions"].as_array().unwrap().iter().find(|c| c["type"] == "Degraded").unwrap().clone();
    assert_eq!(degraded["reason"], "ReconcileError");
    assert!(degraded["message"].as_str().unwrap().contains("took longer than 3s"), "{degraded}");
    let err = tokio::time::timeout(Duration::from_secs(10), run).await.unwrap().unwrap().unwrap_err();
    assert!(matches!(err, crate::reconcile::Error::Timeout(_)), "{err}");
}
