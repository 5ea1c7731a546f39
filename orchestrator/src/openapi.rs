//! The OpenAPI 3 document of the HTTP API, generated from the handlers' annotations and the
//! wire types, so it has one source. Served at `/v1/openapi.json`, printed by
//! `herd-orchestrator openapi`, and committed as `manifests/openapi.json` (a test keeps the
//! committed file in sync).

use utoipa::openapi::OpenApi as Document;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};

use crate::http;

#[derive(OpenApi)]
#[openapi(
    info(
        title = "herd",
        description = "Tenant provisioning API of herd-orchestrator: tenants, quotas, tokens, clusters and hosts. \
Every route but /healthz and this document needs `Authorization: Bearer SECRET`. Errors are RFC 9457 problem+json \
(`Problem`) with a stable `code` and every offending field. Lists take `?limit=N&after=CURSOR` and answer a page with \
`items` and `next`. Cluster reads carry the generation as `ETag`; changes honour `If-Match`.",
        license(name = "Apache-2.0")
    ),
    paths(
        http::tenants::create, http::tenants::list, http::tenants::get, http::tenants::set_quota, http::tenants::delete,
        http::tokens::create, http::tokens::list, http::tokens::revoke,
        http::clusters::all, http::clusters::of_tenant, http::clusters::get, http::clusters::apply,
        http::clusters::delete, http::clusters::scale,
        http::agents::register, http::agents::heartbeat, http::agents::hosts,
        http::hosts::get, http::hosts::cordon, http::hosts::uncordon, http::hosts::drain, http::hosts::delete,
        http::audit::list,
    ),
    modifiers(&Bearer),
    tags(
        (name = "tenants", description = "Tenants and their quotas (admin)"),
        (name = "tokens", description = "API tokens (admin)"),
        (name = "clusters", description = "A tenant's Hadoop clusters"),
        (name = "hosts", description = "The fleet (admin)"),
        (name = "agents", description = "The agent protocol"),
        (name = "audit", description = "Who changed what, when (admin)"),
    )
)]
struct ApiDoc;

struct Bearer;

impl Modify for Bearer {
    fn modify(&self, doc: &mut Document) {
        let components = doc.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).description(Some("an API token's secret")).build()),
        );
    }
}

/// The document.
pub fn document() -> Document {
    ApiDoc::openapi()
}

/// The document as committed under `manifests/`: pretty JSON and a final newline.
pub fn pretty() -> String {
    // NB: the document is plain data with string keys; serializing it cannot fail.
    document().to_pretty_json().unwrap_or_default() + "\n"
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn committed_document_is_current() {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../manifests/openapi.json");
        let committed = std::fs::read_to_string(&path).unwrap_or_default();
        assert!(
            committed == pretty(),
            "manifests/openapi.json differs from the API the code serves; regenerate it with\n  \
             cargo run -p herd-orchestrator -- openapi > manifests/openapi.json\nand commit it"
        );
    }

    #[test]
    fn every_route_is_documented() {
        let doc = document();
        let paths: Vec<&str> = doc.paths.paths.keys().map(String::as_str).collect();
        for p in ["/v1/tenants", "/v1/tenants/{tenant}/quota", "/v1/tokens/{id}", "/v1/tenants/{tenant}/clusters/{cluster}/pools/{pool}", "/v1/audit", "/v1/hosts"] {
            assert!(paths.contains(&p), "{p} missing from {paths:?}");
        }
    }
}
