//! `herd audit`: who changed what, when.

use std::time::{Duration, SystemTime};

use anyhow::Result;
use herd_api::wire::AuditEntry;

use crate::client::Client;
use crate::output::{self, Format};

/// Entries asked for per page.
const PAGE: u32 = 1000;

/// Prints the trail, oldest first; with `last`, only the last `last` entries.
pub async fn run(client: &Client, out: Format, last: Option<u32>) -> Result<()> {
    let mut entries: Vec<AuditEntry> = Vec::new();
    let mut after: Option<String> = None;
    loop {
        let page = client.audit(after.as_deref(), PAGE).await?;
        entries.extend(page.items);
        if let Some(n) = last {
            // Only the tail is shown; keep memory bounded on a long trail.
            let excess = entries.len().saturating_sub(n as usize);
            entries.drain(..excess);
        }
        match page.next {
            Some(next) => after = Some(next),
            None => break,
        }
    }
    output::emit(out, &entries, || {
        let mut text = audit_table(&entries);
        for e in entries.iter().filter(|e| e.detail.is_some()) {
            text.push_str(&format!("\n{} {}: {}\n", e.id, e.action, e.detail.as_deref().unwrap_or_default()));
        }
        text
    })
}

fn generation(g: Option<u64>) -> String {
    g.map(|g| g.to_string()).unwrap_or_else(|| "-".into())
}

fn audit_table(entries: &[AuditEntry]) -> String {
    let rows = entries.iter().map(|e| {
        vec![
            e.id.to_string(),
            humantime::format_rfc3339_seconds(SystemTime::UNIX_EPOCH + Duration::from_millis(e.at)).to_string(),
            e.actor.clone(),
            e.action.clone(),
            e.resource.clone(),
            generation(e.before_generation),
            generation(e.after_generation),
        ]
    });
    output::table(&["ID", "TIME", "ACTOR", "ACTION", "RESOURCE", "BEFORE", "AFTER"], rows)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn audit_rows() {
        let e = AuditEntry {
            id: 7,
            at: 1_767_225_600_000,
            actor: "admin:aa01".into(),
            action: "cluster.scale".into(),
            resource: "acme/prod".into(),
            before_generation: Some(1),
            after_generation: Some(2),
            detail: None,
        };
        let got = audit_table(&[e]);
        assert_eq!(
            got,
            "ID  TIME                  ACTOR       ACTION         RESOURCE   BEFORE  AFTER\n7   2026-01-01T00:00:00Z  admin:aa01  cluster.scale  acme/prod  1       2\n"
        );
    }
}
