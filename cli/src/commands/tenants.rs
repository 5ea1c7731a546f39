//! `herd tenants`: create, list and delete tenants; show and set their quotas.

use std::time::{Duration, SystemTime};

use anyhow::{Context, Result};
use herd_api::quantity::{Cpu, Memory, Resources};
use herd_api::wire::{Quota, Tenant, TenantQuota, Unlimited};

use crate::args::QuotaArgs;
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

pub async fn create(client: &Client, out: Format, name: &str, quota: &QuotaArgs, unlimited: bool) -> Result<()> {
    let quota = if unlimited {
        Some(TenantQuota::Unlimited(Unlimited::Unlimited))
    } else {
        quota.any().then(|| TenantQuota::Limits(quota.apply_to(Quota::default())))
    };
    let (tenant, created) = client
        .create_tenant(name, quota)
        .await
        .with_context(|| format!("creating tenant {name}"))?;
    let verb = if created { "created" } else { "already exists" };
    output::note(out, &format!("tenant {name} {verb}"))?;
    if out != Format::Table {
        output::emit(out, &tenant, String::new)?;
    }
    Ok(())
}

/// Shows the quota, or changes the limits given and keeps the others.
pub async fn quota(client: &Client, out: Format, name: &str, flags: &QuotaArgs) -> Result<()> {
    let tenant = client.tenant(name).await.with_context(|| format!("reading tenant {name}"))?;
    let tenant = if flags.any() {
        let t = client
            .set_quota(name, flags.apply_to(tenant.quota))
            .await
            .with_context(|| format!("setting the quota of tenant {name}"))?;
        output::note(out, &format!("quota of tenant {name} set"))?;
        t
    } else {
        tenant
    };
    output::emit(out, &tenant, || tenant_table(std::slice::from_ref(&tenant)))
}

pub async fn delete(client: &Client, out: Format, name: &str) -> Result<()> {
    client.delete_tenant(name).await.with_context(|| format!("deleting tenant {name}"))?;
    output::note(out, &format!("tenant {name} deleted; its tokens are revoked"))
}

/// `used/limit`, `used/-` without a limit.
fn share(used: String, limit: Option<String>) -> String {
    format!("{used}/{}", limit.unwrap_or_else(|| "-".into()))
}

fn tenant_table(tenants: &[Tenant]) -> String {
    let rows = tenants.iter().map(|t| {
        let created = match t.created_at {
            0 => "-".to_string(),
            secs => humantime::format_rfc3339_seconds(SystemTime::UNIX_EPOCH + Duration::from_secs(secs)).to_string(),
        };
        let mem = |m: Memory| output::memory(m);
        vec![
            t.name.clone(),
            created,
            share(t.usage.cpu.to_string(), t.quota.cpu.map(|c: Cpu| c.to_string())),
            share(mem(t.usage.memory), t.quota.memory.map(mem)),
            share(mem(t.usage.disk), t.quota.disk.map(mem)),
            t.quota.guaranteed.map(resources).unwrap_or_else(|| "-".into()),
            resources(t.used),
            resources(t.borrowed),
        ]
    });
    output::table(&["NAME", "CREATED", "CPU", "MEMORY", "DISK", "GUARANTEED", "USED", "BORROWED"], rows)
}

/// `cpu,memory,disk`, compact.
fn resources(r: Resources) -> String {
    format!("{},{},{}", r.cpu, output::memory(r.memory), output::memory(r.disk))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tenant_rows() {
        let tenant = |name: &str, created_at, quota: serde_json::Value| -> Tenant {
            serde_json::from_value(serde_json::json!({
                "name": name, "created_at": created_at, "quota": quota,
                "usage": {"cpu": "1500m", "memory": "3Gi", "disk": "0"},
                "used": {"cpu": "3", "memory": "5Gi", "disk": "0"},
                "borrowed": {"cpu": "1", "memory": "1Gi", "disk": "0"}
            }))
            .unwrap_or_else(|e| panic!("fixture tenant: {e}"))
        };
        let got = tenant_table(&[
            tenant("acme", 1_767_225_600, serde_json::json!({"cpu": "4", "memory": "8Gi", "guaranteed": {"cpu": "2", "memory": "4Gi"}})),
            tenant("old", 0, serde_json::json!({})),
        ]);
        let want = "\
NAME  CREATED               CPU      MEMORY   DISK  GUARANTEED  USED     BORROWED
acme  2026-01-01T00:00:00Z  1500m/4  3Gi/8Gi  0/-   2,4Gi,0     3,5Gi,0  1,1Gi,0
old   -                     1500m/-  3Gi/-    0/-   -           3,5Gi,0  1,1Gi,0
";
        assert_eq!(got, want);
    }
}
