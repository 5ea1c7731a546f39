//! Hostile input over real HTTP: generated malformed JSON and YAML bodies, wrong types,
//! hostile path segments and oversized bodies thrown at every route of a running
//! orchestrator. Never a 5xx, never a crash; every refusal is problem+json and stores
//! nothing (the audit trail, which records every change, does not grow on a refusal).
//!
//! The generator is a seeded xorshift, so a failure reproduces: the seed is in the message.

use anyhow::Result;
use herd_tests::{Api, Orchestrator, unique};
use serde_json::{Value, json};

/// A small deterministic generator.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0 = x;
        x
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
    fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len())]
    }
}

/// Values of the wrong type, or of the right type with hostile content.
fn hostile_value(rng: &mut Rng) -> Value {
    match rng.below(14) {
        0 => Value::Null,
        1 => json!(true),
        2 => json!(-1),
        3 => json!(1.5),
        4 => json!(u64::MAX),
        5 => json!([]),
        6 => json!({}),
        7 => json!("x".repeat(70_000)),
        8 => json!("аcme"),
        9 => json!("a\u{0}b"),
        10 => json!("../../etc/passwd"),
        11 => json!("\u{202e}evil"),
        12 => json!([1, {"a": [null]}]),
        _ => json!("-1Gi"),
    }
}

/// Replaces a random field (at any depth) of `v` with a hostile value, or adds an unknown one.
fn mutate(rng: &mut Rng, v: &mut Value) {
    match v {
        Value::Object(map) if !map.is_empty() && rng.below(5) != 0 => {
            let keys: Vec<String> = map.keys().cloned().collect();
            let key = rng.pick(&keys).clone();
            if let Some(child) = map.get_mut(&key) {
                if rng.below(2) == 0 { mutate(rng, child) } else { *child = hostile_value(rng) }
            }
        }
        Value::Object(map) => {
            map.insert(format!("unknown{}", rng.below(100)), hostile_value(rng));
        }
        Value::Array(items) if !items.is_empty() => {
            let i = rng.below(items.len());
            mutate(rng, &mut items[i]);
        }
        other => *other = hostile_value(rng),
    }
}

/// Text-level damage: truncation, stray bytes, YAML tricks, nesting bombs, invalid UTF-8.
fn damage(rng: &mut Rng, text: &str) -> Vec<u8> {
    let cut = |t: &str, at: usize| t.char_indices().nth(at).map(|(i, _)| t[..i].to_string()).unwrap_or_default();
    let n = text.chars().count().max(1);
    match rng.below(11) {
        0 => cut(text, rng.below(n)).into_bytes(),
        1 => {
            let mut s = text.to_string();
            let at = s.char_indices().nth(rng.below(n)).map(|(i, _)| i).unwrap_or(0);
            s.insert(at, *rng.pick(&['{', '}', '[', ':', '"', '\'', '\n', '\t', '&', '*', '!', '%', '\u{0}']));
            s.into_bytes()
        }
        2 => b"\xff\xfe\x00garbage\x80".to_vec(),
        3 => format!("{}{}", "[".repeat(20_000), "]".repeat(20_000)).into_bytes(),
        4 => "a: &a [x, x, x, x, x, x, x, x]\nb: &b [*a, *a, *a, *a, *a, *a, *a, *a]\nc: &c [*b, *b, *b, *b, *b, *b, *b, *b]\nd: &d [*c, *c, *c, *c, *c, *c, *c, *c]\ne: [*d, *d, *d, *d, *d, *d, *d, *d]\n".into(),
        5 => "--- !!binary\nAAAA\n".into(),
        6 => "tenant: x\ntenant: y\nname: z\n".into(),
        7 => "- 1\n- 2\n".into(),
        8 => Vec::new(),
        9 => "{\"a\": 1e999999}".into(),
        _ => "*undefined_alias\n".into(),
    }
}

/// Path segments that are not names.
const HOSTILE_SEGMENTS: &[&str] = &[
    "..", "%2e%2e", ".", "%00", "a%00b", "%2F", "a%2Fb", "%FF", "%C0%AE", "%D0%B0cme", "ACME", "a_b", "a.b", "-a", "a-",
    "%E2%80%AE", "%F0%9F%90%91", "%20", "a%20b", "%25", "\u{0430}cme", "{tenant}",
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_input_never_breaks_the_api_or_stores_anything() -> Result<()> {
    let tmp = tempfile::tempdir()?;
    let mut orch = Orchestrator::start(tmp.path(), 0)?;
    let admin = orch.api();
    let t = unique("fz");
    admin.post("/v1/tenants", json!({"name": t, "quota": {"cpu": "100"}})).await?;
    let cluster = format!("/v1/tenants/{t}/clusters/prod");
    let spec = json!({
        "tenant": t, "name": "prod",
        "images": {"datanode": "herd/datanode:testbed"},
        "pools": {"datanode": {"replicas": 2, "cpu": "500m", "memory": "512Mi", "disk": "1Gi", "env": {"A": "b"}}}
    });
    assert_eq!(admin.json_with("PUT", &cluster, &[], &spec).await?.0, 201);
    let tenant_api = Api::new(&orch.url).with_token(&orch.token("tenant", Some(&t)).await?);

    // (method, path, a valid body to start from)
    let bodies: Vec<(&str, String, Value)> = vec![
        ("PUT", cluster.clone(), spec.clone()),
        ("PATCH", format!("{cluster}/pools/datanode"), json!({"replicas": 3})),
        ("POST", "/v1/tenants".into(), json!({"name": "fuzzed", "quota": {"cpu": "1", "memory": "1Gi", "guaranteed": {"cpu": "1", "memory": "1Gi"}}})),
        ("POST", "/v1/tokens".into(), json!({"scope": "tenant", "tenant": t, "description": "d"})),
        ("PUT", format!("/v1/tenants/{t}/quota"), json!({"quota": {"cpu": "100", "memory": "1Ti", "disk": "1Ti"}})),
        ("POST", "/v1/agent/register".into(), json!({"host": {"id": "fuzz-host", "cpu": "1", "memory": "1Gi", "data_disks": ["/d"]}})),
        ("POST", "/v1/agent/heartbeat".into(), json!({"host_id": "nohost", "observed": [{"instance": {"tenant": t, "cluster": "prod", "name": "datanode-0"}, "state": "running"}]})),
    ];
    let seed = std::env::var("HERD_FUZZ_SEED").ok().and_then(|s| s.parse().ok()).unwrap_or(0x005e_ed0f_4e2d_u64);
    let mut rng = Rng(seed);
    let audit_len = |api: Api| async move {
        let (_, page) = api.get("/v1/audit?limit=1000").await?;
        anyhow::Ok(page["items"].as_array().map(Vec::len).unwrap_or(0))
    };
    let mut audited = audit_len(admin.clone()).await?;
    let mut sent = 0;
    let mut refused = 0;

    let mut check = |what: String, status: u16, headers: reqwest::header::HeaderMap, body: Vec<u8>| {
        sent += 1;
        assert!(status < 500, "seed {seed:#x}: {what} answered {status}: {}", String::from_utf8_lossy(&body));
        if status >= 400 {
            refused += 1;
            let ct = headers.get("content-type").and_then(|v| v.to_str().ok()).unwrap_or("");
            assert_eq!(ct, "application/problem+json", "seed {seed:#x}: {what}");
            let p: Value = serde_json::from_slice(&body).unwrap_or_default();
            assert!(p["status"] == json!(status) && p["detail"].is_string() && p["code"].is_string(), "seed {seed:#x}: {what}: {p}");
        }
        status
    };

    for round in 0..60 {
        for (method, path, valid) in &bodies {
            let api = if round % 3 == 0 && !path.starts_with("/v1/agent") && !path.starts_with("/v1/tenants/") { &admin } else if round % 3 == 1 { &tenant_api } else { &admin };
            let (ctype, bytes) = match rng.below(3) {
                0 => {
                    let mut v = valid.clone();
                    mutate(&mut rng, &mut v);
                    ("application/json", serde_json::to_vec(&v)?)
                }
                1 => {
                    let mut v = valid.clone();
                    mutate(&mut rng, &mut v);
                    ("application/yaml", serde_yaml_text(&v).into_bytes())
                }
                _ => (*rng.pick(&["application/json", "application/yaml", "text/plain"]), damage(&mut rng, &valid.to_string())),
            };
            let what = format!("{method} {path} ({ctype}) {}", String::from_utf8_lossy(&bytes).chars().take(200).collect::<String>());
            let (status, headers, body) = api.raw(method, path, &[("content-type", ctype)], bytes).await?;
            let status = check(what.clone(), status, headers, body);
            let now = audit_len(admin.clone()).await?;
            if status >= 400 {
                assert_eq!(now, audited, "seed {seed:#x}: refused {what} changed something");
            }
            audited = now;
        }
    }

    // Hostile path segments in every position of every route, with every method, sent as
    // written (an HTTP client library would normalize `..` and `%2e%2e` away).
    let templates = [
        "/v1/tenants/{}", "/v1/tenants/{}/quota", "/v1/tenants/{}/clusters", "/v1/tenants/{}/clusters/prod",
        "/v1/tenants/T/clusters/{}", "/v1/tenants/T/clusters/prod/pools/{}", "/v1/tokens/{}",
    ];
    let long = "a".repeat(5000);
    let mut segments: Vec<&str> = HOSTILE_SEGMENTS.to_vec();
    segments.push(&long);
    for template in templates {
        for seg in &segments {
            let path = template.replace("T", &t).replace("{}", seg);
            for method in ["GET", "PUT", "PATCH", "DELETE", "POST"] {
                let body = serde_json::to_vec(&json!({"replicas": 1, "quota": {}}))?;
                let (status, headers, resp) = raw_http(&orch.url, &orch.admin, method, &path, &body).await?;
                let status = check(format!("{method} {path}"), status, headers, resp);
                assert!(status >= 400, "seed {seed:#x}: {method} {path} was accepted ({status})");
            }
        }
    }

    // Oversized bodies: refused from the declared length, before the body is sent
    // (`Expect: 100-continue`; a client that sends it anyway races the server's close).
    for (method, path) in [("PUT", cluster.as_str()), ("POST", "/v1/tenants"), ("POST", "/v1/agent/heartbeat")] {
        let (status, headers, body) = expect_continue(&orch.url, &orch.admin, method, path, 2 << 20).await?;
        assert_eq!(check(format!("{method} {path} (2 MiB)"), status, headers, body), 413);
    }
    let (status, headers, body) = expect_continue(&orch.url, &orch.admin, "POST", "/v1/tokens", (1 << 20) + 1).await?;
    assert_eq!(check("1 MiB + 1 byte".into(), status, headers, body), 413);
    let (status, headers, body) = admin.raw("GET", &format!("/v1/tenants?after={}", "z".repeat(4000)), &[], vec![]).await?;
    check("long cursor".into(), status, headers, body);
    let (status, headers, body) = admin.raw("PATCH", &format!("{cluster}/pools/datanode"), &[("if-match", &"9".repeat(500)), ("content-type", "application/json")], b"{\"replicas\": 1}".to_vec()).await?;
    check("huge If-Match".into(), status, headers, body);
    let (status, headers, body) = admin.raw("POST", "/v1/tenants", &[("idempotency-key", &"k".repeat(300)), ("content-type", "application/json")], b"{\"name\": \"x\"}".to_vec()).await?;
    assert_eq!(check("long Idempotency-Key".into(), status, headers, body), 422);

    // Still alive, and what was stored is as it was (only valid mutations may have changed it).
    assert!(orch.proc.child.try_wait()?.is_none(), "the orchestrator exited");
    assert_eq!(Api::new(&orch.url).get("/healthz").await.map(|r| r.0).unwrap_or(0), 0, "healthz is plain text, not JSON");
    let (status, stored) = admin.get(&cluster).await?;
    assert_eq!(status, 200, "{stored}");
    assert!(sent > 1000 && refused > sent / 2, "sent {sent}, refused {refused}");
    eprintln!("seed {seed:#x}: sent {sent} hostile requests, {refused} refused, none with a 5xx");
    assert!(!orch.proc.log_text().contains("panicked"), "a handler panicked:\n{}", orch.proc.log_text());
    orch.proc.kill();
    Ok(())
}

/// Sends only the head of a request with a `len`-byte body and `Expect: 100-continue`, and
/// reads the answer the server gives without the body.
async fn expect_continue(url: &str, token: &str, method: &str, path: &str, len: usize) -> Result<(u16, reqwest::header::HeaderMap, Vec<u8>)> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let addr = url.trim_start_matches("http://");
    let mut conn = tokio::net::TcpStream::connect(addr).await?;
    let head = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Bearer {token}\r\nContent-Type: application/json\r\nContent-Length: {len}\r\nExpect: 100-continue\r\nConnection: close\r\n\r\n"
    );
    conn.write_all(head.as_bytes()).await?;
    let mut resp = Vec::new();
    tokio::time::timeout(std::time::Duration::from_secs(10), conn.read_to_end(&mut resp)).await??;
    parse_response(&resp)
}

/// One HTTP/1.1 request over a plain TCP connection, the path exactly as given.
async fn raw_http(url: &str, token: &str, method: &str, path: &str, body: &[u8]) -> Result<(u16, reqwest::header::HeaderMap, Vec<u8>)> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let addr = url.trim_start_matches("http://");
    let mut conn = tokio::net::TcpStream::connect(addr).await?;
    let head = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Bearer {token}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    conn.write_all(head.as_bytes()).await?;
    conn.write_all(body).await?;
    let mut resp = Vec::new();
    conn.read_to_end(&mut resp).await?;
    parse_response(&resp)
}

fn parse_response(resp: &[u8]) -> Result<(u16, reqwest::header::HeaderMap, Vec<u8>)> {
    let split = resp.windows(4).position(|w| w == b"\r\n\r\n").ok_or_else(|| anyhow::anyhow!("no header end in {:?}", String::from_utf8_lossy(resp)))?;
    let head = String::from_utf8_lossy(&resp[..split]).to_string();
    let mut lines = head.lines();
    let status: u16 = lines.next().and_then(|l| l.split(' ').nth(1)).and_then(|s| s.parse().ok()).unwrap_or(0);
    let mut headers = reqwest::header::HeaderMap::new();
    for line in lines {
        if let Some((k, v)) = line.split_once(':')
            && let (Ok(k), Ok(v)) = (reqwest::header::HeaderName::from_bytes(k.trim().as_bytes()), reqwest::header::HeaderValue::from_str(v.trim()))
        {
            headers.insert(k, v);
        }
    }
    Ok((status, headers, resp[split + 4..].to_vec()))
}

/// `v` as YAML text (block style), built by hand: the tests crate has no YAML writer.
fn serde_yaml_text(v: &Value) -> String {
    fn go(v: &Value, indent: usize, out: &mut String) {
        let pad = " ".repeat(indent);
        match v {
            Value::Object(map) if !map.is_empty() => {
                for (k, child) in map {
                    match child {
                        Value::Object(m) if !m.is_empty() => {
                            out.push_str(&format!("{pad}{k}:\n"));
                            go(child, indent + 2, out);
                        }
                        _ => out.push_str(&format!("{pad}{k}: {}\n", child)),
                    }
                }
            }
            other => out.push_str(&format!("{pad}{other}\n")),
        }
    }
    let mut out = String::new();
    go(v, 0, &mut out);
    out
}
