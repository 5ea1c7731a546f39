//! The one place YAML is parsed (serde_yaml is unmaintained upstream; swap it here).
//! Errors carry the field path and the line, both for type errors found while parsing and
//! for semantic errors found by [`crate::validate`] afterwards.

use std::collections::HashMap;

use serde::de::DeserializeOwned;
use yaml_rust2::parser::{Event, MarkedEventReceiver, Parser};
use yaml_rust2::scanner::Marker;

use crate::spec::ClusterSpec;
use crate::validate::{FieldError, SpecError, validate};

/// Parses and validates a cluster spec written in YAML or JSON.
pub fn parse_cluster_spec(text: &str) -> Result<ClusterSpec, SpecError> {
    // NB: JSON read as JSON: YAML's `\u` escapes take no surrogate pairs (characters beyond
    // the Basic Multilingual Plane, as JSON encoders write them).
    let spec: ClusterSpec = from_json_or_yaml(text)?;
    let with_lines = |mut errors: Vec<FieldError>| {
        let lines = key_lines(text);
        for error in &mut errors {
            error.line = lines.get(&error.field).copied();
        }
        errors
    };
    validate(&spec).map_err(|e| match e {
        SpecError::Invalid(errors) => SpecError::Invalid(with_lines(errors)),
        SpecError::Inconsistent(errors) => SpecError::Inconsistent(with_lines(errors)),
        other => other,
    })?;
    Ok(spec)
}

/// Deserializes any type from YAML, naming the field path and line of the first error.
pub fn from_str<T: DeserializeOwned>(text: &str) -> Result<T, SpecError> {
    let de = serde_yaml::Deserializer::from_str(text);
    let strict: Result<T, _> = serde_path_to_error::deserialize(de);
    // A whole number written as a float (`3.0`) is a whole number, as JSON Schema counts it.
    let strict = strict.or_else(|e| {
        let Ok(mut value) = serde_yaml::from_str::<serde_yaml::Value>(text) else { return Err(e) };
        if !whole_yaml(&mut value) {
            return Err(e);
        }
        serde_path_to_error::deserialize(value).map_err(|_| e)
    });
    strict.map_err(|e| {
        let field = e.path().to_string();
        let inner = e.into_inner();
        let line = inner.location().map(|l| l.line());
        let mut message = inner.to_string();
        // serde_yaml appends its own location and sometimes the path; both are kept as fields.
        if let Some(at) = message.find(" at line ") {
            message.truncate(at);
        }
        if let Some(rest) = message.strip_prefix(&format!("{field}: ")) {
            message = rest.to_string();
        }
        let field = if field == "." { String::new() } else { field };
        SpecError::Parse(FieldError { field, message, line })
    })
}

/// Deserializes a request body: as JSON when it is JSON (strictly typed: YAML would read
/// `null` as the string `"null"` and `0` as `"0"` where a string is expected), else as YAML.
/// Errors name the field path (and the line).
pub fn from_json_or_yaml<T: DeserializeOwned>(text: &str) -> Result<T, SpecError> {
    // NB: plain JSON first; only a body that fails is read again tracking each field's path
    // for the message. (Tracking paths took a third of reading a heartbeat, which carries
    // the state of every container on its host: a fifth of the orchestrator's CPU with
    // 300,000 instances running.)
    if let Ok(v) = serde_json::from_str(text) {
        return Ok(v);
    }
    let mut de = serde_json::Deserializer::from_str(text);
    match serde_path_to_error::deserialize(&mut de) {
        Ok(v) if de.end().is_ok() => Ok(v),
        // Not JSON after all: YAML (of which JSON is a subset) says what is wrong.
        Ok(_) => from_str(text),
        Err(e) if e.inner().is_syntax() || e.inner().is_eof() => from_str(text),
        Err(e) => {
            // A whole number written as a float (`3.0`) is a whole number, as JSON Schema counts it.
            if let Some(v) = whole_json_again(text) {
                return Ok(v);
            }
            let field = e.path().to_string();
            let inner = e.into_inner();
            let mut message = inner.to_string();
            if let Some(at) = message.find(" at line ") {
                message.truncate(at);
            }
            let field = if field == "." { String::new() } else { field };
            Err(SpecError::Parse(FieldError { field, message, line: Some(inner.line()) }))
        }
    }
}

/// `text` as JSON again with whole-number floats made integers, if it has any and then reads.
fn whole_json_again<T: DeserializeOwned>(text: &str) -> Option<T> {
    let mut value: serde_json::Value = serde_json::from_str(text).ok()?;
    if !whole_json(&mut value) {
        return None;
    }
    serde_json::from_value(value).ok()
}

/// A float without a fraction as the integer it is, if it fits one.
fn whole(f: f64) -> Option<Result<u64, i64>> {
    if f.fract() != 0.0 || !f.is_finite() {
        return None;
    }
    // NB: 2^64 and -2^63 are exact in f64; the casts below are exact inside these bounds.
    if (0.0..18_446_744_073_709_551_616.0).contains(&f) {
        Some(Ok(f as u64))
    } else if (-9_223_372_036_854_775_808.0..0.0).contains(&f) {
        Some(Err(f as i64))
    } else {
        None
    }
}

/// Makes every whole-number float in `v` an integer; whether any was.
fn whole_json(v: &mut serde_json::Value) -> bool {
    use serde_json::Value;
    match v {
        Value::Number(n) if n.is_f64() => match n.as_f64().and_then(whole) {
            Some(Ok(u)) => {
                *v = Value::from(u);
                true
            }
            Some(Err(i)) => {
                *v = Value::from(i);
                true
            }
            None => false,
        },
        // NB: every element, not up to the first change.
        Value::Array(a) => a.iter_mut().map(whole_json).collect::<Vec<_>>().contains(&true),
        Value::Object(m) => m.values_mut().map(whole_json).collect::<Vec<_>>().contains(&true),
        _ => false,
    }
}

/// [`whole_json`] for YAML.
fn whole_yaml(v: &mut serde_yaml::Value) -> bool {
    use serde_yaml::Value;
    match v {
        Value::Number(n) if n.is_f64() => match n.as_f64().and_then(whole) {
            Some(Ok(u)) => {
                *v = Value::from(u);
                true
            }
            Some(Err(i)) => {
                *v = Value::from(i);
                true
            }
            None => false,
        },
        Value::Sequence(a) => a.iter_mut().map(whole_yaml).collect::<Vec<_>>().contains(&true),
        Value::Mapping(m) => m.iter_mut().map(|(_, v)| whole_yaml(v)).collect::<Vec<_>>().contains(&true),
        Value::Tagged(t) => whole_yaml(&mut t.value),
        _ => false,
    }
}

/// Serializes to YAML. Only plain data is passed here, which cannot fail to serialize.
pub fn to_string<T: serde::Serialize>(value: &T) -> Result<String, serde_yaml::Error> {
    serde_yaml::to_string(value)
}

/// Maps each mapping key's dotted path to the 1-based line it is written on.
fn key_lines(text: &str) -> HashMap<String, usize> {
    let mut recv = KeyLines::default();
    // NB: a document that serde_yaml accepted parses here too; if not, lines are just absent.
    let _ = Parser::new_from_str(text).load(&mut recv, false);
    recv.lines
}

enum Frame {
    Map { key: Option<String> },
    Seq { index: usize },
}

#[derive(Default)]
struct KeyLines {
    stack: Vec<Frame>,
    lines: HashMap<String, usize>,
}

impl KeyLines {
    fn path(&self) -> String {
        let mut parts = Vec::new();
        for frame in &self.stack {
            match frame {
                Frame::Map { key: Some(k) } => parts.push(k.clone()),
                Frame::Seq { index } => parts.push(index.to_string()),
                Frame::Map { key: None } => {}
            }
        }
        parts.join(".")
    }

    /// Called after a complete value: the enclosing map wants a key next, a sequence moves on.
    fn value_done(&mut self) {
        match self.stack.last_mut() {
            Some(Frame::Map { key }) => *key = None,
            Some(Frame::Seq { index }) => *index += 1,
            None => {}
        }
    }
}

impl MarkedEventReceiver for KeyLines {
    fn on_event(&mut self, ev: Event, mark: Marker) {
        match ev {
            Event::Scalar(value, ..) => {
                if let Some(Frame::Map { key: key @ None }) = self.stack.last_mut() {
                    *key = Some(value);
                    let path = self.path();
                    self.lines.entry(path).or_insert(mark.line());
                } else {
                    self.value_done();
                }
            }
            Event::Alias(_) => self.value_done(),
            Event::MappingStart(..) => self.stack.push(Frame::Map { key: None }),
            Event::SequenceStart(..) => self.stack.push(Frame::Seq { index: 0 }),
            Event::MappingEnd | Event::SequenceEnd => {
                self.stack.pop();
                self.value_done();
            }
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_error(text: &str) -> FieldError {
        match parse_cluster_spec(text) {
            Err(SpecError::Parse(e)) => e,
            other => panic!("expected a parse error, got {other:?}"),
        }
    }

    #[test]
    fn negative_replicas_names_field_and_line() {
        let e = parse_error("tenant: a\nname: b\npools:\n  datanode:\n    replicas: -2\n    cpu: 1\n    memory: 1Gi\n");
        assert_eq!(e.field, "pools.datanode.replicas");
        assert_eq!(e.line, Some(5));
        assert!(e.message.contains("0 or more"), "{}", e.message);
    }

    #[test]
    fn unknown_field_is_refused() {
        let e = parse_error("tenant: a\nname: b\npools:\n  datanode:\n    replicas: 1\n    cpus: 1\n    memory: 1Gi\n");
        assert_eq!(e.field, "pools.datanode.cpus");
        assert!(e.message.contains("unknown field `cpus`"), "{}", e.message);
        assert_eq!(e.line, Some(6));
    }

    #[test]
    fn unknown_pool_and_bad_yaml() {
        let e = parse_error("tenant: a\nname: b\npools:\n  datanodes:\n    replicas: 1\n");
        assert!(e.message.contains("unknown pool `datanodes`"), "{}", e.message);
        let e = parse_error("tenant: a\n  name: [b\n");
        assert!(e.line.is_some(), "{e:?}");
    }

    #[test]
    fn whole_numbers_written_as_floats_are_whole_numbers() {
        let spec = "tenant: a\nname: b\nimages: {datanode: d}\npools:\n  datanode: {replicas: 3.0, cpu: 1, memory: 1Gi, maxPerHost: 2.0}\n";
        let parsed = parse_cluster_spec(spec).map_err(|e| e.to_string());
        assert_eq!(parsed.as_ref().map(|s| s.pools.values().map(|p| (p.replicas.0, p.max_per_host)).collect::<Vec<_>>()), Ok(vec![(3, Some(2))]));
        let json: Result<crate::wire::ScaleRequest, _> = from_json_or_yaml("{\"replicas\": 143.0}");
        assert_eq!(json.map(|r| r.replicas.0).map_err(|e| e.to_string()), Ok(143));
        // A fraction is still refused, naming the field.
        let e = parse_error(&spec.replace("3.0", "3.5"));
        assert_eq!(e.field, "pools.datanode.replicas");
        let json: Result<crate::wire::ScaleRequest, _> = from_json_or_yaml("{\"replicas\": 1.5}");
        assert!(json.is_err());
        // Read exactly (serde_json's float_roundtrip): a large whole float is not read as
        // 2251799813685247.2 and refused (Schemathesis found it in an agent's YARN report).
        let json: Result<std::collections::BTreeMap<String, u64>, _> =
            from_json_or_yaml("{\"active_nodes\": 2251799813685247.0, \"decommissioning_nodes\": 1125899906842624.0}");
        let want = std::collections::BTreeMap::from([("active_nodes".to_string(), 2251799813685247), ("decommissioning_nodes".to_string(), 1125899906842624)]);
        assert_eq!(json.map_err(|e| e.to_string()), Ok(want));
    }

    #[test]
    fn json_specs_take_any_character() {
        let spec = r#"{"tenant": "a", "name": "b", "images": {"datanode": "d"}, "pools": {"datanode": {"replicas": 1, "cpu": 1, "memory": "1Gi", "command": ["\ud83d\ude00"]}}}"#;
        let parsed = parse_cluster_spec(spec).map_err(|e| e.to_string());
        assert_eq!(parsed.map(|s| s.pools.values().flat_map(|p| p.command.clone().unwrap_or_default()).collect::<Vec<_>>()), Ok(vec!["😀".to_string()]));
    }

    #[test]
    fn key_lines_follow_nesting() {
        let lines = key_lines("a: 1\nb:\n  c: [1, 2]\n  d:\n    - e: 3\n");
        assert_eq!(lines.get("a"), Some(&1));
        assert_eq!(lines.get("b.c"), Some(&3));
        assert_eq!(lines.get("b.d.0.e"), Some(&5));
    }
}
