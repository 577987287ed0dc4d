//! Every DQMIO file's last generation in one table, read once and then followed commit by commit.
//!
//! A commit decides each file's change against the file's last application transaction
//! (`dials.file.<id>`, see `delta::file_txn`). delta-rs answers that one application id at a time,
//! and each answer replays the log: the checkpoint's `txn` column and every JSON commit after it,
//! read again from the store. With a batch of files per commit that replay was most of a commit's
//! time (and for a file never ingested, the commonest case, it always reads everything). A
//! [`TxnIndex`] reads the same facts once — the last checkpoint's `txn` column and the commits after
//! it — holding every file's generation complete at one table version, then reads only the commits
//! that come after (its own it applies without reading). A lake that does not look as expected
//! (a checkpoint in another format, a commit gone) is an error: the caller falls back to asking
//! delta-rs per file.

use std::collections::HashMap;
use std::sync::Arc;

use arrow::array::{Array, AsArray};
use arrow::datatypes::Int64Type;
use deltalake_core::DeltaTable;
use futures::StreamExt;
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt};
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use parquet::arrow::ProjectionMask;

use crate::delta::DeltaError;

const APP_PREFIX: &str = "dials.file.";

/// Commits fetched at once when following the log (each a small GET; on S3 latency adds up).
const CONCURRENT_READS: usize = 16;

/// Every file's last generation in one table, complete at [`TxnIndex::version`].
#[derive(Debug, Clone, Default)]
pub struct TxnIndex {
    version: u64,
    generations: HashMap<i64, i64>,
}

fn err(t: &DeltaTable, message: impl std::fmt::Display) -> DeltaError {
    DeltaError::Log {
        table: t.table_url().to_string(),
        message: message.to_string(),
    }
}

fn log_path(name: &str) -> Path {
    Path::from(format!("_delta_log/{name}"))
}

impl TxnIndex {
    /// The table version this index is complete at.
    pub fn version(&self) -> u64 {
        self.version
    }

    /// File `file_id`'s last generation (none: never committed to this table).
    pub fn generation(&self, file_id: i64) -> Option<i64> {
        self.generations.get(&file_id).copied()
    }

    /// Number of files with a generation.
    pub fn len(&self) -> usize {
        self.generations.len()
    }

    /// True when no file has committed.
    pub fn is_empty(&self) -> bool {
        self.generations.is_empty()
    }

    /// Reads the index of `t` at its loaded version: the last checkpoint at or before it (its `txn`
    /// column), then the JSON commits after the checkpoint.
    pub async fn build(t: &DeltaTable) -> Result<Self, DeltaError> {
        let target = t.version().ok_or_else(|| err(t, "table not loaded"))?;
        let store = t.log_store().object_store(None);
        let mut index = TxnIndex::default();
        let start = match last_checkpoint(&store).await.map_err(|e| err(t, e))? {
            Some((cp, parts)) if cp <= target => {
                for path in checkpoint_paths(cp, parts) {
                    read_checkpoint(&store, path, &mut index.generations)
                        .await
                        .map_err(|e| err(t, e))?;
                }
                cp + 1
            }
            // A checkpoint newer than the snapshot (another writer's), or none: replay from the
            // start (every commit is still there while no checkpoint covers it).
            _ => 0,
        };
        index.version = start.saturating_sub(1);
        if !index.read_commits(t, &store, start, target).await? {
            return Err(err(t, "a commit is gone and no checkpoint covers it"));
        }
        index.version = target;
        Ok(index)
    }

    /// Brings the index to `t`'s loaded version by reading the commits in between. `Ok(false)`
    /// when it cannot (the table is older than the index, or a commit in between is gone): build
    /// a new one.
    pub async fn advance(&mut self, t: &DeltaTable) -> Result<bool, DeltaError> {
        let target = t.version().ok_or_else(|| err(t, "table not loaded"))?;
        if target < self.version {
            return Ok(false);
        }
        let store = t.log_store().object_store(None);
        self.read_commits(t, &store, self.version + 1, target).await
    }

    /// Applies the index's own commit: `version` with `generations` (file id, generation). A
    /// commit that does not directly follow the index is left for [`TxnIndex::advance`] to read.
    pub fn apply(&mut self, version: u64, generations: impl IntoIterator<Item = (i64, i64)>) {
        if version == self.version + 1 {
            self.generations.extend(generations);
            self.version = version;
        }
    }

    /// Reads the `txn` actions of commits `from..=to` (fetched several at once, applied in order);
    /// `Ok(false)` when one is gone.
    async fn read_commits(
        &mut self,
        t: &DeltaTable,
        store: &Arc<dyn ObjectStore>,
        from: u64,
        to: u64,
    ) -> Result<bool, DeltaError> {
        let mut commits = futures::stream::iter(from..=to)
            .map(|v| {
                let store = store.clone();
                async move {
                    match store.get(&log_path(&format!("{v:020}.json"))).await {
                        Ok(r) => r.bytes().await.map(|b| (v, Some(b))),
                        Err(object_store::Error::NotFound { .. }) => Ok((v, None)),
                        Err(e) => Err(e),
                    }
                }
            })
            .buffered(CONCURRENT_READS);
        while let Some(next) = commits.next().await {
            match next.map_err(|e| err(t, e))? {
                (v, Some(bytes)) => self.apply_commit(t, v, &bytes)?,
                (_, None) => return Ok(false),
            }
        }
        Ok(true)
    }

    /// Applies commit `v`'s `txn` actions.
    fn apply_commit(&mut self, t: &DeltaTable, v: u64, bytes: &[u8]) -> Result<(), DeltaError> {
        for line in bytes.split(|b| *b == b'\n') {
            // Only lines with a transaction are parsed (adds carry statistics: most of the bytes).
            if line.is_empty() || !contains(line, b"\"txn\"") {
                continue;
            }
            let action: serde_json::Value =
                serde_json::from_slice(line).map_err(|e| err(t, format!("commit {v}: {e}")))?;
            if let Some(txn) = action.get("txn") {
                let app = txn.get("appId").and_then(serde_json::Value::as_str);
                let gen = txn.get("version").and_then(serde_json::Value::as_i64);
                if let (Some(id), Some(gen)) = (app.and_then(file_id), gen) {
                    self.generations.insert(id, gen);
                }
            }
        }
        self.version = v;
        Ok(())
    }
}

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len()).any(|w| w == needle)
}

fn file_id(app_id: &str) -> Option<i64> {
    app_id.strip_prefix(APP_PREFIX)?.parse().ok()
}

/// `_last_checkpoint`: (version, parts); none when the table has no checkpoint.
async fn last_checkpoint(
    store: &Arc<dyn ObjectStore>,
) -> Result<Option<(u64, Option<u64>)>, String> {
    let bytes = match store.get(&log_path("_last_checkpoint")).await {
        Ok(r) => r.bytes().await.map_err(|e| e.to_string())?,
        Err(object_store::Error::NotFound { .. }) => return Ok(None),
        Err(e) => return Err(e.to_string()),
    };
    let v: serde_json::Value =
        serde_json::from_slice(&bytes).map_err(|e| format!("_last_checkpoint: {e}"))?;
    if v.get("v2Checkpoint").is_some() {
        return Err("_last_checkpoint names a V2 checkpoint (not read here)".into());
    }
    let version = v
        .get("version")
        .and_then(serde_json::Value::as_u64)
        .ok_or("_last_checkpoint without a version")?;
    Ok(Some((
        version,
        v.get("parts").and_then(serde_json::Value::as_u64),
    )))
}

/// The classic checkpoint's object(s): one file, or `parts` files.
fn checkpoint_paths(version: u64, parts: Option<u64>) -> Vec<Path> {
    match parts {
        Some(n) if n > 1 => (1..=n)
            .map(|i| log_path(&format!("{version:020}.checkpoint.{i:010}.{n:010}.parquet")))
            .collect(),
        _ => vec![log_path(&format!("{version:020}.checkpoint.parquet"))],
    }
}

/// Reads only the `txn` column of one checkpoint object.
async fn read_checkpoint(
    store: &Arc<dyn ObjectStore>,
    path: Path,
    out: &mut HashMap<i64, i64>,
) -> Result<(), String> {
    let name = path.to_string();
    let bytes = store
        .get(&path)
        .await
        .map_err(|e| e.to_string())?
        .bytes()
        .await
        .map_err(|e| e.to_string())?;
    let builder =
        ParquetRecordBatchReaderBuilder::try_new(bytes).map_err(|e| format!("{name}: {e}"))?;
    let Some(txn_root) = builder
        .parquet_schema()
        .root_schema()
        .get_fields()
        .iter()
        .position(|f| f.name() == "txn")
    else {
        // A checkpoint of a table that never had a transaction.
        return Ok(());
    };
    let mask = ProjectionMask::roots(builder.parquet_schema(), [txn_root]);
    let reader = builder
        .with_projection(mask)
        .build()
        .map_err(|e| format!("{name}: {e}"))?;
    for batch in reader {
        let batch = batch.map_err(|e| format!("{name}: {e}"))?;
        let Some(col) = batch.column_by_name("txn") else {
            continue;
        };
        let txn = col
            .as_struct_opt()
            .ok_or_else(|| format!("{name}: txn is not a struct"))?;
        let (Some(app), Some(ver)) = (txn.column_by_name("appId"), txn.column_by_name("version"))
        else {
            return Err(format!("{name}: txn without appId/version"));
        };
        let ver = ver
            .as_primitive_opt::<Int64Type>()
            .ok_or_else(|| format!("{name}: txn.version is not a long"))?;
        let app: Vec<Option<String>> = match app.data_type() {
            arrow::datatypes::DataType::Utf8 => app
                .as_string::<i32>()
                .iter()
                .map(|s| s.map(str::to_string))
                .collect(),
            arrow::datatypes::DataType::LargeUtf8 => app
                .as_string::<i64>()
                .iter()
                .map(|s| s.map(str::to_string))
                .collect(),
            arrow::datatypes::DataType::Utf8View => app
                .as_string_view()
                .iter()
                .map(|s| s.map(str::to_string))
                .collect(),
            other => return Err(format!("{name}: txn.appId is {other}")),
        };
        for (i, a) in app.iter().enumerate() {
            if txn.is_null(i) || ver.is_null(i) {
                continue;
            }
            if let Some(id) = a.as_deref().and_then(file_id) {
                out.insert(id, ver.value(i));
            }
        }
    }
    Ok(())
}
