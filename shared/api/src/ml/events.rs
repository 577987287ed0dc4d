//! The ML side of the ingest function's events (issue 11), plugged into the lake's handler as a
//! [`dials_lake::events::Extension`] by the ingest function and `dials worker`:
//! - after every successful ingest, the active models score the file's lumisections
//!   ([`dials_ml::hook::after_ingest`]; models loaded once per process and kept);
//! - a model folder dropped under a workspace's models prefix,
//!   `<lake>/<workspace>/models/<name>/model.onnx` then `…/<name>/model.json` (the upload's
//!   trigger), is registered as the next revision of `<name>` (validated; `ready: false` with the
//!   reason when a check fails), the dropped objects are deleted, and a ready, active model is
//!   backfilled;
//! - a replaced revision document, `<lake>/<workspace>/models/<name>/<revision>/model.json`, is
//!   checked again (identity fields from its path, `ready`/`reason` recomputed) and written back
//!   only when that changed something (so the write's own event ends there);
//! - backfill fans out one queue message per run ([`BackfillRun`]) when a queue is given (AWS),
//!   threads in the process otherwise; each message re-scores one whole run, idempotently.

use std::sync::Arc;

use futures::future::BoxFuture;
use object_store::ObjectStoreExt;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use dials_lake::config::Workspaces;
use dials_lake::events::{Extension, ObjectOutcome, ObjectRef};
use dials_lake::ingest::IngestReport;
use dials_lake::Location;
use dials_ml::registry::{self, ModelCache};
use dials_ml::results::Batch;
use dials_ml::{ModelDoc, Tag};

use crate::engine::Engine;
use crate::ml::jobs::{self, JobError, Registration};

/// `type` of a backfill message.
pub const BACKFILL: &str = "dials.ml.backfill";

/// One run of a backfill: a queue message body (JSON).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BackfillRun {
    /// Always [`BACKFILL`].
    #[serde(rename = "type")]
    pub kind: String,
    /// Workspace.
    pub workspace: String,
    /// Model name.
    pub model: String,
    /// Model revision (a message for a replaced revision still scores that revision).
    pub revision: i64,
    /// Run.
    pub run: i64,
}

/// Sends backfill messages (one per run) to the queue the ingest function reads.
pub type RunQueue =
    Arc<dyn Fn(Vec<BackfillRun>) -> BoxFuture<'static, Result<(), String>> + Send + Sync>;

/// What an object under the lake is to the registry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ModelObject {
    /// `<ws>/models/<name>/model.json`: a dropped model folder to register.
    Upload {
        /// Workspace.
        workspace: String,
        /// Model name.
        name: String,
    },
    /// `<ws>/models/<name>/<revision>/model.json`: a revision's document, replaced.
    Document {
        /// Workspace.
        workspace: String,
        /// Model name.
        name: String,
        /// Revision.
        revision: i64,
    },
}

/// The registry object `key` (relative to the lake's prefix) names, if any.
pub fn model_object(rel: &str) -> Option<ModelObject> {
    let parts: Vec<&str> = rel.split('/').collect();
    match parts.as_slice() {
        [ws, models, name, doc]
            if *models == registry::MODELS
                && *doc == registry::DOC
                && dials_ml::model::valid_name(name) =>
        {
            Some(ModelObject::Upload {
                workspace: ws.to_string(),
                name: name.to_string(),
            })
        }
        [ws, models, name, rev, doc]
            if *models == registry::MODELS
                && *doc == registry::DOC
                && dials_ml::model::valid_name(name) =>
        {
            let revision = rev.parse().ok().filter(|r: &i64| *r > 0)?;
            Some(ModelObject::Document {
                workspace: ws.to_string(),
                name: name.to_string(),
                revision,
            })
        }
        _ => None,
    }
}

/// The document a dropped model folder carries (`model.json`): the fields of `dials ml register`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Upload {
    /// Input ME paths, one per ONNX input in order.
    #[serde(default)]
    pub inputs: Vec<String>,
    /// Mode A: the output giving the score …
    #[serde(default)]
    pub metric_key: Option<String>,
    /// … and the threshold above which a lumisection is anomalous.
    #[serde(default)]
    pub anomaly_threshold: Option<f64>,
    /// Mode B: the output that is the model's own flag.
    #[serde(default)]
    pub flagging_key: Option<String>,
    /// Description.
    #[serde(default)]
    pub description: String,
    /// Tags.
    #[serde(default)]
    pub tags: Vec<Tag>,
    /// Scores on ingest (default true).
    #[serde(default = "yes")]
    pub active: bool,
    /// Who registers (default: `s3-upload`).
    #[serde(default)]
    pub created_by: Option<String>,
}

fn yes() -> bool {
    true
}

/// The ML extension of the ingest handler.
pub struct MlEvents {
    lake: Location,
    workspaces: Workspaces,
    cache: Arc<ModelCache>,
    engine: tokio::sync::OnceCell<Engine>,
    queue: Option<RunQueue>,
    threads: usize,
}

impl MlEvents {
    /// The extension over `lake`; `queue` fans backfills out (none: `threads` runs at a time here).
    pub fn new(
        lake: Location,
        workspaces: Workspaces,
        queue: Option<RunQueue>,
        threads: usize,
    ) -> Self {
        MlEvents {
            lake,
            workspaces,
            cache: Arc::new(ModelCache::default()),
            engine: tokio::sync::OnceCell::new(),
            queue,
            threads: threads.max(1),
        }
    }

    /// The query engine over the lake, made on first use (registration and backfill read committed
    /// data through it; scoring on ingest does not need it).
    pub async fn engine(&self) -> Result<&Engine, JobError> {
        self.engine
            .get_or_try_init(|| Engine::new(&self.lake, self.workspaces.clone()))
            .await
            .map_err(JobError::Lake)
    }

    /// The object's path relative to the lake, if it is in the lake's bucket and under its prefix.
    fn relative<'a>(&self, obj: &'a ObjectRef) -> Option<&'a str> {
        let rest = self.lake.url.strip_prefix("s3://")?;
        let (bucket, _) = rest.split_once('/').unwrap_or((rest, ""));
        if bucket != obj.bucket {
            return None;
        }
        let prefix = self.lake.path.as_ref();
        if prefix.is_empty() {
            Some(obj.key.as_str())
        } else {
            obj.key.strip_prefix(prefix)?.strip_prefix('/')
        }
    }

    fn known(&self, o: &ModelObject) -> bool {
        let ws = match o {
            ModelObject::Upload { workspace, .. } | ModelObject::Document { workspace, .. } => {
                workspace
            }
        };
        self.workspaces.get(ws).is_some()
    }

    /// Registers a dropped model folder as the next revision of its name (validation failures give
    /// `ready: false` with the reason), deletes the dropped objects, and backfills a ready, active
    /// model. `Err` only when the lake fails (the message is retried).
    pub async fn register_upload(&self, ws: &str, name: &str) -> Result<ModelDoc, JobError> {
        let engine = self.engine().await?;
        let doc_key = self
            .lake
            .child(&[ws, registry::MODELS, name, registry::DOC]);
        let onnx_key = self
            .lake
            .child(&[ws, registry::MODELS, name, registry::ONNX]);
        let text = match self.lake.store.get(&doc_key).await {
            Ok(g) => g.bytes().await.map_err(dials_ml::MlError::from)?,
            Err(object_store::Error::NotFound { .. }) => {
                return Err(JobError::Usage(format!(
                    "{doc_key}: gone (registered by an earlier delivery of this event?)"
                )));
            }
            Err(e) => return Err(dials_ml::MlError::from(e).into()),
        };
        let mut problems = Vec::new();
        let upload = match serde_json::from_slice::<Upload>(&text) {
            Ok(u) => Some(u),
            Err(e) => {
                problems.push(format!("model.json of the upload is not valid: {e}"));
                None
            }
        };
        let onnx = match self.lake.store.get(&onnx_key).await {
            Ok(g) => g.bytes().await.map_err(dials_ml::MlError::from)?.to_vec(),
            Err(object_store::Error::NotFound { .. }) => {
                problems
                    .push("model.onnx is missing beside model.json (upload it first)".to_string());
                Vec::new()
            }
            Err(e) => return Err(dials_ml::MlError::from(e).into()),
        };
        let u = upload.clone().unwrap_or(Upload {
            inputs: Vec::new(),
            metric_key: None,
            anomaly_threshold: None,
            flagging_key: None,
            description: String::new(),
            tags: Vec::new(),
            active: true,
            created_by: None,
        });
        let mut doc = jobs::register(
            engine,
            Registration {
                workspace: ws.to_string(),
                name: name.to_string(),
                onnx,
                filename: registry::ONNX.into(),
                inputs: u.inputs,
                metric_key: u.metric_key,
                threshold: u.anomaly_threshold,
                flagging_key: u.flagging_key,
                description: u.description,
                tags: u.tags,
                active: u.active,
                user: u.created_by.unwrap_or_else(|| "s3-upload".into()),
            },
        )
        .await?;
        if !problems.is_empty() {
            // The upload's own problems come first: they explain the checks that followed.
            problems.extend(doc.reason.take());
            doc.ready = false;
            doc.reason = Some(problems.join("; "));
            registry::put_doc(&self.lake, &doc).await?;
        }
        for k in [&doc_key, &onnx_key] {
            match self.lake.store.delete(k).await {
                Ok(()) | Err(object_store::Error::NotFound { .. }) => {}
                Err(e) => {
                    tracing::warn!(object = %k, error = %e, "dropped model object not deleted")
                }
            }
        }
        tracing::info!(workspace = ws, model = %doc.label(), ready = doc.ready, reason = ?doc.reason, "model registered from an upload");
        if doc.ready && doc.active {
            self.backfill(&doc).await?;
        }
        Ok(doc)
    }

    /// Checks a replaced revision document again; writes it back when the identity fields (from
    /// its path), `ready`, `reason` or the signatures change. Returns the document and whether it
    /// was written.
    pub async fn recheck_document(
        &self,
        ws: &str,
        name: &str,
        revision: i64,
    ) -> Result<Option<(ModelDoc, bool)>, JobError> {
        let key = self.lake.child(&[
            ws,
            registry::MODELS,
            name,
            &revision.to_string(),
            registry::DOC,
        ]);
        let text = match self.lake.store.get(&key).await {
            Ok(g) => g.bytes().await.map_err(dials_ml::MlError::from)?,
            Err(object_store::Error::NotFound { .. }) => return Ok(None),
            Err(e) => return Err(dials_ml::MlError::from(e).into()),
        };
        let before: ModelDoc = match serde_json::from_slice(&text) {
            Ok(d) => d,
            Err(e) => {
                // Not a document at all: the registry lists it nowhere (and says so in its log).
                tracing::warn!(object = %key, error = %e, "replaced model document is not valid JSON of a model; it is left out of the registry");
                return Ok(None);
            }
        };
        let mut doc = before.clone();
        doc.workspace = ws.to_string();
        doc.name = name.to_string();
        doc.revision = revision;
        doc.id = dials_ml::model::model_id(ws, name, revision);
        let engine = self.engine().await?;
        match registry::get_onnx(&self.lake, &doc).await {
            Ok(onnx) => jobs::check(engine, &mut doc, &onnx).await?,
            Err(dials_ml::MlError::Store(object_store::Error::NotFound { .. })) => {
                doc.ready = false;
                doc.reason = Some(format!("{} has no model.onnx", doc.label()));
            }
            Err(e) => return Err(e.into()),
        }
        if doc == before {
            return Ok(Some((doc, false)));
        }
        doc.modified_at = dials_lake::tables::now_rfc3339();
        registry::put_doc(&self.lake, &doc).await?;
        tracing::info!(workspace = ws, model = %doc.label(), ready = doc.ready, reason = ?doc.reason, "replaced model document checked and rewritten");
        Ok(Some((doc, true)))
    }

    /// Backfills `doc`: one message per run when a queue is set, else the runs here (`threads` at a time).
    pub async fn backfill(&self, doc: &ModelDoc) -> Result<usize, JobError> {
        let engine = self.engine().await?;
        let runs = jobs::backfill_runs(engine, doc, None, None).await?;
        let n = runs.len();
        match &self.queue {
            Some(q) => {
                let msgs = runs
                    .into_iter()
                    .map(|run| BackfillRun {
                        kind: BACKFILL.into(),
                        workspace: doc.workspace.clone(),
                        model: doc.name.clone(),
                        revision: doc.revision,
                        run,
                    })
                    .collect();
                q(msgs).await.map_err(JobError::Usage)?;
                tracing::info!(model = %doc.label(), runs = n, "backfill fanned out, one queue message per run");
            }
            None => {
                let statuses = jobs::backfill(
                    engine,
                    &self.cache,
                    &doc.workspace,
                    &doc.name,
                    None,
                    Some(&runs),
                    self.threads,
                )
                .await?;
                let failed = statuses.iter().filter(|s| s.status != "OK").count();
                tracing::info!(model = %doc.label(), runs = n, failed, "backfill done here");
            }
        }
        Ok(n)
    }

    /// Scores one run of a backfill (a queue message). `Err`: the lake failed (retry).
    pub async fn backfill_run(
        &self,
        m: &BackfillRun,
    ) -> Result<Option<registry::RunStatus>, JobError> {
        let docs = registry::list(&self.lake, &m.workspace).await?;
        let Some(doc) = docs
            .into_iter()
            .find(|d| d.name == m.model && d.revision == m.revision)
        else {
            tracing::warn!(workspace = %m.workspace, model = %m.model, revision = m.revision, "backfill message for a model that is not registered; dropped");
            return Ok(None);
        };
        if !doc.ready {
            tracing::warn!(model = %doc.label(), "backfill message for a model that is not ready; dropped");
            return Ok(None);
        }
        let engine = self.engine().await?;
        Ok(Some(
            jobs::score_run(engine, &self.cache, &doc, m.run, None, Batch::Run).await?,
        ))
    }

    fn outcome(obj: &ObjectRef, status: &str, error: Option<String>, retry: bool) -> ObjectOutcome {
        ObjectOutcome {
            object: format!("s3://{}/{}", obj.bucket, obj.key),
            status: status.into(),
            error,
            retry,
        }
    }
}

/// Sends backfill messages in batches of ten (SQS's limit); a batch with a failed entry fails the
/// call, so the registration's message is retried (re-sent runs are re-scored idempotently).
pub fn sqs_queue(client: aws_sdk_sqs::Client, url: String) -> RunQueue {
    Arc::new(move |msgs: Vec<BackfillRun>| {
        let (client, url) = (client.clone(), url.clone());
        Box::pin(async move {
            for chunk in msgs.chunks(10) {
                let mut entries = Vec::new();
                for (i, m) in chunk.iter().enumerate() {
                    let body = serde_json::to_string(m).map_err(|e| e.to_string())?;
                    entries.push(
                        aws_sdk_sqs::types::SendMessageBatchRequestEntry::builder()
                            .id(i.to_string())
                            .message_body(body)
                            .build()
                            .map_err(|e| e.to_string())?,
                    );
                }
                let out = client
                    .send_message_batch()
                    .queue_url(&url)
                    .set_entries(Some(entries))
                    .send()
                    .await
                    .map_err(|e| {
                        format!(
                            "send to {url}: {}",
                            aws_sdk_sqs::error::DisplayErrorContext(&e)
                        )
                    })?;
                if let Some(f) = out.failed().first() {
                    return Err(format!(
                        "send to {url}: {} message(s) refused, first: {:?}",
                        out.failed().len(),
                        f.message()
                    ));
                }
            }
            Ok::<(), String>(())
        }) as futures::future::BoxFuture<'static, Result<(), String>>
    })
}

impl Extension for MlEvents {
    fn after_ingest<'a>(&'a self, report: &'a IngestReport) -> BoxFuture<'a, ()> {
        Box::pin(async move {
            let t = std::time::Instant::now();
            let scored = dials_ml::hook::after_ingest(&self.lake, report, &self.cache).await;
            for (w, model, st) in &scored {
                tracing::info!(workspace = %w, model, run = st.run_number, status = %st.status, scored = st.scored, error = ?st.error, "ML scoring");
            }
            if !scored.is_empty() {
                tracing::info!(
                    file_id = report.file_id,
                    seconds = t.elapsed().as_secs_f64(),
                    "ML hook done"
                );
            }
        })
    }

    fn claims(&self, obj: &ObjectRef) -> bool {
        self.relative(obj).and_then(model_object).is_some()
    }

    fn handle_object<'a>(&'a self, obj: &'a ObjectRef) -> BoxFuture<'a, ObjectOutcome> {
        Box::pin(async move {
            let Some(what) = self.relative(obj).and_then(model_object) else {
                return Self::outcome(obj, "IGNORED", None, false);
            };
            if !self.known(&what) {
                tracing::warn!(object = %obj.key, "model object of a workspace not in the config; ignored");
                return Self::outcome(
                    obj,
                    "IGNORED",
                    Some("workspace not in the config".into()),
                    false,
                );
            }
            let r = match &what {
                ModelObject::Upload { workspace, name } => {
                    self.register_upload(workspace, name).await.map(|d| d.ready)
                }
                ModelObject::Document {
                    workspace,
                    name,
                    revision,
                } => self
                    .recheck_document(workspace, name, *revision)
                    .await
                    .map(|d| d.is_some_and(|(d, _)| d.ready)),
            };
            match r {
                Ok(ready) => Self::outcome(
                    obj,
                    if ready {
                        "MODEL_READY"
                    } else {
                        "MODEL_NOT_READY"
                    },
                    None,
                    false,
                ),
                Err(JobError::Usage(m)) => {
                    tracing::warn!(object = %obj.key, error = %m, "model object not handled");
                    Self::outcome(obj, "IGNORED", Some(m), false)
                }
                Err(e) => {
                    tracing::warn!(object = %obj.key, error = %e, "model object failed; retried");
                    Self::outcome(obj, "RETRY", Some(e.to_string()), true)
                }
            }
        })
    }

    fn tables(&self) -> Vec<(&'static str, arrow::datatypes::SchemaRef)> {
        vec![(dials_ml::results::TABLE, dials_ml::results::schema())]
    }

    fn handle_message<'a>(&'a self, body: &'a Value) -> Option<BoxFuture<'a, bool>> {
        if body.get("type").and_then(Value::as_str) != Some(BACKFILL) {
            return None;
        }
        Some(Box::pin(async move {
            let m: BackfillRun = match serde_json::from_value(body.clone()) {
                Ok(m) => m,
                Err(e) => {
                    tracing::warn!(error = %e, "malformed backfill message; dropped");
                    return false;
                }
            };
            match self.backfill_run(&m).await {
                Ok(st) => {
                    if let Some(st) = st {
                        tracing::info!(model = %m.model, revision = m.revision, run = m.run, status = %st.status, scored = st.scored, error = ?st.error, "backfill run");
                    }
                    false
                }
                Err(JobError::Usage(e)) => {
                    tracing::warn!(run = m.run, error = %e, "backfill run not done; dropped");
                    false
                }
                Err(e) => {
                    tracing::warn!(run = m.run, error = %e, "backfill run failed; retried");
                    true
                }
            }
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn model_objects_by_path() {
        assert_eq!(
            model_object("trk/models/ae/model.json"),
            Some(ModelObject::Upload {
                workspace: "trk".into(),
                name: "ae".into()
            })
        );
        assert_eq!(
            model_object("trk/models/ae/3/model.json"),
            Some(ModelObject::Document {
                workspace: "trk".into(),
                name: "ae".into(),
                revision: 3
            })
        );
        assert_eq!(model_object("trk/models/ae/model.onnx"), None);
        assert_eq!(model_object("trk/models/ae/3/runs/1.json"), None);
        assert_eq!(model_object("trk/models/ae/x/model.json"), None);
        assert_eq!(model_object("trk/models/../model.json"), None);
        assert_eq!(model_object("trk/th1/run_number=1/model.json"), None);
    }

    #[test]
    fn backfill_messages_round_trip() {
        let m = BackfillRun {
            kind: BACKFILL.into(),
            workspace: "w".into(),
            model: "m".into(),
            revision: 2,
            run: 7,
        };
        let v = serde_json::to_value(&m).expect("json");
        assert_eq!(v["type"], BACKFILL);
        assert_eq!(serde_json::from_value::<BackfillRun>(v).expect("back"), m);
    }
}
