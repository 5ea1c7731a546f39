//! Parser of the NameNode's `/jmx` answers (placeholder until the real parser lands).

use herd_api::hadoop::NameNodeHealth;

pub fn parse(_answers: &[&str]) -> NameNodeHealth {
    NameNodeHealth { error: Some("NameNode health parser not available".into()), ..Default::default() }
}
