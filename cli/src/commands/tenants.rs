//! `herd tenants`: list and create tenants.

use std::time::{Duration, SystemTime};

use anyhow::{Context, Result};
use herd_api::wire::Tenant;

use crate::client::Client;
use crate::output::{self, Format};

pub async fn list(client: &Client, out: Format) -> Result<()> {
    let tenants = client.tenants().await?;
    if tenants.is_empty() && out == Format::Table {
        eprintln!("no tenants yet; create one with `herd tenants create NAME`");
        return Ok(());
    }
    output::emit(out, &tenants, || tenant_table(&tenants))
}

pub async fn create(client: &Client, out: Format, name: &str) -> Result<()> {
    let (tenant, created) = client
        .create_tenant(name)
        .await
        .with_context(|| format!("creating tenant {name}"))?;
    let verb = if created { "created" } else { "already exists" };
    output::note(out, &format!("tenant {name} {verb}"))?;
    if out != Format::Table {
        output::emit(out, &tenant, String::new)?;
    }
    Ok(())
}

fn tenant_table(tenants: &[Tenant]) -> String {
    let rows = tenants.iter().map(|t| {
        let created = match t.created_at {
            0 => "-".to_string(),
            secs => humantime::format_rfc3339_seconds(
                SystemTime::UNIX_EPOCH + Duration::from_secs(secs),
            )
            .to_string(),
        };
        vec![t.name.clone(), created]
    });
    output::table(&["NAME", "CREATED"], rows)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tenant_rows() {
        let tenant = |name: &str, created_at| -> Tenant {
            serde_json::from_value(serde_json::json!({ "name": name, "created_at": created_at }))
                .unwrap_or_else(|e| panic!("fixture tenant: {e}"))
        };
        let got = tenant_table(&[tenant("acme", 1_767_225_600), tenant("old", 0)]);
        assert_eq!(got, "NAME  CREATED\nacme  2026-01-01T00:00:00Z\nold   -\n");
    }
}
