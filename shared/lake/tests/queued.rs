//! Queued commits (`ingest::ingest_queued`, `ingest::commit_queued`): an ingest that sends its
//! commits to a queue leaves nothing of its rows in any table; the queue's consumer (the same
//! handler, given the messages as SQS records) commits them exactly once, batched, idempotently
//! on redelivery, and fenced by the file's generation like an ingest's own commits.

mod common;

use std::sync::{Arc, Mutex};

use arrow::array::AsArray;
use common::{fixtures, lfn, read_table, scratch};
use dials_dqmio::{MemSource, SourceVersion};
use dials_lake::events::{handle_event, Deps};
use dials_lake::ingest::{CommitQueue, QueuedCommit};
use dials_lake::{ingest, ingest_queued, IngestError, IngestRequest, Location, Workspaces};
use serde_json::{json, Value};

/// A queue that keeps what is sent (used by every ingest given it).
#[derive(Debug, Default)]
struct Captured(Mutex<Vec<(String, String)>>);

impl Captured {
    /// The message bodies sent so far.
    fn bodies(&self) -> Vec<String> {
        self.0
            .lock()
            .expect("sent")
            .iter()
            .map(|(b, _)| b.clone())
            .collect()
    }
}

impl CommitQueue for Captured {
    fn send<'a>(
        &'a self,
        body: String,
        dedup: String,
    ) -> futures::future::BoxFuture<'a, Result<(), String>> {
        Box::pin(async move {
            self.0
                .lock()
                .map_err(|e| e.to_string())?
                .push((body, dedup));
            Ok(())
        })
    }
}

fn source(name: &str, modified_ms: i64) -> Arc<MemSource> {
    let bytes = std::fs::read(fixtures().join("small_lz4.root")).expect("fixture");
    Arc::new(MemSource::new(name, bytes).with_version(SourceVersion {
        modified_ms,
        etag: format!("\"{name}-{modified_ms}\""),
    }))
}

fn request(i: usize) -> IngestRequest {
    IngestRequest {
        logical_file_name: lfn(i),
        dataset: None,
        deadline: None,
    }
}

/// The messages as the SQS records Lambda (and `dials worker`) hands the handler.
fn sqs_event(bodies: &[String], receive_count: u32) -> Value {
    let records: Vec<Value> = bodies
        .iter()
        .enumerate()
        .map(|(i, b)| {
            json!({
                "messageId": format!("m{i}"),
                "body": b,
                "attributes": { "ApproximateReceiveCount": receive_count.to_string() },
                "eventSource": "aws:sqs",
            })
        })
        .collect();
    json!({ "Records": records })
}

fn th1_rows(dir: &std::path::Path) -> usize {
    read_table(&dir.join("default/th1"))
        .iter()
        .map(|(_, b)| b.num_rows())
        .sum()
}

/// `file_index` records: (file id, status).
fn records(dir: &std::path::Path) -> Vec<(i64, String)> {
    let mut out = Vec::new();
    for (_, b) in read_table(&dir.join("default/file_index")) {
        let ids = b
            .column_by_name("file_id")
            .expect("file_id")
            .as_primitive::<arrow::datatypes::Int64Type>()
            .clone();
        let status = b
            .column_by_name("status")
            .expect("status")
            .as_string::<i32>()
            .clone();
        for i in 0..b.num_rows() {
            out.push((ids.value(i), status.value(i).to_string()));
        }
    }
    out.sort();
    out
}

fn log_entries(table: &std::path::Path) -> usize {
    std::fs::read_dir(table.join("_delta_log"))
        .map(|d| {
            d.flatten()
                .filter(|e| e.file_name().to_string_lossy().ends_with(".json"))
                .count()
        })
        .unwrap_or(0)
}

fn deps(lake: &Location) -> Deps {
    Deps {
        lake: lake.clone(),
        workspaces: Workspaces::default(),
        default_dataset: None,
        max_receives: 3,
        commit_queue: None,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn queued_commits_land_once_batched_and_idempotent() {
    let dir = scratch("queued");
    let lake = Location::parse(dir.to_str().expect("utf8"), true).expect("lake");
    let ws = Workspaces::default();
    let queue = Captured::default();
    const FILES: usize = 6;
    let mut per_file = 0;
    for i in 0..FILES {
        let rep = ingest_queued(
            &lake,
            &ws,
            &request(i),
            source(&lfn(i), 1_733_000_000_000 + i as i64),
            None,
            Some(&queue),
        )
        .await
        .expect("ingest");
        assert!(rep.commit_queued, "the report says the commits were queued");
        per_file = rep.workspaces[0].th1_rows as usize;
    }
    assert!(per_file > 0);
    let sent: Vec<(String, String)> = queue.0.lock().expect("sent").clone();
    assert_eq!(sent.len(), FILES, "one message per file");
    // Nothing of the files' rows is in any table yet; each file is only STARTED.
    assert_eq!(th1_rows(&dir), 0, "no row before the queue is consumed");
    let before = records(&dir);
    assert_eq!(before.len(), FILES);
    assert!(before.iter().all(|(_, s)| s == "STARTED"), "{before:?}");
    for (body, dedup) in &sent {
        let m: QueuedCommit = serde_json::from_str(body).expect("a queued commit");
        assert!(dedup.starts_with(&format!("{}-{}-", m.file_id, m.generation)));
        assert!(m.workspaces[0].tables.contains_key("th1"));
    }
    // The consumer: one batch of all the messages.
    let bodies: Vec<String> = sent.iter().map(|(b, _)| b.clone()).collect();
    let out = handle_event(&deps(&lake), &sqs_event(&bodies, 1), None)
        .await
        .expect("handled");
    assert_eq!(out["batchItemFailures"], json!([]), "{out}");
    assert_eq!(
        th1_rows(&dir),
        FILES * per_file,
        "every file's rows exactly once"
    );
    let after = records(&dir);
    assert_eq!(after.len(), FILES);
    assert!(after.iter().all(|(_, s)| s == "FINISHED"), "{after:?}");
    // The batch shared one th1 commit (the table's creation aside).
    let th1 = dir.join("default/th1");
    let entries = log_entries(&th1);
    assert!(entries <= 2, "{entries} th1 log entries for one batch");
    // Delivered again (a consumer that died after committing): nothing changes, nothing fails.
    let out = handle_event(&deps(&lake), &sqs_event(&bodies, 2), None)
        .await
        .expect("handled again");
    assert_eq!(out["batchItemFailures"], json!([]), "{out}");
    assert_eq!(th1_rows(&dir), FILES * per_file);
    assert_eq!(
        log_entries(&th1),
        entries,
        "a redelivered batch commits nothing"
    );
    assert_eq!(records(&dir), after);
    // A second attempt of file 0 (its message redelivered to the ingest: same version, new
    // objects), queued and committed: still one copy of its rows.
    let q2 = Captured::default();
    ingest_queued(
        &lake,
        &ws,
        &request(0),
        source(&lfn(0), 1_733_000_000_000),
        None,
        Some(&q2),
    )
    .await
    .expect("second attempt");
    let out = handle_event(&deps(&lake), &sqs_event(&q2.bodies(), 1), None)
        .await
        .expect("handled");
    assert_eq!(out["batchItemFailures"], json!([]), "{out}");
    assert_eq!(
        th1_rows(&dir),
        FILES * per_file,
        "the second attempt replaced the first"
    );
    assert!(records(&dir).iter().all(|(_, s)| s == "FINISHED"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_queued_commit_of_an_older_version_never_replaces_a_newer_one() {
    let dir = scratch("queued-fence");
    let lake = Location::parse(dir.to_str().expect("utf8"), true).expect("lake");
    let ws = Workspaces::default();
    let queue = Captured::default();
    // The older version is read and queued; then the newer one is ingested and committed.
    let old = ingest_queued(
        &lake,
        &ws,
        &request(7),
        source(&lfn(7), 1_733_000_000_000),
        None,
        Some(&queue),
    )
    .await
    .expect("older, queued");
    let new = ingest(
        &lake,
        &ws,
        &request(7),
        source(&lfn(7), 1_733_000_999_000),
        None,
    )
    .await
    .expect("newer, committed");
    assert!(old.commit_queued && !new.commit_queued);
    let rows = th1_rows(&dir);
    assert_eq!(rows, new.workspaces[0].th1_rows as usize);
    let objects_before = common::committed(&dir.join("default/th1"));
    // The older version's message arrives late: superseded, not retried, nothing changes.
    let bodies = queue.bodies();
    let message: QueuedCommit = serde_json::from_str(&bodies[0]).expect("queued");
    let direct = dials_lake::ingest::commit_queued(&lake, &message, None).await;
    assert!(
        matches!(direct, Err(IngestError::Superseded(_))),
        "{direct:?}"
    );
    let out = handle_event(&deps(&lake), &sqs_event(&bodies, 1), None)
        .await
        .expect("handled");
    assert_eq!(out["batchItemFailures"], json!([]), "{out}");
    assert_eq!(common::committed(&dir.join("default/th1")), objects_before);
    assert_eq!(records(&dir), vec![(new.file_id, "FINISHED".to_string())]);
    // A message that is no queued commit of this code's is dropped, not retried forever.
    let bad = vec![json!({ "dials": "commit", "file_id": "x" }).to_string()];
    let out = handle_event(&deps(&lake), &sqs_event(&bad, 1), None)
        .await
        .expect("handled");
    assert_eq!(out["batchItemFailures"], json!([]), "{out}");
}
