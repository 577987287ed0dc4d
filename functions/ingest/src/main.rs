//! The ingest function: thin on purpose. It builds the lake location and the workspaces config once,
//! then hands every event to `dials_lake::events::handle_event` (the same code `dials worker` runs).
//!
//! Environment (see docs/config.md): `DIALS_LAKE` (s3://bucket/prefix), `DIALS_WORKSPACES` (optional
//! s3:// URL or path of the workspaces JSON), `DIALS_DEFAULT_DATASET` (optional), `DIALS_MAX_RECEIVES`
//! (required: the queue's maxReceiveCount, which sam-template.yaml sets from the same parameter as the
//! queue's redrive policy), `DIALS_ML_QUEUE_URL` (optional: the queue backfills fan out to, one
//! message per run; without it a backfill runs in this invocation), `DIALS_DECODE_SLOTS` (optional,
//! default 1: files of a batch decoded at once), `DIALS_COMMIT_QUEUE_URL` (optional: the FIFO queue
//! ingests send their commits to; its messages come back here and are committed one batch at a
//! time), plus the usual AWS variables.
//!
//! The ML extension (`dials_api::ml::events`) is made once per process: models stay loaded while
//! the function is warm.

use dials_api::ml::events::{sqs_queue, MlEvents};
use dials_lake::events::{attempt_deadline, handle_event_with, Deps, Extension};
use lambda_runtime::{service_fn, Error, LambdaEvent};
use serde_json::Value;
#[tokio::main]
async fn main() -> Result<(), Error> {
    dials_malloc::tune_for_ingest();
    tracing_subscriber::fmt()
        .json()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("DIALS_LOG")
                .unwrap_or_else(|_| "info,deltalake_core::kernel::transaction=off".into()),
        )
        .without_time()
        .init();
    let deps = deps_from_env().await?;
    let ml = ml_from_env(&deps).await;
    let (deps, ml) = (&deps, &ml);
    lambda_runtime::run(service_fn(move |event: LambdaEvent<Value>| async move {
        // An attempt that would outlive the invocation ends a little before it, as a status in the
        // lake and a retry, instead of being killed by the timeout without either.
        let deadline = invocation_deadline(event.context.deadline).map(attempt_deadline);
        handle_event_with(deps, Some(ml as &dyn Extension), &event.payload, deadline)
            .await
            .map_err(Error::from)
    }))
    .await
}

async fn deps_from_env() -> Result<Deps, Error> {
    let lake = dials_lake::Location::from_env()?;
    let workspaces = dials_lake::config::from_env().await?;
    // No silent default: a count that differs from the queue's redrive policy would record transient
    // failures too early (or never), so the function refuses to start without a valid one.
    let max_receives: u32 = std::env::var("DIALS_MAX_RECEIVES")
        .map_err(|_| "DIALS_MAX_RECEIVES is not set: it must equal the queue's maxReceiveCount (sam-template.yaml sets both from MaxReceives)")?
        .trim()
        .parse()
        .ok()
        .filter(|&n: &u32| n > 0)
        .ok_or("DIALS_MAX_RECEIVES must be a positive integer equal to the queue's maxReceiveCount")?;
    dials_lake::ingest::limit_concurrent_decodes(dials_lake::events::decode_slots_from_env());
    // Commits through the FIFO commit queue (whose messages come back to this function): an
    // ingest's commit is then one message sent, and one consumer at a time makes them.
    let commit_queue = match std::env::var("DIALS_COMMIT_QUEUE_URL") {
        Ok(url) if !url.trim().is_empty() => {
            let conf = aws_config::load_defaults(aws_config::BehaviorVersion::latest()).await;
            Some(std::sync::Arc::new(dials_lake::ingest::SqsCommitQueue::new(
                aws_sdk_sqs::Client::new(&conf),
                url.trim().to_string(),
            ))
                as std::sync::Arc<dyn dials_lake::ingest::CommitQueue>)
        }
        _ => None,
    };
    Ok(Deps {
        lake,
        workspaces,
        default_dataset: std::env::var("DIALS_DEFAULT_DATASET").ok(),
        max_receives,
        commit_queue,
    })
}

/// The ML extension: backfills go to `DIALS_ML_QUEUE_URL` when set (one message per run).
async fn ml_from_env(deps: &Deps) -> MlEvents {
    let queue = match std::env::var("DIALS_ML_QUEUE_URL") {
        Ok(url) if !url.trim().is_empty() => {
            let conf = aws_config::load_defaults(aws_config::BehaviorVersion::latest()).await;
            Some(sqs_queue(
                aws_sdk_sqs::Client::new(&conf),
                url.trim().to_string(),
            ))
        }
        _ => None,
    };
    let threads = std::thread::available_parallelism().map_or(2, |n| n.get());
    MlEvents::new(deps.lake.clone(), deps.workspaces.clone(), queue, threads)
}

/// The invocation's deadline (milliseconds since the Unix epoch, from the runtime API) as an instant;
/// none if the runtime gave none that lies ahead (an emulator may send 0), so no attempt is cut short
/// by a clock it does not keep.
fn invocation_deadline(deadline_ms: u64) -> Option<std::time::Instant> {
    let now_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis());
    let left = u64::try_from(u128::from(deadline_ms).saturating_sub(now_ms))
        .ok()
        .filter(|&ms| ms > 0)?;
    Some(std::time::Instant::now() + std::time::Duration::from_millis(left.min(24 * 3600 * 1000)))
}
