//! The query function: builds the DataFusion engine (lake tables registered, object store client)
//! once at cold start, then serves every API Gateway request with the same router `dials serve` uses.
//!
//! Environment: `DIALS_LAKE` (s3://bucket/prefix), `DIALS_WORKSPACES` (optional), AWS variables;
//! `DIALS_AUTH=oidc` with `DIALS_OIDC_ISSUER` / `DIALS_OIDC_AUDIENCE` (/ `DIALS_OIDC_ROLES_CLAIM`)
//! checks bearer tokens and roles → workspaces (docs/auth.md).

use std::sync::Arc;

use dials_api::auth::{OidcConfig, Verifier};
use dials_api::{router_with_auth, App, Engine};
use lambda_http::Error;

#[tokio::main]
async fn main() -> Result<(), Error> {
    dials_malloc::tune_for_serving();
    tracing_subscriber::fmt()
        .json()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("DIALS_LOG")
                .unwrap_or_else(|_| "info,deltalake_core::kernel::transaction=off".into()),
        )
        .without_time()
        .init();
    let started = std::time::Instant::now();
    let lake = dials_lake::Location::from_env()?;
    let workspaces = dials_lake::config::from_env().await?;
    let engine = Engine::new(&lake, workspaces).await?;
    let verifier = match OidcConfig::from_env()? {
        Some(c) => Some(Arc::new(Verifier::new(c).await?)),
        None => None,
    };
    tracing::info!(
        init_ms = started.elapsed().as_secs_f64() * 1e3,
        auth = verifier.is_some(),
        "ready"
    );
    lambda_http::run(router_with_auth(Arc::new(App { engine }), verifier)).await
}
