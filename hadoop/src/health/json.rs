//! Typed reads out of a master's JSON answer, each failure naming the answer and the field.

use serde_json::{Map, Value};

/// Why a master's answer could not be read. `answer` names the answer (e.g.
/// `/ws/v1/cluster/nodes`); `field` is a dotted path inside it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HealthError {
    #[error("{answer} is not JSON ({reason}); starts with {start:?}")]
    NotJson { answer: String, reason: String, start: String },
    #[error("{answer} has no `{field}` ({expected})")]
    Missing { answer: String, field: String, expected: &'static str },
    #[error("{answer}: `{field}` is {found}, expected {expected}")]
    WrongType { answer: String, field: String, expected: &'static str, found: String },
    #[error("{answer}: `{field}` should hold JSON text but does not ({reason}); starts with {start:?}")]
    EmbeddedNotJson { answer: String, field: String, reason: String, start: String },
    #[error("{answer}: none of the beans herd reads ({expected}) is there")]
    NoKnownBeans { answer: String, expected: &'static str },
}

/// The first characters of `text`, for an error message (an HTML error page says what it is
/// in its first line).
pub(crate) fn start_of(text: &str) -> String {
    let t = text.trim_start();
    let mut s: String = t.chars().take(60).collect();
    if t.chars().nth(60).is_some() {
        s.push('…');
    }
    s
}

/// Parses a whole answer.
pub(crate) fn parse_answer(answer: &str, text: &str) -> Result<Value, HealthError> {
    serde_json::from_str(text).map_err(|e| HealthError::NotJson {
        answer: answer.to_string(),
        reason: e.to_string(),
        start: start_of(text),
    })
}

/// A short description of a value's JSON type, with the value when it is small.
pub(crate) fn describe(v: &Value) -> String {
    match v {
        Value::Null => "null".into(),
        Value::Bool(b) => format!("the boolean {b}"),
        Value::Number(n) => format!("the number {n}"),
        Value::String(s) => format!("the string {:?}", start_of(s)),
        Value::Array(_) => "an array".into(),
        Value::Object(_) => "an object".into(),
    }
}

/// One object of an answer, with where it is, for typed field reads.
#[derive(Clone, Copy)]
pub(crate) struct Obj<'a> {
    pub answer: &'a str,
    /// Dotted path of this object inside the answer ("" at the top).
    pub path: &'a str,
    pub map: &'a Map<String, Value>,
}

impl<'a> Obj<'a> {
    pub fn new(answer: &'a str, path: &'a str, v: &'a Value) -> Result<Self, HealthError> {
        match v {
            Value::Object(map) => Ok(Obj { answer, path, map }),
            other => Err(HealthError::WrongType {
                answer: answer.to_string(),
                field: if path.is_empty() { "(the answer)".into() } else { path.to_string() },
                expected: "an object",
                found: describe(other),
            }),
        }
    }

    pub fn field(&self, name: &str) -> String {
        if self.path.is_empty() { name.to_string() } else { format!("{}.{name}", self.path) }
    }

    fn wrong(&self, name: &str, expected: &'static str, found: &Value) -> HealthError {
        HealthError::WrongType { answer: self.answer.to_string(), field: self.field(name), expected, found: describe(found) }
    }

    pub fn missing(&self, name: &str, expected: &'static str) -> HealthError {
        HealthError::Missing { answer: self.answer.to_string(), field: self.field(name), expected }
    }

    /// The field, absent and `null` alike giving `None`.
    pub fn get(&self, name: &str) -> Option<&'a Value> {
        self.map.get(name).filter(|v| !v.is_null())
    }

    /// A non-negative integer that fits in 64 bits, if present.
    pub fn u64(&self, name: &str) -> Result<Option<u64>, HealthError> {
        match self.get(name) {
            None => Ok(None),
            Some(v) => v.as_u64().map(Some).ok_or_else(|| self.wrong(name, "a non-negative integer below 2^64", v)),
        }
    }

    /// A signed integer that fits in 64 bits, if present.
    pub fn i64(&self, name: &str) -> Result<Option<i64>, HealthError> {
        match self.get(name) {
            None => Ok(None),
            Some(v) => v.as_i64().map(Some).ok_or_else(|| self.wrong(name, "an integer that fits in 64 bits", v)),
        }
    }

    pub fn str(&self, name: &str) -> Result<Option<&'a str>, HealthError> {
        match self.get(name) {
            None => Ok(None),
            Some(v) => v.as_str().map(Some).ok_or_else(|| self.wrong(name, "a string", v)),
        }
    }

    pub fn req_str(&self, name: &str) -> Result<&'a str, HealthError> {
        self.str(name)?.ok_or_else(|| self.missing(name, "a string"))
    }

    pub fn bool(&self, name: &str) -> Result<Option<bool>, HealthError> {
        match self.get(name) {
            None => Ok(None),
            Some(v) => v.as_bool().map(Some).ok_or_else(|| self.wrong(name, "a boolean", v)),
        }
    }

    pub fn obj(&self, name: &'a str, path: &'a str) -> Result<Option<Obj<'a>>, HealthError> {
        match self.get(name) {
            None => Ok(None),
            Some(v) => Obj::new(self.answer, path, v).map(Some),
        }
    }

    pub fn array(&self, name: &str) -> Result<Option<&'a Vec<Value>>, HealthError> {
        match self.get(name) {
            None => Ok(None),
            Some(Value::Array(a)) => Ok(Some(a)),
            Some(v) => Err(self.wrong(name, "an array", v)),
        }
    }

    /// A string field holding JSON text (NameNodeInfo's `LiveNodes` and friends), parsed.
    pub fn embedded_json(&self, name: &str) -> Result<Option<Value>, HealthError> {
        let Some(text) = self.str(name)? else { return Ok(None) };
        serde_json::from_str(text).map(Some).map_err(|e| HealthError::EmbeddedNotJson {
            answer: self.answer.to_string(),
            field: self.field(name),
            reason: e.to_string(),
            start: start_of(text),
        })
    }
}
