//! What the server checks in request bodies, as JSON Schema, so that every body the document
//! calls valid is accepted for its shape (the contract test sends thousands).
//!
//! The wire types' annotations describe what the server *sends*; a request often needs more:
//! a cluster spec's pools are keyed by role and each role has its own bounds (one NameNode at
//! most, a DataNode's least memory, disk only for roles that keep data), names are DNS labels,
//! override keys herd owns are refused. Those request schemas are written here, from the same
//! constants the validation in `herd_api::validate` uses, and the request bodies point at them;
//! responses keep the plain types.
//!
//! Where a rule compares two fields (a pool without an image needs `images.ROLE`; two pools may
//! not publish one host port; a quota's guarantee fits inside its maximum) JSON Schema cannot
//! say it: the server answers 422 with the problem type `INCONSISTENT`, and the document's
//! description lists those rules. Rules that depend on the state (the tenant exists, the
//! quota holds, HDFS can lose a DataNode) or on the orchestrator's flags (the published port
//! range, the cluster CIDR) answer 422 with the type `REFUSED_BY_STATE`.
//!
//! NB: a few value forms are narrower here than the server's parser: CPU and memory of a pool
//! are written as in the examples (`500m`, `1.5`, `512Mi`, `2Gi`, or a number), since a
//! least amount per role cannot be stated over every suffix; names and images are ASCII.

use herd_api::hadoop::{ConfigFile, MAX_KEY_LEN, OWNED_KEYS};
use herd_api::spec::MAX_REPLICAS;
use herd_api::validate::{CAPABILITIES, MAX_REPLICATION};
use herd_api::Role;
use serde_json::{Value, json};

/// An IPv4 address in dotted decimal, without leading zeros (as Rust's parser takes it).
pub const IPV4: &str = "(25[0-5]|2[0-4][0-9]|1[0-9]{2}|[1-9]?[0-9])(\\.(25[0-5]|2[0-4][0-9]|1[0-9]{2}|[1-9]?[0-9])){3}";

/// A DNS label (RFC 1123), as `herd_api::names::check_dns_label` checks it.
pub fn dns_label() -> Value {
    json!({ "type": "string", "pattern": "^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$", "minLength": 1, "maxLength": 63 })
}

/// A TCP/UDP port.
fn port(nullable: bool) -> Value {
    let kind = if nullable { json!(["integer", "null"]) } else { json!("integer") };
    json!({ "type": kind, "format": "int32", "minimum": 1, "maximum": 65535 })
}

/// An image reference: 1 to 255 visible ASCII characters.
fn image(nullable: bool) -> Value {
    let kind = if nullable { json!(["string", "null"]) } else { json!("string") };
    json!({ "type": kind, "pattern": "^[!-~]{1,255}$" })
}

/// A regex for a whole number of `unit`s of at least `least` (no leading zeros, at most
/// `digits` digits).
fn at_least(least: u64, digits: usize) -> String {
    let text = least.to_string();
    let n = text.len();
    let mut alternatives = Vec::new();
    // Same length: for each position, the prefix kept and a larger digit there.
    for (i, c) in text.char_indices() {
        let d = c.to_digit(10).unwrap_or(9);
        if d < 9 {
            let first = if i == 0 { 1.max(d + 1) } else { d + 1 };
            if first <= 9 {
                let rest = n - i - 1;
                alternatives.push(format!("{}[{first}-9][0-9]{{{rest}}}", &text[..i]));
            }
        }
    }
    alternatives.push(text.clone());
    // Longer numbers.
    if digits > n {
        alternatives.push(format!("[1-9][0-9]{{{},{}}}", n, digits - 1));
    }
    format!("({})", alternatives.join("|"))
}

/// A pool's memory for `role`: at least the role's minimum (`Role::min_memory`), in MiB, GiB
/// or TiB, or as a number of bytes.
fn memory(role: Role) -> Value {
    let least = role.min_memory().0;
    let mib = least >> 20;
    // NB: at most 11, 8 and 5 digits keep every form under `MAX_MEMORY`.
    let pattern = format!("^({}Mi|[1-9][0-9]{{0,7}}Gi|[1-9][0-9]{{0,4}}Ti)$", at_least(mib, 11));
    json!({ "type": ["string", "integer"], "pattern": pattern, "minimum": least, "maximum": 1_000_000_000_000_000_000u64,
        "description": format!("Memory per container, at least {} for a {role}: `NMi`, `NGi`, `NTi` or bytes", role.min_memory()),
        "examples": ["1Gi"] })
}

/// A pool's CPU: more than 0, as cores (`2`, `0.5`) or millicores (`500m`).
fn cpu() -> Value {
    json!({ "type": ["string", "integer"],
        "pattern": "^([1-9][0-9]{0,8}m|[1-9][0-9]{0,5}(\\.[0-9]{1,3})?|0\\.[0-9]{0,2}[1-9]|1000000)$",
        "minimum": 1, "maximum": 1_000_000,
        "description": "CPU per container, more than 0: cores (`2`, `0.5`) or millicores (`500m`)", "examples": ["500m"] })
}

/// `configOverrides`: per file, keys herd does not own, values XML can carry.
fn overrides() -> Value {
    let owned: Vec<&str> = OWNED_KEYS.iter().map(|(_, k, _)| *k).collect();
    // NB: the Basic Multilingual Plane only (what JSON Schema regexes agree on); the server
    // also takes characters beyond it.
    let value = json!({ "type": "string", "pattern": "^[\t\n\r\u{20}-\u{D7FF}\u{E000}-\u{FFFD}]*$" });
    let file = json!({ "type": "object",
        "propertyNames": { "type": "string", "pattern": format!("^[!-~]{{1,{MAX_KEY_LEN}}}$"), "not": { "enum": owned } },
        "additionalProperties": value });
    let properties: serde_json::Map<String, Value> = ConfigFile::ALL.iter().map(|f| (f.as_str().to_string(), file.clone())).collect();
    json!({ "type": "object", "additionalProperties": false, "properties": properties,
        "description": "Hadoop configuration overrides per file; keys herd renders itself are refused" })
}

/// One pool of `role`, as a cluster spec in a request may give it.
fn pool(role: Role) -> Value {
    let label_key = "^[A-Za-z0-9]([-A-Za-z0-9_./]{0,61}[A-Za-z0-9])?$";
    let label_value = "^([A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?)?$";
    let most = if matches!(role, Role::Namenode | Role::Resourcemanager) { 1 } else { MAX_REPLICAS };
    let mut properties = json!({
        "replicas": { "type": "integer", "format": "int32", "minimum": 0, "maximum": most },
        "cpu": cpu(),
        "memory": memory(role),
        "image": image(true),
        "command": { "type": ["array", "null"], "items": { "type": "string" } },
        "env": { "type": "object", "additionalProperties": { "type": "string" },
            "propertyNames": { "type": "string", "pattern": "^[A-Za-z_][A-Za-z0-9_]{0,127}$", "not": { "pattern": "^HERD_" } },
            "description": "Extra environment; names starting with HERD_ are herd's" },
        "publish": { "type": "array", "items": { "$ref": "#/components/schemas/PublishedPort" } },
        "configOverrides": overrides(),
        "lifecycle": { "$ref": "#/components/schemas/PoolLifecycle" },
        "nodeSelector": { "type": "object", "propertyNames": { "type": "string", "pattern": label_key },
            "additionalProperties": { "type": "string", "pattern": label_value } },
        "maxPerHost": { "type": ["integer", "null"], "format": "int32", "minimum": 1, "maximum": u32::MAX },
        "capabilities": { "type": "object", "additionalProperties": false,
            "properties": { "add": { "type": "array", "items": { "type": "string", "enum": CAPABILITIES } } } },
    });
    if role.has_data() {
        properties["disk"] = json!({ "oneOf": [{ "$ref": "#/components/schemas/Memory" }, { "type": "null" }] });
    }
    json!({ "type": "object", "additionalProperties": false, "required": ["replicas", "cpu", "memory"], "properties": properties,
        "description": format!("A {role} pool (see `PoolSpec`)") })
}

fn pool_name(role: Role) -> String {
    let s = role.as_str();
    format!("{}{}Pool", s[..1].to_uppercase(), &s[1..])
}

/// Sums the server reports (a tenant's `usage`, a host's `allocated_cpu`): any amount, in the
/// forms `Display` writes (they may pass the bounds of a single quantity).
pub fn totals() -> Vec<(String, Value)> {
    let cpu = json!({ "type": "string", "pattern": "^([0-9]{1,17}|[0-9]{1,20}m)$", "description": "A sum of CPU: cores or millicores" });
    let memory = json!({ "type": "string", "pattern": "^([0-9]{1,20}|[0-9]{1,17}Ki|[0-9]{1,14}Mi|[0-9]{1,11}Gi|[0-9]{1,8}Ti)$",
        "description": "A sum of bytes, with the largest binary suffix that divides it" });
    let resources = json!({ "type": "object", "required": ["cpu", "memory"], "description": "Sums of each resource",
        "properties": { "cpu": { "$ref": "#/components/schemas/CpuTotal" }, "memory": { "$ref": "#/components/schemas/MemoryTotal" },
            "disk": { "$ref": "#/components/schemas/MemoryTotal" } } });
    vec![("CpuTotal".into(), cpu), ("MemoryTotal".into(), memory), ("ResourcesTotal".into(), resources)]
}

/// Points the sums in every component at [`totals`]: a tenant's `usage`, `used` and
/// `borrowed`, a host's `allocated_cpu` and `allocated_memory` (also where a page inlines them).
pub fn use_totals(v: &mut Value) {
    match v {
        Value::Object(m) => {
            if let Some(Value::Object(props)) = m.get_mut("properties") {
                for (name, to) in [("usage", "ResourcesTotal"), ("used", "ResourcesTotal"), ("borrowed", "ResourcesTotal"),
                    ("allocated_cpu", "CpuTotal"), ("allocated_memory", "MemoryTotal")]
                {
                    if let Some(p) = props.get_mut(name).and_then(Value::as_object_mut)
                        && p.contains_key("$ref")
                    {
                        p.insert("$ref".into(), json!(format!("#/components/schemas/{to}")));
                    }
                }
            }
            m.values_mut().for_each(use_totals);
        }
        Value::Array(a) => a.iter_mut().for_each(use_totals),
        _ => {}
    }
}

/// The request schemas, by component name.
pub fn schemas() -> Vec<(String, Value)> {
    let ipv4 = IPV4;
    let dns = "[A-Za-z]([-A-Za-z0-9]{0,61}[A-Za-z0-9])?(\\.[A-Za-z]([-A-Za-z0-9]{0,61}[A-Za-z0-9])?)*\\.?";
    let external = json!({ "type": "object", "additionalProperties": false, "required": ["host"],
        "properties": {
            "host": { "type": "string", "maxLength": 253, "pattern": format!("^({ipv4}|{dns})$"),
                "description": "DNS name or IPv4 address every worker can reach" },
            "rpcPort": port(true),
            "httpPort": port(true),
        } });
    let roles: serde_json::Map<String, Value> =
        Role::ALL.iter().map(|r| (r.as_str().to_string(), json!({ "$ref": format!("#/components/schemas/{}", pool_name(*r)) }))).collect();
    let images: serde_json::Map<String, Value> = Role::ALL.iter().map(|r| (r.as_str().to_string(), image(false))).collect();
    let spec = json!({ "type": "object", "additionalProperties": false, "required": ["tenant", "name", "pools"],
        "description": "A cluster spec as `PUT` takes it (see `ClusterSpec`). Rules between fields: every pool has an image \
(`images.ROLE` or `pools.ROLE.image`); no two published ports of the cluster share a protocol and host port; a master is a \
pool or `external`, not both. The host ports must be in the orchestrator's published range (--publish-ports, 30000-32767 by \
default).",
        "properties": {
            "tenant": dns_label(),
            "name": dns_label(),
            "images": { "type": "object", "additionalProperties": false, "properties": images },
            "pools": { "type": "object", "additionalProperties": false, "minProperties": 1, "properties": roles },
            "version": { "type": ["string", "null"] },
            "hdfs": { "type": "object", "additionalProperties": false,
                "properties": { "replication": { "type": "integer", "minimum": 1, "maximum": MAX_REPLICATION } } },
            "external": { "type": "object", "additionalProperties": false,
                "properties": { "namenode": { "oneOf": [external.clone(), { "type": "null" }] },
                    "resourcemanager": { "oneOf": [external, { "type": "null" }] } } },
            "configOverrides": overrides(),
        } });
    let published = json!({ "type": "object", "additionalProperties": false, "required": ["port"],
        "properties": { "port": port(false), "host_port": port(true), "protocol": { "$ref": "#/components/schemas/Protocol" } } });
    let description = json!({ "type": ["string", "null"], "maxLength": 200, "pattern": "^[^\u{0}-\u{1F}\u{7F}-\u{9F}]*$",
        "description": "Who or what holds the token, for people reading the audit trail" });
    let token = |scope: &str, extra: Value, required: &[&str]| {
        let mut properties = json!({ "scope": { "type": "string", "enum": [scope] }, "description": description.clone() });
        if let (Some(p), Some(extra)) = (properties.as_object_mut(), extra.as_object()) {
            p.extend(extra.clone());
        }
        let mut required: Vec<&str> = required.to_vec();
        required.insert(0, "scope");
        json!({ "type": "object", "additionalProperties": false, "required": required, "properties": properties })
    };
    let create_token = json!({ "description": "`POST /v1/tokens`: an admin token; an agent token for one host; or a tenant token for one tenant (which must exist).",
        "oneOf": [
            token("admin", json!({}), &[]),
            token("agent", json!({ "host": dns_label() }), &["host"]),
            token("tenant", json!({ "tenant": dns_label() }), &["tenant"]),
        ] });
    let mut out = vec![("ClusterSpecRequest".to_string(), spec), ("PublishedPort".into(), published), ("CreateTokenRequest".into(), create_token)];
    out.extend(Role::ALL.iter().map(|r| (pool_name(*r), pool(*r))));
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use herd_api::quantity::{Cpu, Memory};

    fn matcher(schema: &Value) -> regex::Regex {
        let pattern = schema["pattern"].as_str().unwrap_or_else(|| panic!("no pattern in {schema}"));
        regex::Regex::new(pattern).unwrap_or_else(|e| panic!("{pattern}: {e}"))
    }

    #[test]
    fn a_pools_memory_pattern_is_its_roles_minimum() {
        for role in Role::ALL {
            let re = matcher(&memory(role));
            for text in (0..5000u64).map(|n| format!("{n}Mi")).chain((0..20u64).map(|n| format!("{n}Gi"))).chain(["01Gi".into(), "1Ti".into()]) {
                let big_enough = Memory::parse(&text).is_ok_and(|m| m >= role.min_memory());
                if re.is_match(&text) {
                    assert!(big_enough, "{role}: {text} matches but the server refuses it");
                } else {
                    assert!(!big_enough || text.starts_with('0'), "{role}: {text} is enough but does not match");
                }
            }
        }
    }

    #[test]
    fn a_pools_cpu_pattern_is_more_than_zero() {
        let re = matcher(&cpu());
        for text in ["1", "0.5", "0.001", "500m", "1m", "999999.999", "1000000", "2.25"] {
            assert!(re.is_match(text) && Cpu::parse(text).is_ok_and(|c| c.0 > 0), "{text}");
        }
        for text in ["0", "0m", "0.0", "0.000", "-1", "1000001", "0.0001", "1.", ".5"] {
            assert!(!re.is_match(text), "{text} matches");
        }
    }

    #[test]
    fn the_memory_pattern_is_what_the_server_parses() {
        let re = regex::Regex::new(&Memory::pattern()).unwrap_or_else(|e| panic!("{e}"));
        let max = herd_api::quantity::MAX_MEMORY;
        for (suffix, factor) in [("", 1u64), ("Ki", 1 << 10), ("Mi", 1 << 20), ("Gi", 1 << 30), ("Ti", 1 << 40), ("K", 1000), ("M", 1_000_000), ("G", 1_000_000_000), ("T", 1_000_000_000_000)] {
            let edge = max / factor;
            for n in [0, 1, 7, 10, 99, 1000, edge.saturating_sub(1), edge, edge + 1, edge * 10, edge / 10 * 9 + 9, u64::MAX / factor] {
                let text = format!("{n}{suffix}");
                assert_eq!(re.is_match(&text), Memory::parse(&text).is_ok(), "{text}");
            }
        }
    }

    #[test]
    fn sums_of_any_size_match_their_patterns() {
        let schemas: std::collections::BTreeMap<String, Value> = totals().into_iter().collect();
        let (cpu, memory) = (matcher(&schemas["CpuTotal"]), matcher(&schemas["MemoryTotal"]));
        for n in [0, 1, 999, 1000, 1024, 1 << 40, 1 << 62, 3 << 40, u64::MAX, u64::MAX - 1, u64::MAX / 1000 * 1000, u64::MAX >> 10 << 10] {
            assert!(cpu.is_match(&Cpu(n).to_string()), "{}", Cpu(n));
            assert!(memory.is_match(&Memory(n).to_string()), "{}", Memory(n));
        }
    }

    #[test]
    fn every_pattern_compiles() {
        fn walk(v: &Value) {
            match v {
                Value::Object(m) => {
                    if let Some(Value::String(p)) = m.get("pattern") {
                        assert!(regex::Regex::new(p).is_ok(), "{p}");
                    }
                    m.values().for_each(walk);
                }
                Value::Array(a) => a.iter().for_each(walk),
                _ => {}
            }
        }
        for (name, schema) in schemas() {
            assert!(schema.is_object(), "{name}");
            walk(&schema);
        }
    }
}
