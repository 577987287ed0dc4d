//! The query function: builds the DataFusion engine (lake tables registered, object store client)
//! once at cold start, then serves every API Gateway request with the same router `dials serve` uses.
//!
//! Environment: `DIALS_LAKE` (s3://bucket/prefix), `DIALS_WORKSPACES` (optional), AWS variables.

use std::sync::Arc;

use dials_api::{router, App, Engine};
use lambda_http::Error;

#[tokio::main]
async fn main() -> Result<(), Error> {
    tracing_subscriber::fmt()
        .json()
        .with_env_filter(tracing_subscriber::EnvFilter::try_from_env("DIALS_LOG").unwrap_or_else(|_| "info".into()))
        .without_time()
        .init();
    let started = std::time::Instant::now();
    let lake = std::env::var("DIALS_LAKE").map_err(|_| "DIALS_LAKE is not set (s3://bucket/prefix)")?;
    let lake = dials_lake::Location::parse(&lake, false)?;
    let workspaces = match std::env::var("DIALS_WORKSPACES") {
        Ok(spec) => dials_lake::config::load(&spec).await?,
        Err(_) => dials_lake::Workspaces::default(),
    };
    let engine = Engine::new(&lake, workspaces).await?;
    tracing::info!(init_ms = started.elapsed().as_secs_f64() * 1e3, "ready");
    lambda_http::run(router(Arc::new(App { engine }))).await
}
