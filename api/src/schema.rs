//! JSON schemas of the spec types, for the `HadoopCluster` custom resource of operator mode
//! (behind the `schema` feature, so builds without the operator do not compile schemars).
//!
//! The derives on the spec types follow their serde attributes; what serde reads by hand
//! (quantities, replica counts, maps keyed by role or file) gets its schema here. Schemas are
//! written for Kubernetes' structural schemas: quantities are `x-kubernetes-int-or-string`,
//! and the maps keyed by a closed set (roles, config files) list their keys as properties, so
//! the API server refuses (or prunes) a pool or file herd does not know.

use std::borrow::Cow;

use schemars::{JsonSchema, Schema, SchemaGenerator, json_schema};

use crate::hadoop::ConfigFile;
use crate::quantity::{Cpu, Memory};
use crate::spec::{MAX_REPLICAS, PoolSpec, Replicas, Role};

/// NB: no `anyOf` of integer and string beside the extension: kube's structural-schema
/// rewriter would hoist it into a single type; the API server accepts the extension alone,
/// and herd's own parser names the field when a value is not a quantity.
fn int_or_string(description: &str) -> Schema {
    json_schema!({"description": description, "x-kubernetes-int-or-string": true})
}

impl JsonSchema for Cpu {
    fn schema_name() -> Cow<'static, str> {
        "Cpu".into()
    }
    fn inline_schema() -> bool {
        true
    }
    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        int_or_string("CPU: cores (`2`, `\"0.5\"`) or millicores (`500m`)")
    }
}

impl JsonSchema for Memory {
    fn schema_name() -> Cow<'static, str> {
        "Memory".into()
    }
    fn inline_schema() -> bool {
        true
    }
    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        int_or_string("Bytes, with an optional suffix Ki, Mi, Gi, Ti (binary) or K, M, G, T (decimal)")
    }
}

impl JsonSchema for Replicas {
    fn schema_name() -> Cow<'static, str> {
        "Replicas".into()
    }
    fn inline_schema() -> bool {
        true
    }
    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({"type": "integer", "format": "int32", "minimum": 0, "maximum": MAX_REPLICAS})
    }
}

/// An object with one optional property per role, each of `value`'s schema.
fn per_role(description: &str, value: Schema) -> Schema {
    let properties: serde_json::Map<String, serde_json::Value> =
        Role::ALL.iter().map(|r| (r.as_str().to_string(), value.clone().to_value())).collect();
    json_schema!({"type": "object", "description": description, "properties": properties})
}

/// `images`: an image per role.
pub fn images(_: &mut SchemaGenerator) -> Schema {
    per_role("The image per role, used by every pool of that role unless the pool names its own.", json_schema!({"type": "string"}))
}

/// `pools`: a pool per role.
pub fn pools(generator: &mut SchemaGenerator) -> Schema {
    per_role(
        "The node pools, by role (namenode, resourcemanager, datanode, nodemanager). DataNodes and NodeManagers are sized independently.",
        generator.subschema_for::<PoolSpec>(),
    )
}

/// `configOverrides`: per file, `key: value`.
pub fn config_overrides(_: &mut SchemaGenerator) -> Schema {
    let map = json_schema!({"type": "object", "additionalProperties": {"type": "string"}});
    let properties: serde_json::Map<String, serde_json::Value> =
        ConfigFile::ALL.iter().map(|f| (f.as_str().to_string(), map.clone().to_value())).collect();
    json_schema!({
        "type": "object",
        "description": "Hadoop configuration overrides, per file (core-site.xml, hdfs-site.xml, yarn-site.xml, mapred-site.xml); keys herd owns are refused.",
        "properties": properties,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ClusterSpec;

    #[test]
    fn pools_list_every_role_and_quantities_are_int_or_string() {
        let schema = schemars::schema_for!(ClusterSpec).to_value();
        let text = schema.to_string();
        for role in Role::ALL {
            assert!(schema["properties"]["pools"]["properties"].get(role.as_str()).is_some(), "{role}: {text}");
        }
        assert!(text.contains("x-kubernetes-int-or-string"), "{text}");
        assert_eq!(schema["additionalProperties"], false, "deny_unknown_fields carries over: {text}");
    }
}
