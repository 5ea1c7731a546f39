//! An answer's structure, flattened to dotted paths and JSON types, so a test can hold a
//! test double's answers to the real captures under `tests/fixtures/hadoop/`.
//!
//! Paths: object keys joined with `.`; array elements collapse to `[]` (the union of their
//! fields); a bean of a `/jmx` answer's `beans` array is keyed by its name instead,
//! `beans[Hadoop:service=NameNode,name=NameNodeInfo].LiveNodes`, so beans stay apart.
//! NameNodeInfo's DataNode lists (`LiveNodes`, `DeadNodes`, `DecomNodes`,
//! `EnteringMaintenanceNodes`) are JSON inside strings: they are typed `string(json)`, parsed,
//! and their DataNode keys collapse to `*` (`...LiveNodes.*.adminState`), so captures and
//! doubles with different hosts compare.

use std::collections::BTreeMap;

use serde_json::Value;

/// Fields holding a JSON object of DataNodes keyed by name, inside a string.
const NODE_LISTS: [&str; 4] = ["LiveNodes", "DeadNodes", "DecomNodes", "EnteringMaintenanceNodes"];

/// The type given to a path whose values differ in type (e.g. across array elements).
pub const MIXED: &str = "mixed";

/// Every path of `json` with its JSON type: `null`, `bool`, `integer` (fits in 64 bits),
/// `number`, `string`, `string(json)`, `array`, `object` (or [`MIXED`]). The root is `""`.
pub fn field_types(json: &Value) -> BTreeMap<String, &'static str> {
    let mut out = BTreeMap::new();
    walk(json, String::new(), &mut out);
    out
}

/// Paths of `capture` under any of `prefixes` (all when empty) that `candidate` lacks or
/// types differently, each as `path: capture-type, candidate has candidate-type|nothing`.
/// An integer where the capture has a non-integer number is accepted (`0` for `0.5`).
pub fn differences(capture: &Value, candidate: &Value, prefixes: &[&str]) -> Vec<String> {
    let want = field_types(capture);
    let have = field_types(candidate);
    want.iter()
        .filter(|(path, _)| prefixes.is_empty() || prefixes.iter().any(|p| path.starts_with(p)))
        .filter_map(|(path, ty)| match have.get(path) {
            Some(t) if t == ty || (*ty == "number" && *t == "integer") => None,
            Some(t) => Some(format!("{path}: capture has {ty}, candidate has {t}")),
            None => Some(format!("{path}: capture has {ty}, candidate has nothing")),
        })
        .collect()
}

fn type_of(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "bool",
        Value::Number(n) if n.is_u64() || n.is_i64() => "integer",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

fn record(out: &mut BTreeMap<String, &'static str>, path: &str, ty: &'static str) {
    out.entry(path.to_string()).and_modify(|t| if *t != ty { *t = MIXED }).or_insert(ty);
}

fn join(path: &str, key: &str) -> String {
    if path.is_empty() { key.to_string() } else { format!("{path}.{key}") }
}

fn walk(v: &Value, path: String, out: &mut BTreeMap<String, &'static str>) {
    record(out, &path, type_of(v));
    match v {
        Value::Object(map) => {
            for (k, child) in map {
                if path.is_empty()
                    && k == "beans"
                    && let Value::Array(beans) = child
                {
                    record(out, "beans", "array");
                    for bean in beans {
                        let name = bean.get("name").and_then(Value::as_str).unwrap_or("");
                        walk_bean(bean, format!("beans[{name}]"), out);
                    }
                    continue;
                }
                walk(child, join(&path, k), out);
            }
        }
        Value::Array(items) => {
            for item in items {
                walk(item, format!("{path}[]"), out);
            }
        }
        _ => {}
    }
}

fn walk_bean(bean: &Value, path: String, out: &mut BTreeMap<String, &'static str>) {
    let Value::Object(map) = bean else { return walk(bean, path, out) };
    record(out, &path, "object");
    for (k, child) in map {
        let p = join(&path, k);
        let list = match child {
            Value::String(s) if NODE_LISTS.contains(&k.as_str()) => serde_json::from_str::<Value>(s).ok(),
            _ => None,
        };
        match list {
            Some(Value::Object(nodes)) => {
                record(out, &p, "string(json)");
                for node in nodes.values() {
                    walk(node, join(&p, "*"), out);
                }
            }
            _ => walk(child, p, out),
        }
    }
}

#[cfg(test)]
mod tests;
