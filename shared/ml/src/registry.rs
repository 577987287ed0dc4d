//! The model registry in the lake: `<lake>/<workspace>/models/<name>/<revision>/model.json` (the
//! document) and `model.onnx` (the file), plus `runs/<run>.json` (the last scoring of each run).
//! Plain objects any reader can list; registering = writing the folder; re-registering a name
//! makes the next revision.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use futures::TryStreamExt;
use object_store::path::Path;
use object_store::{ObjectStoreExt, PutPayload};
use serde::{Deserialize, Serialize};

use dials_lake::Location;

use crate::error::{MlError, Result};
use crate::model::ModelDoc;
use crate::onnx::OnnxModel;

/// Folder of the registry under a workspace.
pub const MODELS: &str = "models";
/// The document's object name.
pub const DOC: &str = "model.json";
/// The ONNX file's object name.
pub const ONNX: &str = "model.onnx";

fn folder(ws: &str, name: &str, revision: i64) -> Vec<String> {
    vec![
        ws.to_string(),
        MODELS.to_string(),
        name.to_string(),
        revision.to_string(),
    ]
}

fn key(lake: &Location, ws: &str, name: &str, revision: i64, file: &str) -> Path {
    let mut parts = folder(ws, name, revision);
    parts.push(file.to_string());
    let refs: Vec<&str> = parts.iter().map(String::as_str).collect();
    lake.child(&refs)
}

/// Every model document of a workspace (all revisions), sorted by name then revision. An object
/// that is not a valid document is skipped with a warning: one bad upload hides nothing else.
pub async fn list(lake: &Location, ws: &str) -> Result<Vec<ModelDoc>> {
    let prefix = lake.child(&[ws, MODELS]);
    let metas: Vec<_> = match lake.store.list(Some(&prefix)).try_collect::<Vec<_>>().await {
        Ok(m) => m,
        Err(object_store::Error::NotFound { .. }) => Vec::new(),
        Err(e) => return Err(e.into()),
    };
    let mut docs = Vec::new();
    // Only `<name>/<revision>/model.json`: a dropped folder's `<name>/model.json` is an upload
    // waiting to be registered, not a revision.
    let is_revision = |p: &Path| {
        let parts: Vec<_> = p
            .prefix_match(&prefix)
            .map(|it| it.collect())
            .unwrap_or_default();
        parts.len() == 3 && parts[1].as_ref().parse::<i64>().is_ok() && parts[2].as_ref() == DOC
    };
    for m in metas.into_iter().filter(|m| is_revision(&m.location)) {
        let bytes = match lake.store.get(&m.location).await {
            Ok(g) => g.bytes().await?,
            Err(object_store::Error::NotFound { .. }) => continue,
            Err(e) => return Err(e.into()),
        };
        match serde_json::from_slice::<ModelDoc>(&bytes) {
            Ok(d) => docs.push(d),
            Err(e) => {
                tracing::warn!(object = %m.location, error = %e, "not a model document; left out")
            }
        }
    }
    docs.sort_by(|a, b| a.name.cmp(&b.name).then(a.revision.cmp(&b.revision)));
    Ok(docs)
}

/// The latest revision of `name`.
pub async fn latest(lake: &Location, ws: &str, name: &str) -> Result<ModelDoc> {
    list(lake, ws)
        .await?
        .into_iter()
        .filter(|d| d.name == name)
        .max_by_key(|d| d.revision)
        .ok_or_else(|| MlError::UnknownModel(name.to_string(), ws.to_string()))
}

/// The latest revision of every name (what scores new data).
pub fn latest_of_each(docs: &[ModelDoc]) -> Vec<&ModelDoc> {
    let mut best: HashMap<&str, &ModelDoc> = HashMap::new();
    for d in docs {
        let e = best.entry(d.name.as_str()).or_insert(d);
        if d.revision > e.revision {
            *e = d;
        }
    }
    let mut v: Vec<&ModelDoc> = best.into_values().collect();
    v.sort_by(|a, b| a.name.cmp(&b.name));
    v
}

/// Writes a document (creating or replacing it).
pub async fn put_doc(lake: &Location, doc: &ModelDoc) -> Result<()> {
    let body = serde_json::to_vec_pretty(doc).map_err(|source| MlError::Json {
        path: doc.label(),
        source,
    })?;
    lake.store
        .put(
            &key(lake, &doc.workspace, &doc.name, doc.revision, DOC),
            PutPayload::from(body),
        )
        .await?;
    Ok(())
}

/// Writes the ONNX file of a revision (before its document, so a listed model has its file).
pub async fn put_onnx(
    lake: &Location,
    ws: &str,
    name: &str,
    revision: i64,
    bytes: Vec<u8>,
) -> Result<()> {
    lake.store
        .put(
            &key(lake, ws, name, revision, ONNX),
            PutPayload::from(bytes),
        )
        .await?;
    Ok(())
}

/// The ONNX file of a revision.
pub async fn get_onnx(lake: &Location, doc: &ModelDoc) -> Result<bytes::Bytes> {
    Ok(lake
        .store
        .get(&key(lake, &doc.workspace, &doc.name, doc.revision, ONNX))
        .await?
        .bytes()
        .await?)
}

/// How the last scoring of a run by a model went (`runs/<run>.json` beside the document).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct RunStatus {
    /// Run.
    pub run_number: i64,
    /// `OK` or `FAILED`.
    pub status: String,
    /// Error text when failed.
    pub error: Option<String>,
    /// `file` (ingest) or `run` (backfill).
    pub batch: String,
    /// Lumisections scored.
    pub scored: usize,
    /// When.
    pub at: String,
}

/// Records how scoring a run went.
pub async fn put_status(lake: &Location, doc: &ModelDoc, st: &RunStatus) -> Result<()> {
    let mut parts = folder(&doc.workspace, &doc.name, doc.revision);
    parts.push("runs".into());
    parts.push(format!("{}.json", st.run_number));
    let refs: Vec<&str> = parts.iter().map(String::as_str).collect();
    let body = serde_json::to_vec(st).map_err(|source| MlError::Json {
        path: doc.label(),
        source,
    })?;
    lake.store
        .put(&lake.child(&refs), PutPayload::from(body))
        .await?;
    Ok(())
}

/// The recorded status of every scored run of a model revision.
pub async fn statuses(lake: &Location, doc: &ModelDoc) -> Result<Vec<RunStatus>> {
    let mut parts = folder(&doc.workspace, &doc.name, doc.revision);
    parts.push("runs".into());
    let refs: Vec<&str> = parts.iter().map(String::as_str).collect();
    let metas: Vec<_> = match lake
        .store
        .list(Some(&lake.child(&refs)))
        .try_collect::<Vec<_>>()
        .await
    {
        Ok(m) => m,
        Err(object_store::Error::NotFound { .. }) => Vec::new(),
        Err(e) => return Err(e.into()),
    };
    let mut out = Vec::new();
    for m in metas {
        let bytes = lake.store.get(&m.location).await?.bytes().await?;
        if let Ok(s) = serde_json::from_slice::<RunStatus>(&bytes) {
            out.push(s);
        }
    }
    out.sort_by_key(|s| s.run_number);
    Ok(out)
}

/// Loaded models, each loaded once per process (a warm function keeps it), keyed by model id and
/// the input shapes it was prepared for.
#[derive(Default)]
pub struct ModelCache {
    loaded: Mutex<HashMap<(i64, Vec<Vec<usize>>), Arc<OnnxModel>>>,
}

impl ModelCache {
    /// The model of `doc` prepared for `tails`, loading it on first use.
    pub async fn get(
        &self,
        lake: &Location,
        doc: &ModelDoc,
        tails: &[Vec<usize>],
    ) -> Result<Arc<OnnxModel>> {
        let k = (doc.id, tails.to_vec());
        if let Some(m) = self.loaded.lock().ok().and_then(|c| c.get(&k).cloned()) {
            return Ok(m);
        }
        let bytes = get_onnx(lake, doc).await?;
        let m = Arc::new(OnnxModel::load(&doc.label(), &bytes, tails)?);
        if let Ok(mut c) = self.loaded.lock() {
            c.insert(k, m.clone());
        }
        Ok(m)
    }
}
