//! The ingest function: thin on purpose. It builds the lake location and the workspaces config once,
//! then hands every event to `dials_lake::events::handle_event` (the same code `dials worker` runs).
//!
//! Environment (see docs/config.md): `DIALS_LAKE` (s3://bucket/prefix), `DIALS_WORKSPACES` (optional
//! s3:// URL or path of the workspaces JSON), `DIALS_DEFAULT_DATASET` (optional), `DIALS_MAX_RECEIVES`
//! (the queue's maxReceiveCount, default 3), plus the usual AWS variables.

use dials_lake::events::{handle_event, Deps};
use lambda_runtime::{service_fn, Error, LambdaEvent};
use serde_json::Value;
#[tokio::main]
async fn main() -> Result<(), Error> {
    dials_malloc::tune_for_ingest();
    tracing_subscriber::fmt()
        .json()
        .with_env_filter(tracing_subscriber::EnvFilter::try_from_env("DIALS_LOG").unwrap_or_else(|_| "info".into()))
        .without_time()
        .init();
    let deps = deps_from_env().await?;
    let deps = &deps;
    lambda_runtime::run(service_fn(move |event: LambdaEvent<Value>| async move {
        handle_event(deps, &event.payload).await.map_err(Error::from)
    }))
    .await
}

async fn deps_from_env() -> Result<Deps, Error> {
    let lake = dials_lake::Location::from_env()?;
    let workspaces = dials_lake::config::from_env().await?;
    let max_receives = std::env::var("DIALS_MAX_RECEIVES").ok().and_then(|v| v.parse().ok()).unwrap_or(3);
    Ok(Deps { lake, workspaces, default_dataset: std::env::var("DIALS_DEFAULT_DATASET").ok(), max_receives })
}
