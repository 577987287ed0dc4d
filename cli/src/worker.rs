//! `dials worker`: the S3 → SQS → function path, run locally against a queue (LocalStack, moto, AWS).
//!
//! Long-polls the queue, wraps each batch into the exact event Lambda's SQS integration delivers
//! (`Records[].eventSource = "aws:sqs"`, `body`, `attributes.ApproximateReceiveCount`) and either
//! runs the handler in-process or invokes the real function binary through the Lambda runtime API
//! (`--invoke-url`, e.g. `cargo lambda watch`). Messages the function does not report in
//! `batchItemFailures` are deleted; the others become visible again and, after the queue's
//! maxReceiveCount, SQS moves them to the dead-letter queue. While a batch runs, its messages'
//! visibility is extended every third of the queue's visibility timeout, so a batch that outlives
//! the timeout (a large one on a slow machine) is not delivered a second time to another worker.

use std::sync::Arc;
use std::time::{Duration, Instant};

use aws_sdk_sqs::types::{
    ChangeMessageVisibilityBatchRequestEntry, DeleteMessageBatchRequestEntry,
    MessageSystemAttributeName,
};
use dials_lake::events::{handle_event_with, Deps, Extension};
use serde_json::{json, Value};

use crate::CliError;

/// Options of `dials worker`.
pub struct Args {
    /// Queue URL.
    pub queue_url: String,
    /// Lake location.
    pub lake: String,
    /// Workspaces config.
    pub workspaces: Option<String>,
    /// Dataset for non-LFN keys.
    pub default_dataset: Option<String>,
    /// Invoke a function through the runtime API instead of in-process.
    pub invoke_url: Option<String>,
    /// Stop after this many idle seconds (0 = run forever).
    pub idle_exit: u64,
    /// maxReceiveCount the operator expects (checked against the queue's redrive policy).
    pub max_receives: Option<u32>,
    /// Messages per batch at most (Lambda's `BatchSize`): while the queue answers full receives
    /// of 10, more are taken at once, up to this many; a lone message is never held back.
    pub batch_size: usize,
    /// FIFO queue the ingests send their commits to (`None`: they commit themselves).
    pub commit_queue_url: Option<String>,
}

/// Runs `dials worker`.
pub fn run(args: Args) -> Result<(), CliError> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(CliError::Output)?;
    rt.block_on(async move {
        let conf = aws_config::load_defaults(aws_config::BehaviorVersion::latest()).await;
        let sqs = aws_sdk_sqs::Client::new(&conf);
        let max_receives = max_receives(&sqs, &args.queue_url, args.max_receives).await?;
        let visibility = visibility_timeout(&sqs, &args.queue_url).await;
        let deps = Deps {
            lake: dials_lake::Location::parse(&args.lake, !args.lake.starts_with("s3://"))
                .map_err(|e| CliError::Usage(format!("--lake: {e}")))?,
            workspaces: crate::ingest::load_workspaces(args.workspaces.as_deref()).await?,
            default_dataset: args.default_dataset.clone(),
            max_receives,
            commit_queue: args.commit_queue_url.as_ref().map(|u| {
                Arc::new(dials_lake::ingest::SqsCommitQueue::new(sqs.clone(), u.trim().to_string()))
                    as Arc<dyn dials_lake::ingest::CommitQueue>
            }),
        };
        dials_lake::ingest::limit_concurrent_decodes(dials_lake::events::decode_slots_from_env());
        // The ML extension, as in the function: with DIALS_ML_QUEUE_URL set, backfills fan out one
        // message per run to that queue (as in AWS); without it they run here, on threads.
        let threads = std::thread::available_parallelism().map_or(2, |n| n.get());
        let fanout = std::env::var("DIALS_ML_QUEUE_URL").ok().filter(|u| !u.trim().is_empty());
        let queue = fanout.map(|u| dials_api::ml::events::sqs_queue(sqs.clone(), u.trim().to_string()));
        let ml = dials_api::ml::events::MlEvents::new(deps.lake.clone(), deps.workspaces.clone(), queue, threads);
        let http = args.invoke_url.as_ref().map(|_| reqwest::Client::new());
        let mut idle_since = Instant::now();
        let receive = |wait: i32| {
            sqs.receive_message()
                .queue_url(&args.queue_url)
                .max_number_of_messages(10)
                .wait_time_seconds(wait)
                .message_system_attribute_names(MessageSystemAttributeName::ApproximateReceiveCount)
                .message_system_attribute_names(MessageSystemAttributeName::SentTimestamp)
                .send()
        };
        let receive_error = |e| CliError::Usage(format!("receive from {}: {}", args.queue_url, aws_sdk_sqs::error::DisplayErrorContext(&e)));
        loop {
            let out = receive(if args.idle_exit > 0 { 1 } else { 10 }).await.map_err(receive_error)?;
            let mut messages = out.messages.unwrap_or_default();
            // A burst: the queue had a full receive's worth. Take more at once (as Lambda's
            // BatchSize above 10 does), so the batch's files share fewer, larger commits.
            while messages.len() % 10 == 0 && !messages.is_empty() && messages.len() < args.batch_size {
                let more = receive(0).await.map_err(receive_error)?.messages.unwrap_or_default();
                if more.is_empty() {
                    break;
                }
                messages.extend(more);
            }
            if messages.is_empty() {
                if args.idle_exit > 0 && idle_since.elapsed() > Duration::from_secs(args.idle_exit) {
                    return Ok(());
                }
                continue;
            }
            idle_since = Instant::now();
            // When each message was sent and received: with the ingest's own FINISHED line, where an
            // upload's time to visibility goes (bench/freshness.py reads these).
            let received_ms = dials_lake::delta::now_ms();
            for m in &messages {
                let sent_ms = m.attributes().and_then(|a| a.get(&MessageSystemAttributeName::SentTimestamp)).and_then(|s| s.parse::<i64>().ok());
                let keys: Vec<String> = m
                    .body()
                    .and_then(|b| serde_json::from_str::<Value>(b).ok())
                    .map(|b| dials_lake::events::objects_in_s3_event(&b).into_iter().map(|o| o.key).collect())
                    .unwrap_or_default();
                tracing::info!(message_id = m.message_id().unwrap_or_default(), sent_ms, received_ms, keys = ?keys, "received");
            }
            let records: Vec<Value> = messages
                .iter()
                .map(|m| {
                    let count = m
                        .attributes()
                        .and_then(|a| a.get(&MessageSystemAttributeName::ApproximateReceiveCount))
                        .cloned()
                        .unwrap_or_else(|| "1".into());
                    json!({
                        "messageId": m.message_id().unwrap_or_default(),
                        "receiptHandle": m.receipt_handle().unwrap_or_default(),
                        "body": m.body().unwrap_or_default(),
                        "attributes": { "ApproximateReceiveCount": count },
                        "eventSource": "aws:sqs",
                    })
                })
                .collect();
            let event = json!({ "Records": records });
            let handles: Vec<String> = messages.iter().filter_map(|m| m.receipt_handle().map(str::to_string)).collect();
            let heartbeat = visibility.map(|v| tokio::spawn(keep_invisible(sqs.clone(), args.queue_url.clone(), handles, v)));
            let response = match (&http, &args.invoke_url) {
                (Some(client), Some(url)) => invoke(client, url, &event).await,
                _ => handle_event_with(&deps, Some(&ml as &dyn Extension), &event, None).await,
            };
            if let Some(h) = heartbeat {
                h.abort();
            }
            let failed: Vec<String> = match &response {
                Ok(v) => v["batchItemFailures"]
                    .as_array()
                    .map(|a| a.iter().filter_map(|f| f["itemIdentifier"].as_str().map(str::to_string)).collect())
                    .unwrap_or_default(),
                Err(e) => {
                    tracing::warn!(error = %e, "function failed the whole batch");
                    messages.iter().filter_map(|m| m.message_id().map(str::to_string)).collect()
                }
            };
            let done: Vec<_> = messages
                .iter()
                .filter(|m| !failed.iter().any(|f| Some(f.as_str()) == m.message_id()))
                .filter_map(|m| m.receipt_handle())
                .enumerate()
                .filter_map(|(i, h)| DeleteMessageBatchRequestEntry::builder().id(i.to_string()).receipt_handle(h).build().ok())
                .collect();
            for chunk in done.chunks(10) {
                match sqs.delete_message_batch().queue_url(&args.queue_url).set_entries(Some(chunk.to_vec())).send().await {
                    Ok(out) => {
                        for f in out.failed() {
                            tracing::warn!(entry = f.id(), code = f.code(), "delete failed; the message will be redelivered");
                        }
                    }
                    Err(e) => tracing::warn!(error = %aws_sdk_sqs::error::DisplayErrorContext(&e), "delete failed; the messages will be redelivered"),
                }
            }
            eprintln!("worker: {} message(s), {} to retry", messages.len(), failed.len());
        }
    })
}

/// The queue's visibility timeout in seconds (`None`, logged, if it cannot be read: no heartbeat).
async fn visibility_timeout(sqs: &aws_sdk_sqs::Client, queue_url: &str) -> Option<i32> {
    use aws_sdk_sqs::types::QueueAttributeName;
    let attrs = sqs
        .get_queue_attributes()
        .queue_url(queue_url)
        .attribute_names(QueueAttributeName::VisibilityTimeout)
        .send()
        .await;
    let v = attrs.ok().and_then(|a| {
        a.attributes()
            .and_then(|a| a.get(&QueueAttributeName::VisibilityTimeout))
            .and_then(|v| v.parse::<i32>().ok())
    });
    if v.is_none() {
        tracing::warn!(
            queue_url,
            "visibility timeout of the queue not read: a batch that outlives it is delivered again"
        );
    }
    v.filter(|v| *v > 0)
}

/// Keeps the messages of a running batch invisible: every third of the queue's visibility timeout
/// (`seconds`), their timeout starts again (until the task is aborted when the batch is done).
async fn keep_invisible(
    sqs: aws_sdk_sqs::Client,
    queue_url: String,
    handles: Vec<String>,
    seconds: i32,
) {
    let every = Duration::from_millis(u64::try_from(seconds).unwrap_or(1) * 1000 / 3);
    loop {
        tokio::time::sleep(every).await;
        for chunk in handles.chunks(10) {
            let entries: Vec<_> = chunk
                .iter()
                .enumerate()
                .filter_map(|(i, h)| {
                    ChangeMessageVisibilityBatchRequestEntry::builder()
                        .id(i.to_string())
                        .receipt_handle(h)
                        .visibility_timeout(seconds)
                        .build()
                        .ok()
                })
                .collect();
            match sqs
                .change_message_visibility_batch()
                .queue_url(&queue_url)
                .set_entries(Some(entries))
                .send()
                .await
            {
                Ok(out) => {
                    for f in out.failed() {
                        tracing::warn!(
                            entry = f.id(),
                            code = f.code(),
                            "visibility not extended; the message may be delivered again"
                        );
                    }
                }
                Err(e) => {
                    tracing::warn!(error = %aws_sdk_sqs::error::DisplayErrorContext(&e), "visibility not extended; the messages may be delivered again")
                }
            }
        }
        tracing::debug!(
            messages = handles.len(),
            seconds,
            "batch still running: visibility extended"
        );
    }
}

/// The deliveries after which SQS moves a message to the dead-letter queue: the queue's redrive
/// policy says; a value given by the operator must agree with it, so the last delivery (when a
/// transient failure is recorded as FILE_NOT_AVAILABLE) is the one SQS really gives up after.
async fn max_receives(
    sqs: &aws_sdk_sqs::Client,
    queue_url: &str,
    given: Option<u32>,
) -> Result<u32, CliError> {
    use aws_sdk_sqs::types::QueueAttributeName;
    let attrs = sqs
        .get_queue_attributes()
        .queue_url(queue_url)
        .attribute_names(QueueAttributeName::RedrivePolicy)
        .send()
        .await
        .map_err(|e| {
            CliError::Usage(format!(
                "queue {queue_url}: {}",
                aws_sdk_sqs::error::DisplayErrorContext(&e)
            ))
        })?;
    let from_queue = match attrs
        .attributes()
        .and_then(|a| a.get(&QueueAttributeName::RedrivePolicy))
    {
        None => None,
        Some(text) => Some(redrive_max_receives(text).ok_or_else(|| {
            CliError::Usage(format!(
                "queue {queue_url}: redrive policy without a usable maxReceiveCount: {text}"
            ))
        })?),
    };
    match (given, from_queue) {
        (Some(g), Some(q)) if g != q => Err(CliError::Usage(format!(
            "--max-receives/DIALS_MAX_RECEIVES is {g} but the queue's redrive policy moves messages to the dead-letter queue after {q} receives (maxReceiveCount {q}); drop the option or make them agree"
        ))),
        (_, Some(q)) => Ok(q),
        (Some(g), None) => {
            eprintln!("worker: warning: {queue_url} has no redrive policy (no dead-letter queue): failing messages are redelivered until they expire; a transient failure is recorded after {g} receives");
            Ok(g)
        }
        (None, None) => Err(CliError::Usage(format!(
            "queue {queue_url} has no redrive policy (no dead-letter queue): give --max-receives to say after how many receives a transient failure is recorded"
        ))),
    }
}

/// `maxReceiveCount` of an SQS redrive policy (a JSON document; the count is a number or a string).
fn redrive_max_receives(policy: &str) -> Option<u32> {
    let v: Value = serde_json::from_str(policy).ok()?;
    match &v["maxReceiveCount"] {
        Value::Number(n) => n.as_u64().and_then(|n| u32::try_from(n).ok()),
        Value::String(s) => s.trim().parse().ok(),
        _ => None,
    }
    .filter(|&n| n > 0)
}

async fn invoke(client: &reqwest::Client, url: &str, event: &Value) -> Result<Value, String> {
    let resp = client
        .post(url)
        .json(event)
        .send()
        .await
        .map_err(|e| e.to_string())?;
    let status = resp.status();
    let body: Value = resp.json().await.map_err(|e| e.to_string())?;
    if !status.is_success() || body.get("errorMessage").is_some() {
        return Err(format!("{status}: {body}"));
    }
    Ok(body)
}

#[cfg(test)]
mod tests {
    use super::redrive_max_receives;

    #[test]
    fn redrive_policy_count_as_string_or_number() {
        assert_eq!(
            redrive_max_receives(
                r#"{"deadLetterTargetArn":"arn:aws:sqs:us-east-1:1:dlq","maxReceiveCount":"3"}"#
            ),
            Some(3)
        );
        assert_eq!(
            redrive_max_receives(r#"{"deadLetterTargetArn":"x","maxReceiveCount":5}"#),
            Some(5)
        );
        assert_eq!(redrive_max_receives(r#"{"deadLetterTargetArn":"x"}"#), None);
        assert_eq!(redrive_max_receives(r#"{"maxReceiveCount":"0"}"#), None);
        assert_eq!(redrive_max_receives("not json"), None);
    }
}
