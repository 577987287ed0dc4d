//! Every lake table is a Delta Lake table (decision 0007): the Parquet objects stay where they were
//! (`<lake>/<workspace>/<table>/[run_number=<run>/]part-….parquet`), and each table folder gains a
//! `_delta_log/` whose commits say which objects are the table. Readers (the query function, Spark,
//! Polars, DuckDB/pyarrow through the `deltalake` package) read a snapshot of that log, never a
//! directory listing, so a reader never sees an object that is not committed (a failed attempt's
//! objects, a re-ingest's new objects before their commit) nor loses one that a commit removed
//! while it reads (removed objects stay until vacuum).
//!
//! Commits are conditional puts of `_delta_log/<version>.json` (`If-None-Match: *` on S3, an atomic
//! create-new on a local folder): concurrent writers serialise without a lock service, and delta-rs
//! re-checks a losing commit against the winner (an application transaction id per DQMIO file makes
//! two concurrent ingests of the same file conflict instead of both landing).

use std::collections::HashMap;
use std::sync::{Arc, OnceLock};

use deltalake_core::kernel::engine::arrow_conversion::TryIntoKernel;
use deltalake_core::kernel::transaction::{
    CommitBuilder, CommitData, CommitProperties, PostCommit, PROTOCOL,
};
use deltalake_core::kernel::{Action, Add, Remove, StructField, StructType, Transaction};
use deltalake_core::logstore::CommitOrBytes;
use deltalake_core::logstore::{default_logstore, LogStoreRef, StorageConfig};
use deltalake_core::operations::create::CreateBuilder;
use deltalake_core::protocol::{DeltaOperation, SaveMode};
use deltalake_core::{DeltaTable, DeltaTableError, TableProperty};
use object_store::local::LocalFileSystem;
use object_store::path::Path;
use object_store::prefix::PrefixStore;
use object_store::ObjectStore;
use parquet::file::metadata::ParquetMetaData;
use parquet::file::statistics::Statistics;
use url::Url;

use crate::store::Location;
use crate::tables;

/// Errors of the Delta layer.
#[derive(Debug, thiserror::Error)]
pub enum DeltaError {
    /// delta-rs refused or failed (log read, commit, conflict).
    #[error("delta log of {table}: {source}")]
    Delta {
        /// The table's location.
        table: String,
        /// What delta-rs said.
        #[source]
        source: DeltaTableError,
    },
    /// A table location could not be expressed as a URL.
    #[error("bad table location '{0}'")]
    Location(String),
    /// An unknown table name.
    #[error("unknown lake table '{0}'")]
    UnknownTable(String),
    /// The log read directly (not through delta-rs) was not as expected.
    #[error("delta log of {table}: {message}")]
    Log {
        /// The table's location.
        table: String,
        /// What was wrong.
        message: String,
    },
}

impl DeltaError {
    pub(crate) fn delta(table: &Url, source: DeltaTableError) -> Self {
        DeltaError::Delta {
            table: table.to_string(),
            source,
        }
    }

    /// True when a concurrent commit got in the way (delta-rs's conflict check, or its retries ran
    /// out): reload the table and decide again.
    pub fn is_conflict(&self) -> bool {
        use deltalake_core::kernel::transaction::TransactionError as T;
        matches!(
            self,
            DeltaError::Delta {
                source: DeltaTableError::Transaction {
                    source: T::CommitConflict(_)
                        | T::MaxCommitAttempts(_)
                        | T::VersionAlreadyExists(_)
                },
                ..
            } | DeltaError::Delta {
                source: DeltaTableError::VersionAlreadyExists(_),
                ..
            }
        )
    }
}

/// The tables of a workspace, in the order an ingest commits them (`file_index` last).
pub const TABLES: [&str; 16] = [
    "th1",
    "th2",
    "th3",
    "profile1d",
    "profile2d",
    "scalar",
    "th1_run",
    "th2_run",
    "th3_run",
    "profile1d_run",
    "profile2d_run",
    "scalar_run",
    "lumisection_index",
    "me_index",
    "dataset_index",
    "file_index",
];

/// The tables with an ME-major copy, and the copy's table (`<table>_by_me`: the same schema and
/// partitioning, rows of each run sorted by `me_id`, then `ls_number`). Only compaction writes a
/// copy (`compact::write_copies`); an ingest never does, and readers use a run's copy only while it
/// covers exactly the run's current objects of the main table.
pub const ME_MAJOR: [(&str, &str); 2] = [("th1", "th1_by_me"), ("th2", "th2_by_me")];

/// delta-rs's own retries of a commit that lost a race without conflicting.
const COMMIT_RETRIES: usize = 50;

/// Commits between checkpoints (a reader replays at most this many JSON commits after one).
pub const CHECKPOINT_INTERVAL: u64 = 50;

/// Arrow schema of a table's files and its partition columns (not stored inside the files).
pub fn layout(
    table: &str,
) -> Result<(arrow::datatypes::SchemaRef, &'static [&'static str]), DeltaError> {
    Ok(match table {
        "file_index" => (tables::file_schema(), &[]),
        "dataset_index" => (tables::dataset_schema(), &[]),
        "lumisection_index" => (tables::lumisection_schema(), &[]),
        "me_index" => (tables::me_schema(), &[]),
        // Every data table (`th1`, ..., the per-run twins and the ME-major copies) is partitioned by run.
        other => match tables::DataTable::parse(
            ME_MAJOR
                .iter()
                .find(|(_, c)| *c == other)
                .map_or(other, |(t, _)| t),
        ) {
            Some((t, _)) => (t.schema(), &["run_number"]),
            None => return Err(DeltaError::UnknownTable(other.to_string())),
        },
    })
}

/// The store the Delta kernel reads a local lake through (rooted at `/`).
fn local_root() -> Arc<dyn ObjectStore> {
    static ROOT: OnceLock<Arc<dyn ObjectStore>> = OnceLock::new();
    ROOT.get_or_init(|| crate::store::instrumented(Arc::new(LocalFileSystem::new())))
        .clone()
}

/// URL of a table folder: `file:///abs/lake/<ws>/<table>/` or `s3://bucket/prefix/<ws>/<table>/`.
pub fn table_url(lake: &Location, parts: &[&str]) -> Result<Url, DeltaError> {
    let base = lake.url.trim_end_matches('/');
    let joined = parts.join("/");
    let s = if base.starts_with("s3://") {
        format!("{base}/{joined}/")
    } else {
        let dir = std::path::Path::new(base).join(&joined);
        return Url::from_directory_path(&dir)
            .map_err(|()| DeltaError::Location(dir.display().to_string()));
    };
    Url::parse(&s).map_err(|_| DeltaError::Location(s))
}

/// A log store for the table at `lake/parts…`, reading and committing through `lake`'s own store
/// (so the S3 client, endpoint and credentials are the lake's; no `deltalake-aws`). `root` overrides
/// the store the kernel reads the log through (e.g. the query function's cached store); it must be
/// rooted where `lake.store` is (the bucket for S3, `/` for a folder).
pub fn log_store(
    lake: &Location,
    parts: &[&str],
    root: Option<Arc<dyn ObjectStore>>,
) -> Result<LogStoreRef, DeltaError> {
    let url = table_url(lake, parts)?;
    let s3 = lake.url.starts_with("s3://");
    let root = root.unwrap_or_else(|| if s3 { lake.store.clone() } else { local_root() });
    let prefixed: Arc<dyn ObjectStore> =
        Arc::new(PrefixStore::new(lake.store.clone(), lake.child(parts)));
    Ok(default_logstore(
        prefixed,
        root,
        &url,
        &StorageConfig::default(),
    ))
}

/// Opens the table (latest version). `None` when it has no commit yet.
pub async fn open(
    lake: &Location,
    ws: &str,
    table: &str,
) -> Result<Option<DeltaTable>, DeltaError> {
    open_with(log_store(lake, &[ws, table], None)?).await
}

/// Opens the table of `store` (latest version). `None` when it has no commit yet.
pub async fn open_with(store: LogStoreRef) -> Result<Option<DeltaTable>, DeltaError> {
    let url = store.root_url().clone();
    // Asked first (one listing): the kernel logs an ERROR for every table it is asked to load that
    // has no log yet, which a first ingest meets for each of its tables.
    if !store
        .is_delta_table_location()
        .await
        .map_err(|e| DeltaError::delta(&url, e))?
    {
        return Ok(None);
    }
    let mut t = DeltaTable::new(store);
    match t.update_incremental(None).await {
        Ok(()) => Ok(Some(t)),
        Err(DeltaTableError::NotATable(_)) | Err(DeltaTableError::InvalidTableLocation(_)) => {
            Ok(None)
        }
        Err(e) => {
            // A folder without a log reads as "not a table" in some versions, as an empty log
            // listing in others: ask the store directly before calling it an error.
            match t.verify_deltatable_existence().await {
                Ok(false) => Ok(None),
                _ => Err(DeltaError::delta(&url, e)),
            }
        }
    }
}

/// Opens the table, creating it (version 0: schema, partition columns, properties) if it has no
/// commit yet. Two creators race safely: the loser finds version 0 and opens it.
pub async fn open_or_create(
    lake: &Location,
    ws: &str,
    table: &str,
) -> Result<DeltaTable, DeltaError> {
    let (schema, partitions) = layout(table)?;
    open_or_create_table(lake, ws, table, &schema, partitions).await
}

/// As [`open_or_create`], for a table that is not one of the ingest's ([`layout`]): the caller
/// gives the files' schema and the partition columns (`Int64`), e.g. the ML results (`ml_scores`).
pub async fn open_or_create_table(
    lake: &Location,
    ws: &str,
    table: &str,
    schema: &arrow::datatypes::Schema,
    partitions: &[&str],
) -> Result<DeltaTable, DeltaError> {
    let store = log_store(lake, &[ws, table], None)?;
    if let Some(t) = open_with(store.clone()).await? {
        return Ok(t);
    }
    let url = store.root_url().clone();
    let mut columns: Vec<StructField> = Vec::new();
    for f in schema.fields() {
        let dt: deltalake_core::kernel::DataType = f
            .data_type()
            .try_into_kernel()
            .map_err(|e| DeltaError::delta(&url, DeltaTableError::Generic(e.to_string())))?;
        columns.push(StructField::new(f.name().clone(), dt, f.is_nullable()));
    }
    for p in partitions {
        columns.push(StructField::new(
            p.to_string(),
            deltalake_core::kernel::DataType::LONG,
            false,
        ));
    }
    let created = CreateBuilder::new()
        .with_log_store(store.clone())
        .with_table_name(table)
        .with_columns(
            StructType::try_new(columns)
                .map_err(|e| DeltaError::delta(&url, DeltaTableError::Generic(e.to_string())))?
                .fields()
                .cloned(),
        )
        .with_partition_columns(partitions.iter().map(|p| p.to_string()))
        .with_configuration_property(
            TableProperty::CheckpointInterval,
            Some(CHECKPOINT_INTERVAL.to_string()),
        )
        .with_save_mode(SaveMode::Ignore)
        .await;
    match created {
        Ok(t) => Ok(t),
        Err(e) => match open_with(store).await? {
            // Another writer created it first.
            Some(t) => Ok(t),
            None => Err(DeltaError::delta(&url, e)),
        },
    }
}

/// An active object of a table (relative path from the table root, as the log has it).
#[derive(Debug, Clone)]
pub struct ActiveFile {
    /// Path relative to the table folder (`run_number=1/part-….parquet`).
    pub path: String,
    /// Bytes.
    pub size: i64,
    /// Milliseconds since the epoch (when it was committed).
    pub modification_time: i64,
    /// Partition values.
    pub partition_values: HashMap<String, Option<String>>,
    /// The Add's statistics (Delta JSON: `numRecords`, `minValues`, `maxValues`, `nullCount`).
    pub stats: Option<String>,
}

impl ActiveFile {
    /// Minimum and maximum of integer column `col` (a partition column's value, or the statistics'
    /// bounds), if known.
    pub fn int_bounds(&self, col: &str) -> Option<(i64, i64)> {
        self.bounds(&[col])[0]
    }

    /// [`ActiveFile::int_bounds`] of each of `cols`, the statistics parsed once.
    pub fn bounds(&self, cols: &[&str]) -> Vec<Option<(i64, i64)>> {
        self.int_bounds_of(self.parsed_stats().as_ref(), cols)
    }

    /// [`ActiveFile::bounds`] of `ints` and [`ActiveFile::text_bounds`] of `texts`, the statistics
    /// parsed once for both.
    #[allow(clippy::type_complexity)]
    pub fn all_bounds(
        &self,
        ints: &[&str],
        texts: &[&str],
    ) -> (Vec<Option<(i64, i64)>>, Vec<Option<(String, String)>>) {
        let stats = self.parsed_stats();
        (
            self.int_bounds_of(stats.as_ref(), ints),
            text_bounds_of(stats.as_ref(), texts),
        )
    }

    fn int_bounds_of(
        &self,
        stats: Option<&serde_json::Value>,
        cols: &[&str],
    ) -> Vec<Option<(i64, i64)>> {
        cols.iter()
            .map(|col| match self.partition_values.get(*col) {
                Some(v) => v.as_deref().and_then(|v| v.parse().ok()).map(|v| (v, v)),
                None => stats.and_then(|s| {
                    Some((
                        s.get("minValues")?.get(*col)?.as_i64()?,
                        s.get("maxValues")?.get(*col)?.as_i64()?,
                    ))
                }),
            })
            .collect()
    }
}

impl ActiveFile {
    /// The Add's statistics as JSON, if present and valid.
    fn parsed_stats(&self) -> Option<serde_json::Value> {
        self.stats
            .as_deref()
            .and_then(|s| serde_json::from_str(s).ok())
    }

    /// Minimum and maximum of each of the string columns `cols` from the statistics (recorded
    /// when exact, [`stats_json`]), if known.
    pub fn text_bounds(&self, cols: &[&str]) -> Vec<Option<(String, String)>> {
        text_bounds_of(self.parsed_stats().as_ref(), cols)
    }
}

fn text_bounds_of(
    stats: Option<&serde_json::Value>,
    cols: &[&str],
) -> Vec<Option<(String, String)>> {
    cols.iter()
        .map(|col| {
            let s = stats?;
            Some((
                s.get("minValues")?.get(*col)?.as_str()?.to_string(),
                s.get("maxValues")?.get(*col)?.as_str()?.to_string(),
            ))
        })
        .collect()
}

/// The table's active objects at its loaded version.
pub fn active_files(t: &DeltaTable) -> Result<Vec<ActiveFile>, DeltaError> {
    active_files_where(t, |_| true)
}

/// The table's active objects at its loaded version whose object name (last path segment)
/// `keep` accepts; the others are not copied.
pub fn active_files_where(
    t: &DeltaTable,
    keep: impl Fn(&str) -> bool,
) -> Result<Vec<ActiveFile>, DeltaError> {
    let snap = t
        .snapshot()
        .map_err(|e| DeltaError::delta(t.table_url(), e))?;
    Ok(snap
        .log_data()
        .iter()
        .filter_map(|f| {
            let path = f.path();
            keep(object_name(&path)).then(|| ActiveFile {
                path: path.into_owned(),
                size: f.size(),
                modification_time: f.modification_time(),
                partition_values: f.partition_values_map(),
                stats: f.stats(),
            })
        })
        .collect())
}

/// The object name (last path segment) of a relative path.
pub fn object_name(path: &str) -> &str {
    path.rsplit('/').next().unwrap_or(path)
}

/// The DQMIO file id of an object a file wrote: `part-<id>-…` (this format) or `part-<id>.parquet`
/// (objects migrated from the lake format before Delta). `None` for any other name (merged objects,
/// `part-c-…`).
pub fn file_of(name: &str) -> Option<i64> {
    let rest = name.strip_prefix("part-")?;
    let sign = usize::from(rest.starts_with('-'));
    let end = rest[sign..]
        .find(|c: char| !c.is_ascii_digit())
        .map_or(rest.len(), |i| i + sign);
    let (digits, tail) = rest.split_at(end);
    let id: i64 = digits.parse().ok()?;
    (id.to_string() == digits && (tail.starts_with('-') || tail == ".parquet")).then_some(id)
}

/// True when `name` is an object the DQMIO file with this id wrote ([`file_of`]).
pub fn belongs_to(name: &str, id: i64) -> bool {
    file_of(name) == Some(id)
}

/// An `Add` for an object written at `path` (relative to the table folder), with the statistics
/// delta readers prune by (row count, min/max/null count of the integer columns and of the string
/// columns whose Parquet statistics are exact).
pub fn add(
    path: String,
    size: u64,
    partitions: &[(&str, String)],
    meta: Option<&ParquetMetaData>,
) -> Add {
    Add {
        path,
        partition_values: partitions
            .iter()
            .map(|(k, v)| (k.to_string(), Some(v.clone())))
            .collect(),
        size: i64::try_from(size).unwrap_or(i64::MAX),
        modification_time: now_ms(),
        data_change: true,
        stats: meta.map(stats_json),
        ..Default::default()
    }
}

/// A `Remove` of an active object.
pub fn remove(f: &ActiveFile) -> Remove {
    Remove {
        path: f.path.clone(),
        data_change: true,
        deletion_timestamp: Some(now_ms()),
        extended_file_metadata: Some(true),
        partition_values: Some(f.partition_values.clone()),
        size: Some(f.size),
        ..Default::default()
    }
}

/// The `commitInfo` key naming the process that wrote a commit ([`writer`]).
pub const WRITER_KEY: &str = "dials.writer";

/// This process's name in the commits it writes (`commitInfo."dials.writer"`, a random id taken
/// at start): a writer that loses versions can tell how many other processes are committing to
/// the table, not only how many commits (`handover::Mode::Crowded`).
pub fn writer() -> &'static str {
    static WRITER: std::sync::LazyLock<String> =
        std::sync::LazyLock::new(|| uuid::Uuid::new_v4().simple().to_string());
    &WRITER
}

/// The application metadata of a commit written by `writer` (its `commitInfo`).
pub(crate) fn written_by(writer: &str) -> HashMap<String, serde_json::Value> {
    HashMap::from([(WRITER_KEY.to_string(), serde_json::Value::from(writer))])
}

/// Milliseconds since the epoch.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

/// Delta per-file statistics (`numRecords`, `minValues`, `maxValues`, `nullCount`) from a Parquet
/// footer: top-level integer columns, and string columns whose min/max are exact.
pub fn stats_json(meta: &ParquetMetaData) -> String {
    let schema = meta.file_metadata().schema_descr();
    let rows: i64 = meta.row_groups().iter().map(|rg| rg.num_rows()).sum();
    let mut min = serde_json::Map::new();
    let mut max = serde_json::Map::new();
    let mut nulls = serde_json::Map::new();
    for (i, col) in schema.columns().iter().enumerate() {
        let path = col.path().parts();
        if path.len() != 1 {
            continue; // list columns: no statistics for readers to use
        }
        let name = &path[0];
        let mut lo: Option<serde_json::Value> = None;
        let mut hi: Option<serde_json::Value> = None;
        let mut null_count: Option<u64> = Some(0);
        let mut usable = true;
        for rg in meta.row_groups() {
            let Some(stats) = rg.column(i).statistics() else {
                usable = false;
                break;
            };
            null_count = null_count.zip(stats.null_count_opt()).map(|(a, b)| a + b);
            let (l, h) = match stats {
                Statistics::Int64(s) => (
                    s.min_opt().map(|v| (*v).into()),
                    s.max_opt().map(|v| (*v).into()),
                ),
                Statistics::Int32(s) => (
                    s.min_opt().map(|v| (*v).into()),
                    s.max_opt().map(|v| (*v).into()),
                ),
                Statistics::ByteArray(s) if s.min_is_exact() && s.max_is_exact() => (
                    s.min_opt()
                        .and_then(|v| v.as_utf8().ok())
                        .map(|v| serde_json::Value::String(v.to_string())),
                    s.max_opt()
                        .and_then(|v| v.as_utf8().ok())
                        .map(|v| serde_json::Value::String(v.to_string())),
                ),
                _ => (None, None),
            };
            let (Some(l), Some(h)) = (l, h) else {
                // All-null row group (no min/max) keeps the others' bounds; otherwise unusable.
                if stats.null_count_opt() == Some(rg.num_rows() as u64) {
                    continue;
                }
                usable = false;
                break;
            };
            lo = Some(match lo {
                Some(cur) if cmp_json(&cur, &l).is_le() => cur,
                _ => l,
            });
            hi = Some(match hi {
                Some(cur) if cmp_json(&cur, &h).is_ge() => cur,
                _ => h,
            });
        }
        if !usable {
            continue;
        }
        if let (Some(l), Some(h)) = (lo, hi) {
            min.insert(name.clone(), l);
            max.insert(name.clone(), h);
        }
        if let Some(n) = null_count {
            nulls.insert(name.clone(), n.into());
        }
    }
    serde_json::json!({ "numRecords": rows, "minValues": min, "maxValues": max, "nullCount": nulls }).to_string()
}

fn cmp_json(a: &serde_json::Value, b: &serde_json::Value) -> std::cmp::Ordering {
    match (a, b) {
        (serde_json::Value::Number(x), serde_json::Value::Number(y)) => x.as_i64().cmp(&y.as_i64()),
        (serde_json::Value::String(x), serde_json::Value::String(y)) => x.cmp(y),
        _ => std::cmp::Ordering::Equal,
    }
}

/// Commits `actions` to `t` as one Delta transaction (a `WRITE`), with application transaction
/// `txn` if given; returns the new version. A concurrent commit is retried by delta-rs when it does
/// not conflict (other files, other transaction ids); a conflicting one fails (`is_conflict`).
pub async fn commit(
    t: &mut DeltaTable,
    actions: Vec<Action>,
    txn: Option<Transaction>,
    partition_by: &[&str],
) -> Result<i64, DeltaError> {
    commit_txns(t, actions, txn.into_iter().collect(), partition_by).await
}

/// [`commit`] with several application transactions (one commit for several DQMIO files).
pub async fn commit_txns(
    t: &mut DeltaTable,
    actions: Vec<Action>,
    txns: Vec<Transaction>,
    partition_by: &[&str],
) -> Result<i64, DeltaError> {
    commit_op(t, actions, txns, write_op(partition_by)).await
}

/// [`commit_txns`] for a caller that decides its changes again itself when the table moved: the
/// commit is written only at the version after `t`'s, and any concurrent commit fails it
/// (`is_conflict`), with no conflict check by delta-rs.
///
/// delta-rs's check cannot tell which objects a write depended on unless it is built with its
/// DataFusion feature (which would put a second copy of the engine into the ingest function): it
/// takes every object of the snapshot as read, so any concurrent commit removing any object (every
/// FINISHED record replaces its file's STARTED one) conflicts, and each check lists the whole
/// snapshot again. The group committer knows what a file's change depends on (the file's own
/// objects and its application transaction), and deciding again on the followed table costs only
/// the new commits.
pub async fn commit_txns_exclusive(
    t: &mut DeltaTable,
    actions: Vec<Action>,
    txns: Vec<Transaction>,
    partition_by: &[&str],
) -> Result<i64, DeltaError> {
    let written = commit_txns_exclusive_written(t, actions, txns, partition_by).await?;
    let version = written.version();
    written.finish(t).await?;
    Ok(version)
}

pub(crate) fn write_op(partition_by: &[&str]) -> DeltaOperation {
    DeltaOperation::Write {
        mode: SaveMode::Append,
        partition_by: (!partition_by.is_empty())
            .then(|| partition_by.iter().map(|s| s.to_string()).collect()),
        predicate: None,
    }
}

/// [`commit_txns`] recorded as operation `op` (e.g. `OPTIMIZE` for a compaction).
pub async fn commit_op(
    t: &mut DeltaTable,
    actions: Vec<Action>,
    txns: Vec<Transaction>,
    op: DeltaOperation,
) -> Result<i64, DeltaError> {
    commit_with(t, actions, txns, op, COMMIT_RETRIES).await
}

async fn commit_with(
    t: &mut DeltaTable,
    actions: Vec<Action>,
    txns: Vec<Transaction>,
    op: DeltaOperation,
    retries: usize,
) -> Result<i64, DeltaError> {
    let written = write_commit(t, actions, txns, op, retries).await?;
    let version = written.version();
    written.finish(t).await?;
    Ok(version)
}

/// [`commit_txns_exclusive`] that returns as soon as the commit is in the log (durable and
/// visible to readers), before `t`'s snapshot is brought to it (a log listing, a read of the new
/// commit and a replay of the table's files; on S3 often longer than the commit itself): the
/// caller answers whoever waits for the commit, then calls [`Written::finish`].
///
/// The commit is one conditional put of the log entry at the version after `t`'s: it fails
/// (`is_conflict`) if any commit got there first. (delta-rs lists the log before every commit to
/// learn the latest version; with no retries that listing can only fail the commit early.)
pub async fn commit_txns_exclusive_written(
    t: &DeltaTable,
    actions: Vec<Action>,
    txns: Vec<Transaction>,
    partition_by: &[&str],
) -> Result<Written, DeltaError> {
    commit_txns_rebasing(t, actions, txns, partition_by, None).await
}

/// What a commit decided on a snapshot depends on, besides the snapshot's version: the DQMIO files
/// whose last generation it read and whose objects it adds or removes, and the objects it removes.
/// A commit that lands first and touches none of these leaves the decision as it was.
#[derive(Debug, Default)]
pub struct Claims {
    /// DQMIO file ids (their application transactions and objects).
    pub file_ids: std::collections::BTreeSet<i64>,
    /// Object names (last path segment) removed.
    pub removed: std::collections::HashSet<String>,
}

/// Commits that landed first, read and found not to touch a rebasing commit's claims, at most
/// ([`commit_txns_rebasing`]); past that the caller decides again on a followed snapshot.
const MAX_REBASES: u64 = 64;

/// [`commit_txns_exclusive_written`]; with `claims`, a commit that finds its version taken reads
/// the commit that took it and, when that commit touches none of the claims (no application
/// transaction of the same files, no object of theirs added or removed, none of the removed
/// objects removed, no protocol or metadata change), puts the same entry at the next version: one
/// GET per commit that landed first, instead of following the table (a log listing, its commits,
/// a replay of its files) and deciding again. This is Delta's optimistic concurrency: concurrent
/// ingests of different files append to different files' rows and do not conflict logically. Any
/// other commit that landed first is a conflict (`is_conflict`): decide again.
pub async fn commit_txns_rebasing(
    t: &DeltaTable,
    actions: Vec<Action>,
    txns: Vec<Transaction>,
    partition_by: &[&str],
    claims: Option<&Claims>,
) -> Result<Written, DeltaError> {
    commit_rebasing_as(t, actions, txns, partition_by, claims, writer()).await
}

/// [`commit_txns_rebasing`] with no claims (any commit that landed first fails it), named in the
/// log as written by `writer` instead of this process: what another process's commit looks like
/// (tests of `handover::Mode::Crowded`).
pub async fn commit_txns_as(
    t: &DeltaTable,
    actions: Vec<Action>,
    txns: Vec<Transaction>,
    partition_by: &[&str],
    writer: &str,
) -> Result<Written, DeltaError> {
    commit_rebasing_as(t, actions, txns, partition_by, None, writer).await
}

async fn commit_rebasing_as(
    t: &DeltaTable,
    actions: Vec<Action>,
    txns: Vec<Transaction>,
    partition_by: &[&str],
    claims: Option<&Claims>,
    writer: &str,
) -> Result<Written, DeltaError> {
    let url = t.table_url().clone();
    let snapshot = t.snapshot().map_err(|e| DeltaError::delta(&url, e))?;
    let data = CommitData::new(actions, write_op(partition_by), written_by(writer), txns);
    PROTOCOL
        .can_commit(snapshot, &data.actions, &data.operation)
        .map_err(|e| DeltaError::delta(&url, e.into()))?;
    let bytes = data
        .get_bytes()
        .map_err(|e| DeltaError::delta(&url, e.into()))?;
    let first = snapshot.version() + 1;
    let mut version = first;
    loop {
        let put = t
            .log_store()
            .write_commit_entry(
                version,
                CommitOrBytes::LogBytes(bytes.clone()),
                uuid::Uuid::new_v4(),
            )
            .await
            .map_err(|e| DeltaError::delta(&url, e.into()));
        match put {
            Ok(()) => {
                return Ok(Written {
                    version,
                    post: None,
                    url,
                    rebased: version - first,
                })
            }
            Err(e) if e.is_conflict() => {
                let Some(claims) = claims.filter(|_| version - first < MAX_REBASES) else {
                    return Err(e);
                };
                // The commit that got there first; unreadable: decide again on a followed table.
                let store = t.log_store().object_store(None);
                let path = Path::from(format!("_delta_log/{version:020}.json"));
                let winner = match object_store::ObjectStoreExt::get(&store, &path).await {
                    Ok(got) => got.bytes().await.ok(),
                    Err(_) => None,
                };
                if winner.is_none_or(|w| touches(w.as_ref(), claims)) {
                    return Err(e);
                }
                tracing::debug!(table = %url, version, "version taken by a commit of other files; committing at the next one");
                version += 1;
            }
            Err(e) => return Err(e),
        }
    }
}

/// True when commit entry `json` (newline-delimited actions) touches `claims`, or cannot be read
/// (then it is treated as a conflict). The entry is read as `handover` reads a commit that landed.
pub fn touches(json: &[u8], claims: &Claims) -> bool {
    crate::handover::touches_claims(json, claims)
}

/// A commit written to the log whose post-commit work (the new snapshot; a checkpoint every
/// `delta.checkpointInterval` commits) is still to be done by [`Written::finish`].
pub struct Written {
    version: u64,
    /// Versions taken by other files' commits that this one went past ([`commit_txns_rebasing`]).
    rebased: u64,
    /// delta-rs's own post-commit work, for a commit made through its `CommitBuilder`.
    post: Option<PostCommit>,
    url: Url,
}

/// Whether a committer loads its table again from each checkpoint it writes
/// (`DIALS_RELOAD_AT_CHECKPOINT=0`: no).
fn reload_at_checkpoints() -> bool {
    static RELOAD: OnceLock<bool> = OnceLock::new();
    *RELOAD.get_or_init(|| {
        std::env::var("DIALS_RELOAD_AT_CHECKPOINT").map_or(true, |v| v.trim() != "0")
    })
}

impl std::fmt::Debug for Written {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Written")
            .field("version", &self.version)
            .field("table", &self.url.as_str())
            .finish()
    }
}

impl Written {
    /// A commit written at `version` (the log entry put by `url`'s caller itself), `rebased` versions
    /// after the first it tried.
    pub(crate) fn at(version: u64, url: Url, rebased: u64) -> Self {
        Written {
            version,
            rebased,
            post: None,
            url,
        }
    }

    /// Commits of other files that landed first and that this one went past without deciding
    /// again ([`commit_txns_rebasing`]).
    pub fn rebased(&self) -> u64 {
        self.rebased
    }

    /// The commit's version.
    pub fn version(&self) -> i64 {
        i64::try_from(self.version).unwrap_or(i64::MAX)
    }

    /// True when [`Written::finish`] has work beyond bringing the snapshot to the commit: a
    /// checkpoint is due at its version (`delta.checkpointInterval` of `t`, the table committed
    /// to), or delta-rs's own post-commit work is pending.
    pub fn checkpoint_due(&self, t: &DeltaTable) -> bool {
        use deltalake_core::table::config::TablePropertiesExt;
        if self.post.is_some() {
            return true;
        }
        let interval = t
            .snapshot()
            .map_or(1, |s| s.table_config().checkpoint_interval().get());
        (self.version + 1).is_multiple_of(interval)
    }

    /// Brings `t` (the table committed to) to the commit's version and writes a checkpoint when
    /// one is due. On an error the commit stands; only `t` is left behind (follow it again).
    pub async fn finish(self, t: &mut DeltaTable) -> Result<(), DeltaError> {
        let url = self.url;
        match self.post {
            Some(post) => {
                let done = post.await.map_err(|e| DeltaError::delta(&url, e))?;
                // The commit's own snapshot, already brought to its version by delta-rs
                // (following the log again would read the same commit a second time).
                t.state = Some(done.snapshot);
            }
            None => {
                t.update_incremental(Some(self.version))
                    .await
                    .map_err(|e| DeltaError::delta(&url, e))?;
                use deltalake_core::table::config::TablePropertiesExt;
                let interval = t
                    .snapshot()
                    .map_err(|e| DeltaError::delta(&url, e))?
                    .table_config()
                    .checkpoint_interval()
                    .get();
                let due = (self.version + 1).is_multiple_of(interval);
                if due && t.version() == Some(self.version) {
                    deltalake_core::protocol::checkpoints::create_checkpoint(t, None)
                        .await
                        .map_err(|e| DeltaError::delta(&url, e))?;
                    if reload_at_checkpoints() {
                        // The snapshot again from the checkpoint just written: followed commit by
                        // commit, delta-rs's snapshot keeps what each update decoded, and a process
                        // that commits for hours grew by ~90 KB per file (docs/benchmarks.md, stop 26).
                        t.state = None;
                        t.update_incremental(Some(self.version))
                            .await
                            .map_err(|e| DeltaError::delta(&url, e))?;
                    }
                }
            }
        }
        Ok(())
    }
}

async fn write_commit(
    t: &DeltaTable,
    actions: Vec<Action>,
    txns: Vec<Transaction>,
    op: DeltaOperation,
    retries: usize,
) -> Result<Written, DeltaError> {
    let url = t.table_url().clone();
    // No log cleanup after a commit: delta-rs would list the whole `_delta_log` for it after
    // every commit (a cost that grows with the table's history); `compact::vacuum` cleans the log.
    let props = CommitProperties::default()
        .with_application_transactions(txns)
        .with_cleanup_expired_logs(Some(false));
    let snapshot = t.snapshot().map_err(|e| DeltaError::delta(&url, e))?;
    let post = CommitBuilder::from(props)
        .with_max_retries(retries)
        .with_actions(actions)
        .build(Some(snapshot), t.log_store(), op)
        .into_prepared_commit_future()
        .await
        .map_err(|e| DeltaError::delta(&url, e))?
        .await
        .map_err(|e| DeltaError::delta(&url, e))?;
    Ok(Written {
        version: post.version,
        post: Some(post),
        url,
        rebased: 0,
    })
}

/// The application transaction id of a DQMIO file's commits.
pub fn file_app_id(file_id: i64) -> String {
    format!("dials.file.{file_id}")
}

/// A new ingest attempt's generation: its start time in ms, shifted left by 20 bits, with 20
/// random bits below, so that two attempts started in the same millisecond still have a strict
/// order (with equal generations both would pass the "newer wins" check and could interleave).
pub fn new_generation() -> i64 {
    let low = (uuid::Uuid::new_v4().as_u128() & 0xF_FFFF) as i64;
    (now_ms() << 20) | low
}

/// The generation of every ingest attempt of one version of a source object: versions ordered by
/// modification time (ms), then by their entity tag's hash, so two versions written in the same
/// millisecond still have a strict (if arbitrary) order; every attempt of the same version has the
/// same generation, so a re-ingest of it (a redelivery, an operator's re-run) is not superseded by
/// an earlier one. Bit 62 set: above every [`new_generation`] (attempts of sources that do not know
/// their version, and lakes written before versions were recorded), so a versioned ingest replaces
/// those. Fits until the year 2109.
pub fn version_generation(v: &dials_dqmio::SourceVersion) -> i64 {
    let tag = crate::ids::stable_id("etag", crate::store::bare_etag(&v.etag)) & 0xF_FFFF;
    (1 << 62) | ((v.modified_ms.clamp(0, (1 << 42) - 1)) << 20) | tag
}

/// True when `a` and `b` are generations of two different source versions whose modification
/// times are equal ([`version_generation`]): their order is then their entity tags' hashes, not
/// when they were written. S3 records modification times to the second, so two writes of a key
/// within one second meet this; the committer then asks the store which version is current.
pub fn same_instant(a: i64, b: i64) -> bool {
    const VERSIONED: i64 = 1 << 62;
    a != b && a & VERSIONED != 0 && b & VERSIONED != 0 && a >> 20 == b >> 20
}

/// The file's transaction: `generation` orders its ingest attempts (the newer one wins).
pub fn file_txn(file_id: i64, generation: i64) -> Transaction {
    Transaction::new_with_last_update(file_app_id(file_id), generation, Some(now_ms()))
}

/// The generation of the last commit of DQMIO file `file_id` to `t` (none yet: `None`).
pub async fn file_generation(t: &DeltaTable, file_id: i64) -> Result<Option<i64>, DeltaError> {
    let snap = t
        .snapshot()
        .map_err(|e| DeltaError::delta(t.table_url(), e))?;
    snap.transaction_version(t.log_store().as_ref(), file_app_id(file_id))
        .await
        .map_err(|e| DeltaError::delta(t.table_url(), e))
}

/// The object store path (in `lake.store`) of a table-relative path.
pub fn store_path(lake: &Location, ws: &str, table: &str, rel: &str) -> Path {
    let mut p = lake.child(&[ws, table]);
    for part in rel.split('/') {
        p = p.join(part);
    }
    p
}

/// What [`migrate`] did to one table.
#[derive(Debug, Clone, serde::Serialize)]
pub struct MigratedTable {
    /// Workspace.
    pub workspace: String,
    /// Table.
    pub table: String,
    /// Objects committed (0 when the table already had a log).
    pub objects: usize,
    /// True when the table already was a Delta table (left as it is).
    pub already_delta: bool,
}

/// Converts a lake written before the Delta format, in place: for each workspace, every table
/// folder without a `_delta_log` gets one commit naming its objects — in the per-file tables only
/// the objects of files whose `file_index` record says FINISHED (the old format's visibility rule;
/// objects of unfinished files stay out, as orphans) — and `file_index` itself last. Objects keep
/// their names and bytes (no copy). Idempotent: a table that has a log is left as it is, so a
/// migration that stopped half-way is finished by running it again.
pub async fn migrate(
    lake: &Location,
    workspaces: &[String],
) -> Result<Vec<MigratedTable>, MigrateError> {
    use futures::TryStreamExt;
    use object_store::ObjectStoreExt;
    let mut out = Vec::new();
    for ws in workspaces {
        // Old file_index records: one object per file, `part-<file_id>.parquet`.
        let mut finished: std::collections::BTreeSet<i64> = std::collections::BTreeSet::new();
        let records: Vec<object_store::ObjectMeta> = lake
            .store
            .list(Some(&lake.child(&[ws, "file_index"])))
            .try_collect()
            .await
            .map_err(MigrateError::Store)?;
        for r in records.iter().filter(|m| {
            m.location.as_ref().ends_with(".parquet")
                && !m.location.as_ref().contains("/_delta_log/")
        }) {
            let bytes = lake
                .store
                .get(&r.location)
                .await
                .map_err(MigrateError::Store)?
                .bytes()
                .await
                .map_err(MigrateError::Store)?;
            let reader =
                parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(bytes)
                    .and_then(|b| b.build())
                    .map_err(|e| MigrateError::Object(r.location.to_string(), e.to_string()))?;
            for batch in reader {
                let batch = batch
                    .map_err(|e| MigrateError::Object(r.location.to_string(), e.to_string()))?;
                let ids = batch.column_by_name("file_id").and_then(|c| {
                    c.as_any()
                        .downcast_ref::<arrow::array::Int64Array>()
                        .cloned()
                });
                let status = batch.column_by_name("status").and_then(|c| {
                    c.as_any()
                        .downcast_ref::<arrow::array::StringArray>()
                        .cloned()
                });
                if let (Some(ids), Some(status)) = (ids, status) {
                    for i in 0..batch.num_rows() {
                        if status.value(i) == "FINISHED" {
                            finished.insert(ids.value(i));
                        }
                    }
                }
            }
        }
        for table in TABLES {
            if let Some(t) = open(lake, ws, table).await? {
                if t.version().is_some() {
                    out.push(MigratedTable {
                        workspace: ws.clone(),
                        table: table.into(),
                        objects: 0,
                        already_delta: true,
                    });
                    continue;
                }
            }
            let root = lake.child(&[ws, table]);
            let objects: Vec<object_store::ObjectMeta> = lake
                .store
                .list(Some(&root))
                .try_collect()
                .await
                .map_err(MigrateError::Store)?;
            let (_, partitions) = layout(table)?;
            let mut adds = Vec::new();
            for m in objects {
                let Some(rel) = m
                    .location
                    .as_ref()
                    .strip_prefix(root.as_ref())
                    .map(|r| r.trim_start_matches('/').to_string())
                else {
                    continue;
                };
                if !rel.ends_with(".parquet") || rel.starts_with("_delta_log/") {
                    continue;
                }
                let name = object_name(&rel);
                let keep = match table {
                    "file_index" | "dataset_index" => true,
                    _ => name
                        .strip_prefix("part-")
                        .and_then(|n| n.strip_suffix(".parquet"))
                        .and_then(|n| n.parse::<i64>().ok())
                        .is_some_and(|id| finished.contains(&id)),
                };
                if !keep {
                    continue;
                }
                let mut parts: Vec<(&str, String)> = Vec::new();
                for p in partitions {
                    let v = rel
                        .split('/')
                        .find_map(|seg| seg.strip_prefix(&format!("{p}=")).map(str::to_string))
                        .ok_or_else(|| {
                            MigrateError::Object(m.location.to_string(), format!("no {p}= folder"))
                        })?;
                    parts.push((p, v));
                }
                let mut a = add(rel, m.size, &parts, None);
                a.modification_time = m.last_modified.timestamp_millis();
                adds.push(Action::Add(a));
            }
            let n = adds.len();
            let mut t = open_or_create(lake, ws, table).await?;
            if n > 0 {
                commit(&mut t, adds, None, partitions).await?;
            }
            out.push(MigratedTable {
                workspace: ws.clone(),
                table: table.into(),
                objects: n,
                already_delta: false,
            });
        }
    }
    Ok(out)
}

/// Errors of [`migrate`].
#[derive(Debug, thiserror::Error)]
pub enum MigrateError {
    /// The Delta log.
    #[error(transparent)]
    Delta(#[from] DeltaError),
    /// Listing or reading the old objects.
    #[error("object store: {0}")]
    Store(object_store::Error),
    /// An old object that cannot be read as the old format wrote it.
    #[error("{0}: {1}")]
    Object(String, String),
}
