//! `herd tokens`: issue, list and revoke API tokens.

use std::time::{Duration, SystemTime};

use anyhow::{Context, Result};
use herd_api::wire::{CreateToken, Scope, TokenInfo};

use crate::client::Client;
use crate::output::{self, Format};

/// Issues a token. In table mode the secret alone goes to stdout (so `> file` keeps it) and
/// what it is to stderr.
pub async fn create(
    client: &Client,
    out: Format,
    scope: Scope,
    tenant: Option<String>,
    host: Option<String>,
    description: Option<String>,
) -> Result<()> {
    let request = CreateToken { scope, tenant, host, description };
    let created = client.create_token(&request).await.context("creating a token")?;
    let t = &created.token;
    let what = match (&t.scope, &t.tenant) {
        (Scope::Tenant, Some(tenant)) => format!("for tenant {tenant}"),
        (Scope::Agent, _) => match &t.host {
            Some(h) => format!("for the agent of host {h}"),
            None => "for agents".into(),
        },
        _ => "with admin rights".into(),
    };
    eprintln!("token {} created {what}; its secret is printed only now: keep it safe", t.id);
    match out {
        Format::Table => output::emit(out, &created, || format!("{}\n", created.secret)),
        _ => output::emit(out, &created, String::new),
    }
}

pub async fn list(client: &Client, out: Format) -> Result<()> {
    let tokens = client.tokens().await?;
    output::emit(out, &tokens, || token_table(&tokens))
}

pub async fn revoke(client: &Client, out: Format, id: &str) -> Result<()> {
    client.revoke_token(id).await.with_context(|| format!("revoking token {id}"))?;
    output::note(out, &format!("token {id} revoked"))
}

fn token_table(tokens: &[TokenInfo]) -> String {
    let rows = tokens.iter().map(|t| {
        let scope = match t.scope {
            Scope::Admin => "admin",
            Scope::Agent => "agent",
            Scope::Tenant => "tenant",
        };
        vec![
            t.id.clone(),
            scope.to_string(),
            t.tenant.clone().unwrap_or_else(|| "-".into()),
            t.host.clone().unwrap_or_else(|| "-".into()),
            if t.revoked { "revoked".into() } else { "active".into() },
            humantime::format_rfc3339_seconds(SystemTime::UNIX_EPOCH + Duration::from_secs(t.created_at)).to_string(),
            t.description.clone().unwrap_or_default(),
        ]
    });
    output::table(&["ID", "SCOPE", "TENANT", "HOST", "STATE", "CREATED", "DESCRIPTION"], rows)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_rows() {
        let t = |id: &str, scope, tenant: Option<&str>, revoked| TokenInfo {
            id: id.into(),
            scope,
            tenant: tenant.map(Into::into),
            host: None,
            description: Some("ci".into()),
            created_at: 1_767_225_600,
            revoked,
        };
        let got = token_table(&[t("aa01", Scope::Admin, None, false), t("bb02", Scope::Tenant, Some("acme"), true)]);
        let want = "\
ID    SCOPE   TENANT  HOST  STATE    CREATED               DESCRIPTION
aa01  admin   -       -     active   2026-01-01T00:00:00Z  ci
bb02  tenant  acme    -     revoked  2026-01-01T00:00:00Z  ci
";
        assert_eq!(got, want);
    }
}
