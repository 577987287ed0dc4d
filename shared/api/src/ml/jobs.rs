//! What the command line (and the ingest hook) does with models: register with validation,
//! update without re-running, score one run (or one file's part of it), backfill.

use std::collections::BTreeMap;
use std::sync::Arc;

use futures::StreamExt;

use dials_lake::Location;
use dials_ml::model::{model_id, valid_name};
use dials_ml::registry::{self, ModelCache, RunStatus};
use dials_ml::results::{self, Batch};
use dials_ml::{InputMe, MeRows, MlError, ModelDoc, RunInput, Tag};

use crate::engine::Engine;
use crate::error::ApiError;
use crate::ml::source::{self, MeInfo};

/// Errors of the ML jobs.
#[derive(Debug, thiserror::Error)]
pub enum JobError {
    /// The ML layer failed (registry I/O, a model).
    #[error("{0}")]
    Ml(#[from] MlError),
    /// Reading the lake through the engine failed.
    #[error("{0}")]
    Lake(#[from] ApiError),
    /// A request that cannot be carried out as given.
    #[error("{0}")]
    Usage(String),
}

/// What `dials ml register` gives.
#[derive(Debug, Clone)]
pub struct Registration {
    /// Workspace.
    pub workspace: String,
    /// Model name.
    pub name: String,
    /// The ONNX file's bytes.
    pub onnx: Vec<u8>,
    /// The ONNX file's name.
    pub filename: String,
    /// Input ME paths, in the ONNX inputs' order.
    pub inputs: Vec<String>,
    /// Mode A: metric output and threshold.
    pub metric_key: Option<String>,
    /// Mode A threshold.
    pub threshold: Option<f64>,
    /// Mode B: flag output.
    pub flagging_key: Option<String>,
    /// Description.
    pub description: String,
    /// Tags.
    pub tags: Vec<Tag>,
    /// Active on registration.
    pub active: bool,
    /// Who registers.
    pub user: String,
}

/// The per-lumisection shapes a document's inputs take (empty when unknown).
fn tails(doc: &ModelDoc) -> Vec<Vec<usize>> {
    doc.input_signature
        .iter()
        .map(|i| {
            i.dims
                .iter()
                .skip(1)
                .map(|d| (*d).max(0) as usize)
                .collect()
        })
        .collect()
}

/// Registers a new revision of `r.name`: writes the ONNX file, validates the model against the
/// lake (inputs exist, dims match a sample, the model runs on one lumisection and gives the keyed
/// outputs) and writes the document, `ready: false` with the reason when a check fails. Earlier
/// revisions are set inactive (only the latest revision of a name scores new data).
pub async fn register(engine: &Engine, r: Registration) -> Result<ModelDoc, JobError> {
    if !valid_name(&r.name) {
        return Err(JobError::Usage(format!(
            "model name '{}' must be [A-Za-z0-9_.-]+",
            r.name
        )));
    }
    let lake = &engine.lake;
    let ws = r.workspace.clone();
    let all = registry::list(lake, &ws).await?;
    let revision = all
        .iter()
        .filter(|d| d.name == r.name)
        .map(|d| d.revision)
        .max()
        .unwrap_or(0)
        + 1;
    let now = dials_lake::tables::now_rfc3339();
    let mut doc = ModelDoc {
        id: model_id(&ws, &r.name, revision),
        name: r.name.clone(),
        revision,
        ready: false,
        active: r.active,
        kind: "onnx".into(),
        anomaly_threshold: r.threshold,
        builtin_threshold: r.flagging_key.is_some() && r.threshold.is_none(),
        description: r.description.clone(),
        flagging_key: r.flagging_key.clone(),
        input_signature: Vec::new(),
        metric_key: r.metric_key.clone(),
        output_signature: Vec::new(),
        tags: Some(r.tags.clone()),
        isvc_service_name: None,
        isvc_yaml: None,
        created_by: r.user.clone(),
        modified_by: r.user.clone(),
        created_at: now.clone(),
        modified_at: now,
        reason: None,
        workspace: ws.clone(),
        filename: r.filename.clone(),
    };
    doc.input_signature = r
        .inputs
        .iter()
        .enumerate()
        .map(|(i, me)| input_me(i, me))
        .collect();
    check(engine, &mut doc, &r.onnx).await?;
    registry::put_onnx(lake, &ws, &doc.name, revision, r.onnx).await?;
    registry::put_doc(lake, &doc).await?;
    for mut old in all.into_iter().filter(|d| d.name == r.name && d.active) {
        old.active = false;
        old.modified_by = r.user.clone();
        old.modified_at = dials_lake::tables::now_rfc3339();
        registry::put_doc(lake, &old).await?;
    }
    Ok(doc)
}

fn input_me(i: usize, me: &str) -> InputMe {
    InputMe {
        name: format!("input_{i}"),
        me: me.to_string(),
        me_id: dials_lake::ids::me_id(me),
        dim: 0,
        dims: Vec::new(),
        data_type: "float32".into(),
    }
}

/// The registration checks, on `doc` as it stands (its input MEs by path, its threshold mode) and
/// the ONNX file: every input ME is in the workspace (its id, dimension and dims are taken from
/// the lake), exactly one threshold mode, and the model loads and runs on one lumisection of real
/// data (input and output names from the model). Sets `ready` and `reason`; `Err` only for the lake.
pub async fn check(engine: &Engine, doc: &mut ModelDoc, onnx: &[u8]) -> Result<(), JobError> {
    let ws = doc.workspace.clone();
    let mut infos = Vec::new();
    let mut problems = Vec::new();
    for sig in &mut doc.input_signature {
        let info = source::me_info(engine, &ws, &sig.me).await?;
        if info.is_none() {
            problems.push(format!(
                "input ME '{}' is not in workspace '{ws}' (no committed file holds it)",
                sig.me
            ));
        }
        let (dim, dims) = match &info {
            Some(x) => (
                x.dim,
                std::iter::once(-1)
                    .chain(x.tail.iter().map(|d| *d as i64))
                    .collect(),
            ),
            None => (0, Vec::new()),
        };
        sig.me_id = dials_lake::ids::me_id(&sig.me);
        sig.dim = dim;
        sig.dims = dims;
        sig.data_type = "float32".into();
        infos.push(info);
    }
    if let Err(e) = doc.check_shape() {
        problems.push(e);
    }
    if problems.is_empty() {
        let infos: Vec<MeInfo> = infos.into_iter().flatten().collect();
        match validate(engine, doc, onnx, &infos).await {
            Ok(model) => {
                for (sig, name) in doc.input_signature.iter_mut().zip(&model.inputs) {
                    sig.name = name.clone();
                }
                doc.output_signature = model.outputs.clone();
            }
            Err(e) => problems.push(e),
        }
    }
    doc.ready = problems.is_empty();
    doc.reason = (!problems.is_empty()).then(|| problems.join("; "));
    Ok(())
}

/// Loads the model for the inputs' shapes and runs it on one lumisection of real data; the error
/// text is the reason the model is not ready.
async fn validate(
    engine: &Engine,
    doc: &ModelDoc,
    onnx: &[u8],
    infos: &[MeInfo],
) -> Result<Arc<dials_ml::OnnxModel>, String> {
    let shapes: Vec<Vec<usize>> = infos.iter().map(|i| i.tail.clone()).collect();
    let model = Arc::new(
        dials_ml::OnnxModel::load(&doc.label(), onnx, &shapes).map_err(|e| e.to_string())?,
    );
    let first = &infos[0];
    let ws = &doc.workspace;
    let runs = source::runs_with(engine, ws, first.me_id, first.dim, None, None)
        .await
        .map_err(|e| e.to_string())?;
    let Some((dataset_id, run)) = runs.first().copied() else {
        return Ok(model);
    };
    let mut input = RunInput {
        run,
        mes: Vec::new(),
    };
    for (sig, info) in doc.input_signature.iter().zip(infos) {
        let got = source::read_run(engine, ws, &sig.me, info, run, Some(dataset_id), None)
            .await
            .map_err(|e| e.to_string())?;
        input
            .mes
            .push(got.into_values().next().map(|(_, m)| m).unwrap_or_default());
    }
    // One lumisection (one that has every input): the sample.
    let key = input.mes.first().and_then(|m| {
        m.rows
            .keys()
            .find(|k| input.mes.iter().all(|o| o.rows.contains_key(k)))
            .copied()
    });
    let Some(key) = key else { return Ok(model) };
    for m in &mut input.mes {
        m.rows.retain(|k, _| *k == key);
    }
    let (d, m) = (doc.clone(), model.clone());
    tokio::task::spawn_blocking(move || dials_ml::score::score_run(&d, &m, &input))
        .await
        .map_err(|e| e.to_string())?
        .map_err(|e| {
            format!(
                "on a sample lumisection (run {run}, lumisection {}): {e}",
                key.0
            )
        })?;
    Ok(model)
}

/// `dials ml update`: a new threshold and/or active flag on the latest revision of `name`; no
/// re-run (flags are computed at query time from the stored scores).
pub async fn update(
    lake: &Location,
    ws: &str,
    name: &str,
    threshold: Option<f64>,
    active: Option<bool>,
    user: &str,
) -> Result<ModelDoc, JobError> {
    let mut doc = registry::latest(lake, ws, name).await?;
    if let Some(t) = threshold {
        if doc.builtin_threshold {
            return Err(JobError::Usage(format!(
                "model {} flags by itself (flagging_key); it has no threshold to set",
                doc.label()
            )));
        }
        if !t.is_finite() {
            return Err(JobError::Usage(
                "the threshold must be a finite number".into(),
            ));
        }
        doc.anomaly_threshold = Some(t);
    }
    if let Some(a) = active {
        doc.active = a;
    }
    doc.modified_by = user.to_string();
    doc.modified_at = dials_lake::tables::now_rfc3339();
    registry::put_doc(lake, &doc).await?;
    Ok(doc)
}

/// Scores one run with one model (all its datasets, or one; one file's lumisections when
/// `batch` is a file) and writes the scores; the outcome is recorded beside the model
/// (`runs/<run>.json`). A model error is a `FAILED` status, never an `Err`; `Err` is for the lake.
pub async fn score_run(
    engine: &Engine,
    cache: &ModelCache,
    doc: &ModelDoc,
    run: i64,
    dataset_id: Option<i64>,
    batch: Batch,
) -> Result<RunStatus, JobError> {
    let lake = &engine.lake;
    let file = match batch {
        Batch::File(f) => Some(f),
        Batch::Run => None,
    };
    // Per dataset: per input, the rows.
    let mut per_ds: BTreeMap<i64, (String, Vec<MeRows>)> = BTreeMap::new();
    let n_inputs = doc.input_signature.len();
    for (i, sig) in doc.input_signature.iter().enumerate() {
        let tail: Vec<usize> = sig
            .dims
            .iter()
            .skip(1)
            .map(|d| (*d).max(0) as usize)
            .collect();
        let info = MeInfo {
            me_id: sig.me_id,
            dim: sig.dim,
            tail,
        };
        for (d, (name, rows)) in source::read_run(
            engine,
            &doc.workspace,
            &sig.me,
            &info,
            run,
            dataset_id,
            file,
        )
        .await?
        {
            let e = per_ds
                .entry(d)
                .or_insert_with(|| (name, vec![MeRows::default(); n_inputs]));
            e.1[i] = rows;
        }
    }
    let kind = if file.is_some() { "file" } else { "run" };
    if per_ds.is_empty() && file.is_some() {
        // The file holds none of the model's inputs for this run: nothing to score or record.
        return Ok(RunStatus {
            run_number: run,
            status: "OK".into(),
            error: None,
            batch: kind.into(),
            scored: 0,
            at: dials_lake::tables::now_rfc3339(),
        });
    }
    let outcome: Result<Vec<arrow::array::RecordBatch>, MlError> = async {
        let model = cache.get(lake, doc, &tails(doc)).await?;
        let mut parts = Vec::new();
        for (d, (name, mes)) in per_ds {
            let (doc2, model2) = (doc.clone(), model.clone());
            let input = RunInput { run, mes };
            let rows = tokio::task::spawn_blocking(move || {
                dials_ml::score::score_run(&doc2, &model2, &input)
            })
            .await
            .map_err(|e| MlError::Run {
                model: doc.label(),
                run,
                message: e.to_string(),
            })??;
            parts.push(results::to_batch(doc, d, &name, batch, run, &rows)?);
        }
        Ok(parts)
    }
    .await;
    let status = match outcome {
        Ok(parts) => {
            let scored = parts.iter().map(arrow::array::RecordBatch::num_rows).sum();
            results::write_batch(lake, doc, run, batch, &parts).await?;
            RunStatus {
                run_number: run,
                status: "OK".into(),
                error: None,
                batch: kind.into(),
                scored,
                at: dials_lake::tables::now_rfc3339(),
            }
        }
        Err(e @ (MlError::Store(_) | MlError::Parquet(_) | MlError::Arrow(_))) => {
            return Err(e.into())
        }
        Err(e) => {
            tracing::warn!(model = %doc.label(), run, error = %e, "scoring failed; recorded as the run's status");
            RunStatus {
                run_number: run,
                status: "FAILED".into(),
                error: Some(e.to_string()),
                batch: kind.into(),
                scored: 0,
                at: dials_lake::tables::now_rfc3339(),
            }
        }
    };
    registry::put_status(lake, doc, &status).await?;
    Ok(status)
}

/// `dials ml backfill`: scores every run holding the model's first input (optionally one dataset,
/// some runs), a whole run per batch, `threads` runs at a time. Idempotent: a run's scores replace
/// the model's earlier ones for that run.
pub async fn backfill(
    engine: &Engine,
    cache: &ModelCache,
    ws: &str,
    name: &str,
    dataset: Option<&str>,
    runs: Option<&[i64]>,
    threads: usize,
) -> Result<Vec<RunStatus>, JobError> {
    let doc = registry::latest(&engine.lake, ws, name).await?;
    let dataset_id = dataset.map(dials_lake::ids::dataset_id);
    let run_list = backfill_runs(engine, &doc, dataset_id, runs).await?;
    let doc = &doc;
    let results: Vec<Result<RunStatus, JobError>> = futures::stream::iter(run_list)
        .map(|run| async move { score_run(engine, cache, doc, run, dataset_id, Batch::Run).await })
        .buffered(threads.max(1))
        .collect()
        .await;
    results.into_iter().collect()
}

/// The runs a backfill of `doc` scores: every run holding its first input (optionally one
/// dataset, some runs), ascending. A model that is not ready cannot be backfilled.
pub async fn backfill_runs(
    engine: &Engine,
    doc: &ModelDoc,
    dataset_id: Option<i64>,
    runs: Option<&[i64]>,
) -> Result<Vec<i64>, JobError> {
    if !doc.ready {
        return Err(JobError::Usage(format!(
            "model {} is not ready: {}",
            doc.label(),
            doc.reason.clone().unwrap_or_default()
        )));
    }
    let Some(first) = doc.input_signature.first() else {
        return Ok(Vec::new());
    };
    let pairs = source::runs_with(
        engine,
        &doc.workspace,
        first.me_id,
        first.dim,
        dataset_id,
        runs,
    )
    .await?;
    let mut run_list: Vec<i64> = pairs.iter().map(|p| p.1).collect();
    run_list.dedup();
    Ok(run_list)
}
