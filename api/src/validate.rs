//! Semantic validation of a parsed spec. Every problem is reported at once, each naming
//! its field by path (`pools.datanode.memory`), so one round trip fixes a spec.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::names::check_dns_label;
use crate::spec::{ClusterSpec, Role};

/// One problem with one field of a request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct FieldError {
    /// Dotted path of the field, e.g. `pools.datanode.replicas`; empty for the whole document.
    pub field: String,
    /// What is wrong and, where it helps, what would be right.
    pub message: String,
    /// 1-based line in the YAML document, when the input was YAML.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub line: Option<usize>,
}

impl FieldError {
    pub fn new(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self { field: field.into(), message: message.into(), line: None }
    }
}

impl fmt::Display for FieldError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let field = if self.field.is_empty() { "spec" } else { &self.field };
        match self.line {
            Some(line) => write!(f, "{field} (line {line}): {}", self.message),
            None => write!(f, "{field}: {}", self.message),
        }
    }
}

/// Why a spec was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SpecError {
    /// The document is not well-formed, or a field has the wrong type or an unknown name.
    #[error("cannot parse spec: {0}")]
    Parse(FieldError),
    /// The document parsed but some fields are invalid; all of them are listed.
    #[error("invalid spec: {}", join(.0))]
    Invalid(Vec<FieldError>),
}

impl SpecError {
    /// Every field error, for problem+json bodies.
    pub fn field_errors(&self) -> Vec<FieldError> {
        match self {
            SpecError::Parse(e) => vec![e.clone()],
            SpecError::Invalid(errors) => errors.clone(),
        }
    }
}

fn join(errors: &[FieldError]) -> String {
    errors.iter().map(ToString::to_string).collect::<Vec<_>>().join("; ")
}

/// Checks a spec; returns every problem found.
pub fn validate(spec: &ClusterSpec) -> Result<(), SpecError> {
    let mut errors = Vec::new();
    if let Err(m) = check_dns_label(&spec.tenant) {
        errors.push(FieldError::new("tenant", m));
    }
    if let Err(m) = check_dns_label(&spec.name) {
        errors.push(FieldError::new("name", m));
    }
    if spec.pools.is_empty() {
        errors.push(FieldError::new("pools", "must name at least one pool (e.g. `datanode` or `nodemanager`)"));
    }
    for (role, image) in &spec.images {
        if let Err(m) = check_image(image) {
            errors.push(FieldError::new(format!("images.{role}"), m));
        }
    }
    // Host ports of the whole cluster: two pools publishing one host port could never share a host.
    let mut host_ports = std::collections::BTreeMap::new();
    for (role, pool) in &spec.pools {
        let at = |field: &str| format!("pools.{role}.{field}");
        for (n, p) in pool.publish.iter().enumerate() {
            let field = format!("{}[{n}]", at("publish"));
            if p.port == 0 || p.host_port == Some(0) {
                errors.push(FieldError::new(field.clone(), "ports must be from 1 to 65535"));
            }
            if let Some(first) = host_ports.insert((p.protocol, p.host_port()), field.clone()) {
                errors.push(FieldError::new(
                    field,
                    format!("{} host port {} is already published by {first}", p.protocol, p.host_port()),
                ));
            }
        }
        if pool.memory < role.min_memory() {
            errors.push(FieldError::new(
                at("memory"),
                format!("a {role} needs at least {} of memory, got {}", role.min_memory(), pool.memory),
            ));
        }
        if pool.cpu.0 == 0 {
            errors.push(FieldError::new(at("cpu"), "must be more than 0 (e.g. `500m` or `1`)"));
        }
        match (&pool.image, spec.images.get(role)) {
            (Some(image), _) => {
                if let Err(m) = check_image(image) {
                    errors.push(FieldError::new(at("image"), m));
                }
            }
            (None, Some(_)) => {}
            (None, None) => errors.push(FieldError::new(
                format!("images.{role}"),
                format!("no image for pool `{role}`: set `images.{role}` or `pools.{role}.image`"),
            )),
        }
        for key in pool.env.keys() {
            if key.is_empty() || key.contains('=') || key.contains('\0') || key.starts_with("HERD_") {
                errors.push(FieldError::new(
                    format!("{}.{key}", at("env")),
                    "environment names must be non-empty, without `=` or NUL, and must not start with HERD_ (reserved)",
                ));
            }
        }
        if (*role == Role::Namenode || *role == Role::Resourcemanager)
            && pool.replicas.0 > 1 {
                errors.push(FieldError::new(
                    at("replicas"),
                    format!("herd runs at most one {role} per cluster for now, got {}", pool.replicas.0),
                ));
            }
    }
    if errors.is_empty() { Ok(()) } else { Err(SpecError::Invalid(errors)) }
}

fn check_image(image: &str) -> Result<(), String> {
    if image.is_empty() {
        return Err("must not be empty".into());
    }
    if image.len() > 255 || image.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(format!("`{}` is not an image reference", image.escape_default()));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::yaml::parse_cluster_spec;

    const GOOD: &str = "tenant: acme\nname: prod\nimages:\n  datanode: herd/datanode:testbed\npools:\n  datanode:\n    replicas: 3\n    cpu: 500m\n    memory: 512Mi\n";

    #[test]
    fn good_spec_passes() {
        let spec = parse_cluster_spec(GOOD).map_err(|e| e.to_string());
        assert_eq!(spec.as_ref().map(|s| s.pools.len()), Ok(1));
    }

    #[test]
    fn published_ports_are_checked() {
        let text = format!("{GOOD}    publish:\n      - port: 9864\n      - port: 0\n      - port: 80\n        host_port: 9864\n");
        let Err(SpecError::Invalid(errors)) = parse_cluster_spec(&text) else {
            panic!("bad ports accepted");
        };
        let fields: Vec<_> = errors.iter().map(|e| e.field.as_str()).collect();
        assert_eq!(fields, ["pools.datanode.publish[1]", "pools.datanode.publish[2]"]);
        assert!(errors[1].message.contains("already published by pools.datanode.publish[0]"), "{}", errors[1].message);
    }

    #[test]
    fn every_error_is_reported_with_field_and_line() {
        let text = "tenant: Acme\nname: prod\npools:\n  datanode:\n    replicas: 3\n    cpu: 500m\n    memory: 64Mi\n";
        let Err(SpecError::Invalid(errors)) = parse_cluster_spec(text) else {
            panic!("spec with three problems was accepted");
        };
        let fields: Vec<_> = errors.iter().map(|e| (e.field.as_str(), e.line)).collect();
        assert_eq!(
            fields,
            vec![("tenant", Some(1)), ("pools.datanode.memory", Some(7)), ("images.datanode", None)]
        );
    }
}
