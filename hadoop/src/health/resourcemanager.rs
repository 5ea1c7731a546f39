//! Parser of the ResourceManager's REST answers (placeholder until the real parser lands).

use herd_api::hadoop::ResourceManagerHealth;

pub fn parse(_info: Option<&str>, _metrics: &str, _nodes: &str) -> ResourceManagerHealth {
    ResourceManagerHealth { error: Some("ResourceManager health parser not available".into()), ..Default::default() }
}
