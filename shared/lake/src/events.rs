//! The ingest function's events: SQS messages carrying S3 notifications (production), or S3
//! notifications delivered directly. Parsed leniently: emulators and AWS differ (moto omits
//! `userIdentity`; S3 first sends an `s3:TestEvent`; keys are form-encoded differently).

use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::future::BoxFuture;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::config::Workspaces;
use crate::ingest::{IngestError, IngestReport, IngestRequest};
use crate::store::Location;

/// One S3 object to ingest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectRef {
    /// Bucket.
    pub bucket: String,
    /// Decoded key.
    pub key: String,
    /// Size if the event carries it.
    pub size: Option<u64>,
    /// The entity tag of the version the event announces, if it carries one: the ingest reads
    /// that version or, when the key holds a newer one by then, leaves it to the newer one's event.
    pub etag: Option<String>,
}

#[derive(Deserialize)]
struct S3Notification {
    #[serde(rename = "Records", default)]
    records: Vec<S3Record>,
}

#[derive(Deserialize)]
struct S3Record {
    #[serde(rename = "eventName", default)]
    event_name: String,
    s3: S3Entity,
}

#[derive(Deserialize)]
struct S3Entity {
    bucket: S3Bucket,
    object: S3Object,
}

#[derive(Deserialize)]
struct S3Bucket {
    name: String,
}

#[derive(Deserialize)]
struct S3Object {
    key: String,
    #[serde(default)]
    size: Option<u64>,
    #[serde(rename = "eTag", default)]
    etag: Option<String>,
}

/// Decodes an S3 event key: `+` is a space, then percent-decoding (handles AWS, LocalStack, moto).
pub fn decode_key(key: &str) -> String {
    let bytes = key.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < bytes.len() => {
                let hex = std::str::from_utf8(&bytes[i + 1..i + 3])
                    .ok()
                    .and_then(|h| u8::from_str_radix(h, 16).ok());
                match hex {
                    Some(b) => {
                        out.push(b);
                        i += 2;
                    }
                    None => out.push(b'%'),
                }
            }
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The objects an S3 notification (as JSON) names; test events and non-create events give none.
pub fn objects_in_s3_event(v: &Value) -> Vec<ObjectRef> {
    let Ok(n) = serde_json::from_value::<S3Notification>(v.clone()) else {
        return Vec::new();
    };
    n.records
        .into_iter()
        .filter(|r| {
            r.event_name.is_empty()
                || r.event_name.starts_with("ObjectCreated")
                || r.event_name.starts_with("s3:ObjectCreated")
        })
        .map(|r| ObjectRef {
            bucket: r.s3.bucket.name,
            key: decode_key(&r.s3.object.key),
            size: r.s3.object.size,
            etag: r.s3.object.etag.filter(|e| !e.is_empty()),
        })
        .collect()
}

/// One SQS message of a Lambda SQS event.
#[derive(Debug, Clone)]
pub struct QueueMessage {
    /// Message id (reported back on failure).
    pub id: String,
    /// Body (an S3 notification as JSON text).
    pub body: String,
    /// How many times SQS has delivered it.
    pub receive_count: u32,
}

/// The messages of a Lambda SQS event, or `None` if the event is not an SQS event.
pub fn sqs_messages(v: &Value) -> Option<Vec<QueueMessage>> {
    let recs = v.get("Records")?.as_array()?;
    if recs.is_empty()
        || recs
            .iter()
            .any(|r| r.get("eventSource").and_then(Value::as_str) != Some("aws:sqs"))
    {
        return None;
    }
    Some(
        recs.iter()
            .map(|r| QueueMessage {
                id: r
                    .get("messageId")
                    .and_then(Value::as_str)
                    .unwrap_or_default()
                    .to_string(),
                body: r
                    .get("body")
                    .and_then(Value::as_str)
                    .unwrap_or_default()
                    .to_string(),
                receive_count: r
                    .pointer("/attributes/ApproximateReceiveCount")
                    .and_then(|c| {
                        c.as_str()
                            .and_then(|s| s.parse().ok())
                            .or_else(|| c.as_u64().map(|n| n as u32))
                    })
                    .unwrap_or(1),
            })
            .collect(),
    )
}

/// Decode slots of the ingest function and `dials worker` (`DIALS_DECODE_SLOTS`, default 1: one
/// file read and decoded at a time, as before batches ran concurrently, so memory stays that of one
/// ingest; the other messages of the batch commit meanwhile).
pub fn decode_slots_from_env() -> usize {
    std::env::var("DIALS_DECODE_SLOTS")
        .ok()
        .and_then(|v| v.trim().parse().ok())
        .filter(|n: &usize| *n > 0)
        .unwrap_or(1)
}

/// Everything the handler needs, built once per process.
#[derive(Debug, Clone)]
pub struct Deps {
    /// The lake.
    pub lake: Location,
    /// Workspaces.
    pub workspaces: Workspaces,
    /// Dataset for objects whose keys are not CMS logical file names (None: such files fail).
    pub default_dataset: Option<String>,
    /// Deliveries after which a transiently failing message is given up (the queue's maxReceiveCount).
    pub max_receives: u32,
    /// Where ingests send their commits instead of making them (`DIALS_COMMIT_QUEUE_URL`: the
    /// deployment's FIFO commit queue, whose messages come back to this handler); `None`: every
    /// ingest commits itself.
    pub commit_queue: Option<Arc<dyn crate::ingest::CommitQueue>>,
}

/// Outcome of one object.
#[derive(Debug, Serialize)]
pub struct ObjectOutcome {
    /// `s3://bucket/key`.
    pub object: String,
    /// FINISHED or the error status.
    pub status: String,
    /// Error text.
    pub error: Option<String>,
    /// True if the message must be retried.
    pub retry: bool,
}

/// Time kept back from an invocation's deadline for recording the outcome of an attempt that runs out
/// of time (a few small PUTs), so that it ends as a status in the lake, not as a killed function.
const SETTLE_RESERVE: Duration = Duration::from_secs(10);

/// The instant an attempt must end by, given the invocation's deadline: `SETTLE_RESERVE` before it,
/// or a third of the time left if that is shorter.
pub fn attempt_deadline(invocation_deadline: Instant) -> Instant {
    let left = invocation_deadline.saturating_duration_since(Instant::now());
    invocation_deadline
        .checked_sub(SETTLE_RESERVE.min(left / 3))
        .unwrap_or(invocation_deadline)
}

/// Ingests one object, the attempt ending by `deadline` if any (see [`IngestRequest::deadline`]);
/// records permanent failures; tells whether to retry.
pub async fn handle_object(
    deps: &Deps,
    obj: &ObjectRef,
    receive_count: u32,
    deadline: Option<Instant>,
) -> ObjectOutcome {
    handle_object_with(deps, None, obj, receive_count, deadline).await
}

/// What a deployment adds to the handler without the lake depending on it (the ML layer: scoring
/// after an ingest, model documents dropped into the lake, its own queue messages). The function
/// crate (and `dials worker`) passes one in; see [`handle_event_with`].
pub trait Extension: Send + Sync {
    /// Runs after a file's histograms are committed, before the outcome is settled. It cannot fail
    /// the ingest: whatever goes wrong is the extension's to record.
    fn after_ingest<'a>(&'a self, report: &'a IngestReport) -> BoxFuture<'a, ()>;
    /// True when `obj` is the extension's (e.g. a model document under the lake), not a file to ingest.
    fn claims(&self, obj: &ObjectRef) -> bool;
    /// Handles a claimed object.
    fn handle_object<'a>(&'a self, obj: &'a ObjectRef) -> BoxFuture<'a, ObjectOutcome>;
    /// Handles a queue message that is not an S3 notification; `None` when it is not the
    /// extension's either. `Some(true)`: retry the message.
    fn handle_message<'a>(&'a self, body: &'a Value) -> Option<BoxFuture<'a, bool>>;
    /// The extension's own Delta tables of each workspace and their files' schema (e.g. the ML
    /// results), compacted and vacuumed by the scheduled maintenance with the lake's tables. Their
    /// writers must find rows they replace in merged objects too (`compact::rewrite_without`).
    fn tables(&self) -> Vec<(&'static str, arrow::datatypes::SchemaRef)> {
        Vec::new()
    }
}

/// As [`handle_object`], with an extension: objects it claims go to it; after a successful ingest
/// its [`Extension::after_ingest`] runs (cut short at `deadline`, never failing the ingest).
pub async fn handle_object_with(
    deps: &Deps,
    ext: Option<&dyn Extension>,
    obj: &ObjectRef,
    receive_count: u32,
    deadline: Option<Instant>,
) -> ObjectOutcome {
    if let Some(ext) = ext.filter(|e| e.claims(obj)) {
        return ext.handle_object(obj).await;
    }
    let url = format!("s3://{}/{}", obj.bucket, obj.key);
    let req = IngestRequest {
        logical_file_name: crate::ingest::logical_file_name(&obj.key),
        dataset: if crate::dataset::from_lfn(&obj.key).is_some() {
            None
        } else {
            deps.default_dataset.clone()
        },
        deadline,
    };
    let mut opened: Option<Arc<dyn dials_dqmio::ByteSource>> = None;
    let result: Result<IngestReport, IngestError> = async {
        let store = crate::store::s3_store(&obj.bucket)
            .map_err(|e| IngestError::NotAvailable(e.to_string()))?;
        // Reads still pending at the deadline are abandoned, so a stalled GET cannot hold the decoder.
        let src = crate::store::ObjectSource::open_until(
            store,
            object_store::path::Path::from(obj.key.as_str()),
            url.clone(),
            deadline,
        )
        .await
        .map_err(|e| match e {
            object_store::Error::NotFound { .. } => {
                IngestError::NotAvailable(format!("{url}: not found"))
            }
            other => IngestError::Store(other),
        })?;
        let version = dials_dqmio::ByteSource::version(&src);
        // The key was overwritten after this event: the newer version's own event ingests it.
        if let (Some(want), Some(have)) = (&obj.etag, &version) {
            if !crate::store::same_etag(want, &have.etag) {
                return Err(IngestError::Superseded(format!(
                    "{url} holds another version ({}) than its event announced ({want})",
                    have.etag
                )));
            }
        }
        let src = Arc::new(src);
        opened = Some(src.clone());
        let s2 = src.clone();
        crate::ingest::ingest_queued(
            &deps.lake,
            &deps.workspaces,
            &req,
            src,
            Some(std::sync::Arc::new(move || {
                (s2.stats().bytes(), s2.stats().requests())
            })),
            deps.commit_queue.as_deref(),
        )
        .await
    }
    .await;
    // A queued commit's hook runs where it is committed (`handle_queued`).
    if let (Some(rep), Some(ext)) = (result.as_ref().ok().filter(|r| !r.commit_queued), ext) {
        let hook = ext.after_ingest(rep);
        let done = match deadline {
            Some(d) => tokio::time::timeout_at(tokio::time::Instant::from_std(d), hook)
                .await
                .is_ok(),
            None => {
                hook.await;
                true
            }
        };
        if !done {
            tracing::warn!(object = %url, "after-ingest hook cut short by the invocation's deadline; the file's histograms are committed");
        }
    }
    settle(
        deps,
        &req,
        opened,
        &url,
        obj.size.unwrap_or(0),
        result,
        receive_count,
    )
    .await
}

/// Decides what happens after one ingest attempt: success; a permanent failure recorded in the lake
/// (no retry); a transient failure retried (SQS redelivers); or, at the last delivery, a transient failure
/// recorded as `FILE_NOT_AVAILABLE` and still failed, so SQS moves the message to the dead-letter queue.
pub async fn settle(
    deps: &Deps,
    req: &IngestRequest,
    source: Option<Arc<dyn dials_dqmio::ByteSource>>,
    url: &str,
    size: u64,
    result: Result<IngestReport, IngestError>,
    receive_count: u32,
) -> ObjectOutcome {
    match result {
        Ok(rep) if rep.commit_queued => {
            tracing::info!(object = %url, histograms = rep.histograms, seconds = rep.seconds, send_seconds = rep.commit_seconds, "QUEUED (its commits are made by the commit queue's consumer)");
            ObjectOutcome {
                object: url.to_string(),
                status: "QUEUED".into(),
                error: None,
                retry: false,
            }
        }
        Ok(rep) => {
            tracing::info!(object = %url, histograms = rep.histograms, seconds = rep.seconds, commit_seconds = rep.commit_seconds, commit_retries = rep.commit_retries, commit_rebases = rep.commit_rebases, commits_carried = rep.commits_carried, commits_handed = rep.commits_handed, bytes_read = rep.bytes_read, read_requests = rep.read_requests, lake_requests = ?rep.lake_requests, lake_requests_total = ?crate::store::requests(), "FINISHED");
            ObjectOutcome {
                object: url.to_string(),
                status: "FINISHED".into(),
                error: None,
                retry: false,
            }
        }
        Err(crate::ingest::IngestError::Superseded(why)) => {
            tracing::info!(object = %url, reason = %why, "superseded by a newer ingest of the same file; nothing to do");
            ObjectOutcome {
                object: url.to_string(),
                status: "SUPERSEDED".into(),
                error: None,
                retry: false,
            }
        }
        Err(e) => {
            let transient = e.is_transient();
            let give_up = transient && receive_count >= deps.max_receives;
            let (status, msg) = if give_up {
                ("FILE_NOT_AVAILABLE", format!("{e} (gave up after {receive_count} attempts; the message goes to the dead-letter queue)"))
            } else {
                (e.status(), e.to_string())
            };
            if !transient || give_up {
                match crate::ingest::record_failure(
                    &deps.lake,
                    &deps.workspaces,
                    req,
                    source,
                    size,
                    status,
                    &msg,
                )
                .await
                {
                    Ok(()) => {}
                    // A newer version of the file is in: its rows stay, this failure is not recorded.
                    Err(IngestError::Superseded(why)) => {
                        tracing::info!(object = %url, reason = %why, status, error = %msg, "failed, but superseded by a newer version of the same file; nothing recorded");
                        return ObjectOutcome {
                            object: url.to_string(),
                            status: "SUPERSEDED".into(),
                            error: None,
                            retry: false,
                        };
                    }
                    Err(e2) => {
                        tracing::error!(object = %url, error = %e2, "could not record the failure");
                    }
                }
            }
            tracing::warn!(object = %url, status, error = %msg, retry = transient, "ingest failed");
            ObjectOutcome {
                object: url.to_string(),
                status: status.into(),
                error: Some(msg),
                retry: transient,
            }
        }
    }
}

fn is_queued_commit(body: &Value) -> bool {
    body.get("dials").and_then(Value::as_str) == Some(crate::ingest::QUEUED_KIND)
}

/// Commits one queued commit (a message of the commit queue, [`crate::ingest::commit_queued`]),
/// then runs the extension's after-ingest hook and settles the file as its ingest would have
/// ([`settle`]: FINISHED; a newer version's rows stand; a failure recorded and retried, at the
/// last delivery recorded as `FILE_NOT_AVAILABLE`). Returns whether to retry the message. A
/// message this code cannot read is dropped (logged): retrying it cannot help.
async fn handle_queued(
    deps: &Deps,
    ext: Option<&dyn Extension>,
    body: Value,
    receive_count: u32,
    pending: Option<crate::committer::Pending>,
) -> bool {
    let message: crate::ingest::QueuedCommit = match serde_json::from_value(body) {
        Ok(m) => m,
        Err(e) => {
            tracing::error!(error = %e, "queued commit not readable; dropped");
            return false;
        }
    };
    let t0 = Instant::now();
    let result = crate::ingest::commit_queued(&deps.lake, &message, pending).await;
    let mut report = message.report.clone();
    report.commit_queued = false;
    report.commit_seconds = t0.elapsed().as_secs_f64();
    let url = message
        .source
        .as_ref()
        .map_or_else(|| report.logical_file_name.clone(), |s| s.name.clone());
    if result.is_ok() {
        if let Some(ext) = ext {
            ext.after_ingest(&report).await;
        }
    }
    let source = message
        .source
        .as_ref()
        .and_then(crate::ingest::QueuedSource::key_version);
    let req = IngestRequest {
        logical_file_name: report.logical_file_name.clone(),
        dataset: Some(report.dataset.clone()),
        deadline: None,
    };
    let size = report.file_size;
    settle(
        deps,
        &req,
        source,
        &url,
        size,
        result.map(|()| report),
        receive_count,
    )
    .await
    .retry
}

/// Handles a Lambda event: SQS (returns `{"batchItemFailures": [...]}` for messages to retry) or a
/// direct S3 notification (returns the outcomes; an error if any must be retried). Every attempt ends
/// by `deadline` if any (the Lambda passes its invocation's deadline through [`attempt_deadline`];
/// `dials worker` has none).
pub async fn handle_event(
    deps: &Deps,
    event: &Value,
    deadline: Option<Instant>,
) -> Result<Value, String> {
    handle_event_with(deps, None, event, deadline).await
}

/// As [`handle_event`], with an [`Extension`] (its objects, its messages, its after-ingest hook).
pub async fn handle_event_with(
    deps: &Deps,
    ext: Option<&dyn Extension>,
    event: &Value,
    deadline: Option<Instant>,
) -> Result<Value, String> {
    if event.get("dials").and_then(Value::as_str) == Some("maintain") {
        return maintain(deps, ext, event).await;
    }
    if let Some(messages) = sqs_messages(event) {
        // A batch's queued commits are all pending before any of them is committed: they share
        // one Delta transaction per table (`committer::Pending`).
        let mut pending: Vec<Option<crate::committer::Pending>> = messages
            .iter()
            .map(|m| {
                serde_json::from_str::<Value>(&m.body)
                    .ok()
                    .filter(is_queued_commit)
                    .map(|_| crate::committer::Pending::new())
            })
            .collect();
        // The messages of a batch run concurrently: their reading and decoding is bounded by the
        // process's decode slots (`ingest::limit_concurrent_decodes`, memory), and their commits
        // to each table share Delta transactions (`committer.rs`).
        let handled =
            futures::future::join_all(messages.iter().zip(pending.iter_mut()).map(|(m, guard)| {
                let guard = guard.take();
                async move {
                    let Ok(body) = serde_json::from_str::<Value>(&m.body) else {
                        tracing::warn!(message = %m.id, "message body is not JSON; dropped");
                        return None;
                    };
                    if is_queued_commit(&body) {
                        return handle_queued(deps, ext, body, m.receive_count, guard)
                            .await
                            .then(|| serde_json::json!({ "itemIdentifier": m.id }));
                    }
                    // Messages routed through SNS wrap the notification in "Message".
                    let body = match body
                        .get("Message")
                        .and_then(Value::as_str)
                        .and_then(|s| serde_json::from_str(s).ok())
                    {
                        Some(inner) => inner,
                        None => body,
                    };
                    let mut retry = false;
                    if let Some(own) = ext
                        .filter(|_| body.get("Records").is_none())
                        .and_then(|e| e.handle_message(&body))
                    {
                        retry = own.await;
                    }
                    for obj in objects_in_s3_event(&body) {
                        retry |= handle_object_with(deps, ext, &obj, m.receive_count, deadline)
                            .await
                            .retry;
                    }
                    retry.then(|| serde_json::json!({ "itemIdentifier": m.id }))
                }
            }))
            .await;
        let failures: Vec<Value> = handled.into_iter().flatten().collect();
        return Ok(serde_json::json!({ "batchItemFailures": failures }));
    }
    let mut outcomes = Vec::new();
    for obj in objects_in_s3_event(event) {
        outcomes.push(handle_object_with(deps, ext, &obj, 1, deadline).await);
    }
    if outcomes.iter().any(|o| o.retry) {
        return Err(serde_json::to_string(&outcomes).unwrap_or_default());
    }
    Ok(serde_json::json!({ "outcomes": outcomes }))
}

/// The scheduled maintenance (`{"dials": "maintain"}`, an EventBridge schedule in
/// sam-template.yaml): compacts every table of every workspace (the extension's tables too), then
/// vacuums what no snapshot of the last `retention_hours` (default 24, longer than any query or
/// ingest) needs.
async fn maintain(
    deps: &Deps,
    ext: Option<&dyn Extension>,
    event: &Value,
) -> Result<Value, String> {
    let names: Vec<String> = deps
        .workspaces
        .workspaces
        .iter()
        .map(|w| w.name.clone())
        .collect();
    let opts = crate::compact::CompactOptions::default();
    let mut compacted = crate::compact::compact_lake(&deps.lake, &names, opts)
        .await
        .map_err(|e| e.to_string())?;
    let extra = ext.map(Extension::tables).unwrap_or_default();
    for ws in &names {
        for (table, schema) in &extra {
            compacted.push(
                crate::compact::compact_table_as(&deps.lake, ws, table, schema, opts)
                    .await
                    .map_err(|e| e.to_string())?,
            );
        }
    }
    let hours = event
        .get("retention_hours")
        .and_then(Value::as_f64)
        .filter(|h| h.is_finite() && *h >= 0.0)
        .unwrap_or(24.0);
    let mut vacuumed = Vec::new();
    for ws in &names {
        let retention = Duration::from_secs_f64(hours * 3600.0);
        vacuumed.extend(
            crate::compact::vacuum(&deps.lake, ws, retention)
                .await
                .map_err(|e| e.to_string())?,
        );
        for (table, _) in &extra {
            vacuumed.extend(
                crate::compact::vacuum_table(&deps.lake, ws, table, retention)
                    .await
                    .map_err(|e| e.to_string())?,
            );
        }
    }
    // A warm instance goes on to ingest: compaction's buffers go back to the kernel instead of
    // staying in glibc's arenas for the rest of the instance's life.
    let released = dials_malloc::release_free();
    tracing::info!(
        released,
        merged = compacted.iter().map(|t| t.merged).sum::<usize>(),
        copies = compacted.iter().map(|t| t.copies).sum::<usize>(),
        deleted = vacuumed.iter().map(|t| t.deleted).sum::<usize>(),
        "maintenance done"
    );
    Ok(serde_json::json!({ "compacted": compacted, "vacuumed": vacuumed }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn attempts_end_before_the_invocation_does() {
        let now = Instant::now();
        let long = now + Duration::from_secs(900);
        assert_eq!(attempt_deadline(long), long - SETTLE_RESERVE);
        // Little time left: a third of it is kept for recording the outcome.
        let short = Instant::now() + Duration::from_secs(3);
        let d = attempt_deadline(short);
        assert!(
            d < short && d > short - Duration::from_millis(1100),
            "{:?}",
            short - d
        );
    }

    #[test]
    fn keys_decode_for_every_emulator() {
        assert_eq!(decode_key("a/b+c%2Bd.txt"), "a/b c+d.txt"); // AWS
        assert_eq!(decode_key("a/b%20c%2Bd.txt"), "a/b c+d.txt"); // LocalStack
        assert_eq!(decode_key("a%2Fb+c%2Bd.txt"), "a/b c+d.txt"); // moto
        assert_eq!(decode_key("bad%zz%2"), "bad%zz%2");
    }

    /// Counts what the handler gives an extension.
    #[derive(Default)]
    struct Probe {
        objects: std::sync::atomic::AtomicUsize,
        messages: std::sync::atomic::AtomicUsize,
    }

    impl Extension for Probe {
        fn after_ingest<'a>(&'a self, _report: &'a IngestReport) -> BoxFuture<'a, ()> {
            Box::pin(async {})
        }
        fn claims(&self, obj: &ObjectRef) -> bool {
            obj.key.ends_with("/model.json")
        }
        fn handle_object<'a>(&'a self, obj: &'a ObjectRef) -> BoxFuture<'a, ObjectOutcome> {
            self.objects
                .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            Box::pin(async move {
                ObjectOutcome {
                    object: obj.key.clone(),
                    status: "MODEL_READY".into(),
                    error: None,
                    retry: false,
                }
            })
        }
        fn handle_message<'a>(&'a self, body: &'a Value) -> Option<BoxFuture<'a, bool>> {
            if body.get("type").and_then(Value::as_str) != Some("probe") {
                return None;
            }
            self.messages
                .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            Some(Box::pin(async { true }))
        }
        fn tables(&self) -> Vec<(&'static str, arrow::datatypes::SchemaRef)> {
            vec![("probe_scores", probe_schema())]
        }
    }

    fn probe_schema() -> arrow::datatypes::SchemaRef {
        std::sync::Arc::new(arrow::datatypes::Schema::new(vec![
            arrow::datatypes::Field::new("v", arrow::datatypes::DataType::Int64, false),
        ]))
    }

    #[tokio::test]
    async fn maintenance_compacts_and_vacuums_an_extensions_tables() {
        use object_store::ObjectStoreExt;
        let dir =
            std::env::temp_dir().join(format!("dials-maint-{}", uuid::Uuid::new_v4().simple()));
        let lake = Location::parse(dir.to_str().expect("utf-8"), true).expect("lake");
        let mut t = crate::delta::open_or_create_table(
            &lake,
            "default",
            "probe_scores",
            &probe_schema(),
            &[],
        )
        .await
        .expect("table");
        // Ten one-row objects, committed one by one (as ten scored files).
        for i in 0..10i64 {
            let b = arrow::array::RecordBatch::try_new(
                probe_schema(),
                vec![std::sync::Arc::new(arrow::array::Int64Array::from(vec![i]))],
            )
            .expect("batch");
            let mut buf = Vec::new();
            let mut w = parquet::arrow::ArrowWriter::try_new(&mut buf, probe_schema(), None)
                .expect("writer");
            w.write(&b).expect("write");
            let meta = w.close().expect("close");
            let rel = format!("part-{i}.parquet");
            let size = buf.len() as u64;
            lake.store
                .put(
                    &crate::delta::store_path(&lake, "default", "probe_scores", &rel),
                    object_store::PutPayload::from(buf),
                )
                .await
                .expect("put");
            let add = crate::delta::add(rel, size, &[], Some(&meta));
            crate::delta::commit(
                &mut t,
                vec![deltalake_core::kernel::Action::Add(add)],
                None,
                &[],
            )
            .await
            .expect("commit");
        }
        let deps = Deps {
            lake: lake.clone(),
            workspaces: Workspaces::default(),
            default_dataset: None,
            max_receives: 3,
            commit_queue: None,
        };
        let event = serde_json::json!({"dials": "maintain", "retention_hours": 0});
        // Without the extension its table is not the lake's: left alone.
        let out = handle_event_with(&deps, None, &event, None)
            .await
            .expect("maintained");
        assert!(!out.to_string().contains("probe_scores"), "{out}");
        let out = handle_event_with(&deps, Some(&Probe::default()), &event, None)
            .await
            .expect("maintained");
        let compacted = out["compacted"]
            .as_array()
            .and_then(|a| a.iter().find(|t| t["table"] == "probe_scores"))
            .cloned()
            .expect("the extension's table compacted");
        assert_eq!(compacted["merged"], 1, "{compacted}");
        assert_eq!(compacted["inputs"], 10, "{compacted}");
        assert_eq!(compacted["objects_after"], 1, "{compacted}");
        let vacuumed = out["vacuumed"]
            .as_array()
            .and_then(|a| a.iter().find(|t| t["table"] == "probe_scores"))
            .cloned()
            .expect("the extension's table vacuumed");
        assert_eq!(vacuumed["deleted"], 10, "{vacuumed}");
        // What is left is the merged object, holding every row.
        let t = crate::delta::open(&lake, "default", "probe_scores")
            .await
            .expect("open")
            .expect("table");
        let active = crate::delta::active_files(&t).expect("files");
        assert_eq!(active.len(), 1);
        let bytes = std::fs::read(dir.join("default/probe_scores").join(&active[0].path))
            .expect("merged object");
        let rows: usize = parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(
            bytes::Bytes::from(bytes),
        )
        .expect("parquet")
        .build()
        .expect("reader")
        .map(|b| b.expect("batch").num_rows())
        .sum();
        assert_eq!(rows, 10);
        let left = std::fs::read_dir(dir.join("default/probe_scores"))
            .expect("dir")
            .count();
        assert_eq!(left, 2, "the merged object and _delta_log");
        let _ = std::fs::remove_dir_all(dir);
    }

    #[tokio::test]
    async fn an_extension_gets_its_objects_and_messages() {
        let dir = std::env::temp_dir().join(format!("dials-ext-{}", uuid::Uuid::new_v4().simple()));
        let deps = Deps {
            lake: Location::parse(dir.to_str().expect("utf-8"), true).expect("lake"),
            workspaces: Workspaces::default(),
            default_dataset: None,
            max_receives: 3,
            commit_queue: None,
        };
        let s3 = serde_json::json!({"Records":[{"eventName":"ObjectCreated:Put","s3":{"bucket":{"name":"lake"},"object":{"key":"p/ws/models/m/model.json"}}}]});
        let own = serde_json::json!({"type": "probe"});
        let other = serde_json::json!({"type": "unknown"});
        let sqs = serde_json::json!({"Records":[
            {"eventSource":"aws:sqs","messageId":"a","body":s3.to_string()},
            {"eventSource":"aws:sqs","messageId":"b","body":own.to_string()},
            {"eventSource":"aws:sqs","messageId":"c","body":other.to_string()},
        ]});
        let probe = Probe::default();
        let out = handle_event_with(&deps, Some(&probe), &sqs, None)
            .await
            .expect("handled");
        // The claimed object never reaches the ingest; the probe's message asks for a retry; the
        // unknown message is dropped as before.
        assert_eq!(
            out,
            serde_json::json!({"batchItemFailures": [{"itemIdentifier": "b"}]})
        );
        assert_eq!(probe.objects.load(std::sync::atomic::Ordering::SeqCst), 1);
        assert_eq!(probe.messages.load(std::sync::atomic::Ordering::SeqCst), 1);
        let _ = std::fs::remove_dir_all(dir);
    }

    #[test]
    fn sqs_and_direct_events_parse() {
        let s3 = serde_json::json!({"Records":[{"eventName":"ObjectCreated:Put","s3":{"bucket":{"name":"raw"},"object":{"key":"store/x+y.root","size":5}}}]});
        assert_eq!(
            objects_in_s3_event(&s3),
            vec![ObjectRef {
                bucket: "raw".into(),
                key: "store/x y.root".into(),
                size: Some(5),
                etag: None
            }]
        );
        let test_event =
            serde_json::json!({"Service":"Amazon S3","Event":"s3:TestEvent","Bucket":"raw"});
        assert!(objects_in_s3_event(&test_event).is_empty());
        let sqs = serde_json::json!({"Records":[{"eventSource":"aws:sqs","messageId":"m1","body":s3.to_string(),"attributes":{"ApproximateReceiveCount":"2"}}]});
        let m = sqs_messages(&sqs).unwrap();
        assert_eq!(m[0].receive_count, 2);
        assert!(sqs_messages(&s3).is_none());
    }
}
