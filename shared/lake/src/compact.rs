//! Compaction and vacuum of the lake's Delta tables.
//!
//! An ingest adds one object per DQMIO file to each table (per run for `th1`/`th2`): PromptReco
//! writes ~100 files per run, so a run's partition collects ~100 small objects and every query of
//! the run opens them all. [`compact_table`] merges a partition's small objects into one
//! (`part-c-<uuid>.parquet`, rows in the order of their first lumisection, so the table stays
//! lumisection-major) and commits the merged object in and its inputs out in one Delta `OPTIMIZE`
//! commit (`dataChange: false`: the table's rows do not change). Readers of an older snapshot keep
//! reading the inputs until [`vacuum`] deletes them, which it does only past a retention longer
//! than any query.
//!
//! A merged object holds rows of many DQMIO files. When one of them is ingested again, its rows
//! must leave the table with its objects: [`file_rewrites`] finds the merged objects that hold
//! rows of the file (Add statistics first, then the objects' `file_id` column) and writes each
//! again without them, for the ingest's own commit.

use std::collections::{BTreeMap, HashSet};
use std::time::Duration;

use arrow::array::{Array, BooleanArray, Int64Array};
use arrow::compute::filter_record_batch;
use deltalake_core::kernel::{Action, Add, Remove};
use deltalake_core::operations::vacuum::VacuumMode;
use deltalake_core::protocol::DeltaOperation;
use futures::TryStreamExt;
use object_store::buffered::BufWriter;
use object_store::path::Path;
use object_store::ObjectStoreExt;
use parquet::arrow::arrow_reader::ArrowReaderOptions;
#[allow(deprecated)]
use parquet::arrow::async_reader::ParquetObjectReader;
use parquet::arrow::async_writer::AsyncArrowWriter;
use parquet::arrow::{ParquetRecordBatchStreamBuilder, ProjectionMask};

use crate::delta::{self, ActiveFile, DeltaError};
use crate::ingest::writer_props;
use crate::store::Location;

/// The tables compaction also writes an ME-major copy of (`me_major.rs`).
pub const ME_MAJOR_TABLES: [&str; 2] = [delta::ME_MAJOR[0].0, delta::ME_MAJOR[1].0];

/// Name prefix of a merged object (never a DQMIO file's: those are `part-<file id>-…`).
pub const MERGED_PREFIX: &str = "part-c-";

/// The tables compaction merges: every lake table but `dataset_index` (one tiny object per
/// dataset, and an ingest finds its dataset's row by the object's name).
pub fn tables() -> impl Iterator<Item = &'static str> {
    delta::TABLES
        .iter()
        .copied()
        .filter(|t| *t != "dataset_index")
}

/// Upload part size of a merged object.
const UPLOAD_PART_BYTES: usize = 6 << 20;
/// Times a compaction commit is tried again when concurrent commits do not touch its inputs.
const COMMIT_ATTEMPTS: usize = 20;

/// Errors of compaction and vacuum.
#[derive(Debug, thiserror::Error)]
pub enum CompactError {
    /// The Delta log failed.
    #[error("{0}")]
    Delta(#[from] DeltaError),
    /// The object store failed.
    #[error("object store: {0}")]
    Store(#[from] object_store::Error),
    /// Reading or writing Parquet failed.
    #[error("parquet: {0}")]
    Parquet(#[from] parquet::errors::ParquetError),
    /// Filtering rows failed.
    #[error("arrow: {0}")]
    Arrow(#[from] arrow::error::ArrowError),
    /// An object lacks the `file_id` column every lake table has.
    #[error("{0}: no file_id column")]
    NoFileId(String),
    /// An object lacks a column of the ME-major sort key (`me_id`, `ls_number`, `file_id`, `seq`).
    #[error("{0}: no me_id/ls_number/file_id/seq column")]
    NoKey(String),
    /// An object has more rows than a copy can address (2^32).
    #[error("{0}: too many rows for an ME-major copy")]
    TooLarge(String),
    /// Rows selected from an object for a copy did not come back as selected.
    #[error("{0}: rows read back differ from those selected for the ME-major copy")]
    CopyRows(String),
    /// Concurrent commits to a copy table kept winning.
    #[error("ME-major copy of run {0}: commit kept losing to concurrent commits")]
    CopyContended(i64),
    /// vacuum failed.
    #[error("vacuum of {table}: {source}")]
    Vacuum {
        /// The table.
        table: String,
        /// What delta-rs said.
        #[source]
        source: deltalake_core::DeltaTableError,
    },
}

/// When a partition is compacted.
#[derive(Debug, Clone, Copy)]
pub struct CompactOptions {
    /// A partition is merged once it holds at least this many small objects.
    pub min_objects: usize,
    /// Objects of at least this size are left as they are (already compacted or big).
    pub small_bytes: u64,
    /// A merged object holds at most about this many input bytes (a partition with more small
    /// bytes becomes several merged objects).
    pub target_bytes: u64,
}

impl Default for CompactOptions {
    fn default() -> Self {
        CompactOptions {
            min_objects: 8,
            small_bytes: 64 << 20,
            target_bytes: 512 << 20,
        }
    }
}

/// What compaction did to one table (a line of `dials compact`'s output).
#[derive(Debug, Clone, Default, serde::Serialize, serde::Deserialize)]
pub struct TableCompaction {
    /// Workspace.
    pub workspace: String,
    /// Table.
    pub table: String,
    /// Merged objects committed.
    pub merged: usize,
    /// Objects they replaced.
    pub inputs: usize,
    /// Bytes of the inputs.
    pub bytes_in: u64,
    /// Bytes of the merged objects.
    pub bytes_out: u64,
    /// Groups left for a later run because a concurrent commit removed one of their inputs.
    pub deferred: usize,
    /// Active objects after compaction.
    pub objects_after: usize,
    /// ME-major copies written (one object per run whose copy was missing or stale; `th1`/`th2`).
    pub copies: usize,
    /// Bytes of those copies.
    pub copy_bytes: u64,
    /// Runs whose copy already covered their current objects.
    pub copies_current: usize,
    /// Runs left without a copy (an object of an older schema).
    pub copies_skipped: usize,
}

/// The partition key of an object (its folder; empty for unpartitioned tables).
fn partition_of(f: &ActiveFile) -> String {
    f.path
        .rsplit_once('/')
        .map_or(String::new(), |(dir, _)| dir.to_string())
}

/// Merges the small objects of every partition of `ws`'s `table` that has at least
/// `opts.min_objects` of them; one `OPTIMIZE` commit per merged object. For `th1`/`th2`
/// ([`ME_MAJOR_TABLES`]) it then writes the ME-major copy of every run whose copy does not cover
/// the run's objects as they are now (`me_major.rs`).
pub async fn compact_table(
    lake: &Location,
    ws: &str,
    table: &str,
    opts: CompactOptions,
) -> Result<TableCompaction, CompactError> {
    let (schema, _) = delta::layout(table)?;
    compact_table_as(lake, ws, table, &schema, opts).await
}

/// As [`compact_table`], for a table whose files have schema `schema` (a table of another layer
/// that is not one of the ingest's, e.g. the ML results `ml_scores`). Its writers must find the
/// rows they replace in merged objects too ([`rewrite_without`]).
pub async fn compact_table_as(
    lake: &Location,
    ws: &str,
    table: &str,
    schema: &arrow::datatypes::SchemaRef,
    opts: CompactOptions,
) -> Result<TableCompaction, CompactError> {
    let mut report = TableCompaction {
        workspace: ws.to_string(),
        table: table.to_string(),
        ..Default::default()
    };
    let Some(mut t) = delta::open(lake, ws, table).await? else {
        return Ok(report);
    };
    let mut parts: BTreeMap<String, Vec<ActiveFile>> = BTreeMap::new();
    for f in delta::active_files(&t)? {
        // A STARTED record belongs to an ingest still running (or dead): its FINISHED commit removes
        // it by name, so it is never merged.
        let started = delta::object_name(&f.path).ends_with("-started.parquet");
        if !started && u64::try_from(f.size).unwrap_or(u64::MAX) < opts.small_bytes {
            parts.entry(partition_of(&f)).or_default().push(f);
        }
    }
    for (dir, mut files) in parts {
        if files.len() < opts.min_objects.max(2) {
            continue;
        }
        // Lumisection-major: inputs in the order of their first lumisection (index tables without
        // one keep their commit order).
        files.sort_by_key(|f| {
            (
                f.int_bounds("ls_number").map_or(i64::MIN, |b| b.0),
                f.modification_time,
                f.path.clone(),
            )
        });
        let mut groups: Vec<Vec<ActiveFile>> = vec![Vec::new()];
        let mut bytes = 0u64;
        for f in files {
            let size = u64::try_from(f.size).unwrap_or(0);
            if bytes + size > opts.target_bytes && groups.last().is_some_and(|g| g.len() > 1) {
                groups.push(Vec::new());
                bytes = 0;
            }
            bytes += size;
            if let Some(g) = groups.last_mut() {
                g.push(f);
            }
        }
        for group in groups.into_iter().filter(|g| g.len() > 1) {
            let name = format!("{MERGED_PREFIX}{}.parquet", uuid::Uuid::new_v4().simple());
            let rel = if dir.is_empty() {
                name
            } else {
                format!("{dir}/{name}")
            };
            let Some(written) = merge(lake, ws, table, &group, &rel, schema).await? else {
                continue; // inputs of another schema: left as they are
            };
            let add = Add {
                data_change: false,
                ..written.clone()
            };
            let mut actions = vec![Action::Add(add)];
            actions.extend(group.iter().map(|f| {
                Action::Remove(Remove {
                    data_change: false,
                    ..delta::remove(f)
                })
            }));
            if commit_compaction(&mut t, actions, &group, opts.target_bytes).await? {
                report.merged += 1;
                report.inputs += group.len();
                report.bytes_in += group
                    .iter()
                    .map(|f| u64::try_from(f.size).unwrap_or(0))
                    .sum::<u64>();
                report.bytes_out += u64::try_from(written.size).unwrap_or(0);
            } else {
                report.deferred += 1;
                // Never part of a table: delete now rather than wait for vacuum.
                let _ = lake
                    .store
                    .delete(&delta::store_path(lake, ws, table, &rel))
                    .await;
            }
        }
    }
    let active = delta::active_files(&t)?;
    report.objects_after = active.len();
    if ME_MAJOR_TABLES.contains(&table) {
        crate::me_major::write_copies(lake, ws, table, &active, &mut report).await?;
    }
    Ok(report)
}

/// Commits a compaction; false when a concurrent commit removed one of its inputs first (the
/// group is left for a later run). Commits that touched other objects are retried.
async fn commit_compaction(
    t: &mut deltalake_core::DeltaTable,
    actions: Vec<Action>,
    inputs: &[ActiveFile],
    target: u64,
) -> Result<bool, CompactError> {
    for _ in 0..COMMIT_ATTEMPTS {
        let op = DeltaOperation::Optimize {
            predicate: None,
            target_size: i64::try_from(target).unwrap_or(i64::MAX),
        };
        match delta::commit_op(t, actions.clone(), Vec::new(), op).await {
            Ok(_) => return Ok(true),
            Err(e) if e.is_conflict() => {
                t.update_incremental(None)
                    .await
                    .map_err(|e| DeltaError::Delta {
                        table: t.table_url().to_string(),
                        source: e,
                    })?;
                let active: HashSet<String> = delta::active_files(t)?
                    .into_iter()
                    .map(|f| f.path)
                    .collect();
                if !inputs.iter().all(|f| active.contains(&f.path)) {
                    return Ok(false);
                }
            }
            Err(e) => return Err(e.into()),
        }
    }
    Ok(false)
}

/// Streams `inputs` (in order) into one new object at `rel`; `None` (nothing written) when an
/// input's schema is not the table's (objects of an older table layout are left alone).
async fn merge(
    lake: &Location,
    ws: &str,
    table: &str,
    inputs: &[ActiveFile],
    rel: &str,
    schema: &arrow::datatypes::SchemaRef,
) -> Result<Option<Add>, CompactError> {
    // Every input's footer first: an input of another schema leaves the group as it is, before
    // anything is written.
    let mut builders = Vec::with_capacity(inputs.len());
    for f in inputs {
        let builder = open_object(lake, ws, table, f, None).await?;
        if builder.schema().fields() != schema.fields() {
            tracing::warn!(ws, table, object = %f.path, "schema differs from the table's; partition not compacted");
            return Ok(None);
        }
        builders.push(builder);
    }
    let out = delta::store_path(lake, ws, table, rel);
    let w = BufWriter::with_capacity(lake.store.clone(), out, UPLOAD_PART_BYTES);
    let mut w = AsyncArrowWriter::try_new(w, schema.clone(), Some(writer_props()))?;
    let max_rows = writer_props()
        .max_row_group_row_count()
        .unwrap_or(usize::MAX);
    let partitions: Vec<(String, String)> = inputs
        .first()
        .map(|f| {
            f.partition_values
                .iter()
                .filter_map(|(k, v)| Some((k.clone(), v.clone()?)))
                .collect()
        })
        .unwrap_or_default();
    for builder in builders {
        let rows = usize::try_from(builder.metadata().file_metadata().num_rows()).unwrap_or(0);
        if w.in_progress_rows() > 0 && w.in_progress_rows() + rows > max_rows {
            w.flush().await?;
        }
        let mut stream = builder.build()?;
        while let Some(b) = stream.try_next().await? {
            w.write(&b).await?;
        }
    }
    let meta = w.finish().await?;
    let size = w.bytes_written() as u64;
    let parts: Vec<(&str, String)> = partitions
        .iter()
        .map(|(k, v)| (k.as_str(), v.clone()))
        .collect();
    Ok(Some(delta::add(rel.to_string(), size, &parts, Some(&meta))))
}

/// A Parquet reader of an active object, reading only `columns` if given.
#[allow(deprecated)] // ParquetObjectReader: the object_store reader parquet 59 still ships
pub(crate) async fn open_object(
    lake: &Location,
    ws: &str,
    table: &str,
    f: &ActiveFile,
    columns: Option<&[&str]>,
) -> Result<ParquetRecordBatchStreamBuilder<ParquetObjectReader>, CompactError> {
    let path: Path = delta::store_path(lake, ws, table, &f.path);
    let reader = ParquetObjectReader::new(lake.store.clone(), path)
        .with_file_size(u64::try_from(f.size).unwrap_or(0));
    let b = ParquetRecordBatchStreamBuilder::new_with_options(reader, ArrowReaderOptions::new())
        .await?;
    Ok(match columns {
        None => b,
        Some(cols) => {
            let mask = ProjectionMask::columns(b.parquet_schema(), cols.iter().copied());
            b.with_projection(mask)
        }
    })
}

/// The merged objects of `active` that hold rows of DQMIO file `file_id`, each written again
/// without them: `(object to remove, its replacement if any rows remain)`. Objects whose Add
/// statistics exclude the id are not opened; the others are read by their `file_id` column first.
pub async fn file_rewrites(
    lake: &Location,
    ws: &str,
    table: &str,
    file_id: i64,
    active: &[ActiveFile],
) -> Result<Vec<(ActiveFile, Option<Add>)>, CompactError> {
    let mut out = Vec::new();
    for f in active
        .iter()
        .filter(|f| delta::object_name(&f.path).starts_with(MERGED_PREFIX))
    {
        if f.int_bounds("file_id")
            .is_some_and(|(lo, hi)| file_id < lo || file_id > hi)
        {
            continue;
        }
        let drop = |b: &arrow::array::RecordBatch| -> Result<BooleanArray, CompactError> {
            let col = b
                .column_by_name("file_id")
                .and_then(|c| c.as_any().downcast_ref::<Int64Array>())
                .ok_or_else(|| CompactError::NoFileId(f.path.clone()))?;
            Ok(col.iter().map(|v| Some(v == Some(file_id))).collect())
        };
        if let Some(replacement) = rewrite_without(lake, ws, table, f, &["file_id"], &drop).await? {
            out.push((f.clone(), replacement));
        }
    }
    Ok(out)
}

/// What a row filter selects in a merged object: `true` for the rows to drop.
pub type DropRows<'a> =
    dyn Fn(&arrow::array::RecordBatch) -> Result<BooleanArray, CompactError> + Send + Sync + 'a;

/// Object `f` of `ws`'s `table` written again without the rows `drop` selects: `None` when it
/// selects none (nothing to do), `Some(None)` when it selects every row (remove the object),
/// `Some(Some(add))` for the new object holding the rest (not yet committed: the caller commits
/// its Add with the Remove of `f`). The object is read first by `columns` alone (what `drop`
/// looks at), then whole only if some rows stay.
pub async fn rewrite_without(
    lake: &Location,
    ws: &str,
    table: &str,
    f: &ActiveFile,
    columns: &[&str],
    drop: &DropRows<'_>,
) -> Result<Option<Option<Add>>, CompactError> {
    let mut keys = open_object(lake, ws, table, f, Some(columns))
        .await?
        .build()?;
    let (mut dropped, mut kept) = (0usize, 0usize);
    while let Some(b) = keys.try_next().await? {
        let sel = drop(&b)?;
        let n = sel.iter().filter(|v| *v == Some(true)).count();
        dropped += n;
        kept += b.num_rows() - n;
    }
    if dropped == 0 {
        return Ok(None);
    }
    if kept == 0 {
        return Ok(Some(None));
    }
    let builder = open_object(lake, ws, table, f, None).await?;
    let schema = builder.schema().clone();
    let dir = partition_of(f);
    let name = format!("{MERGED_PREFIX}{}.parquet", uuid::Uuid::new_v4().simple());
    let rel = if dir.is_empty() {
        name
    } else {
        format!("{dir}/{name}")
    };
    let w = BufWriter::with_capacity(
        lake.store.clone(),
        delta::store_path(lake, ws, table, &rel),
        UPLOAD_PART_BYTES,
    );
    let mut w = AsyncArrowWriter::try_new(w, schema, Some(writer_props()))?;
    let mut stream = builder.build()?;
    while let Some(b) = stream.try_next().await? {
        let keep = arrow::compute::not(&drop(&b)?)?;
        let b = filter_record_batch(&b, &keep)?;
        if b.num_rows() > 0 {
            w.write(&b).await?;
        }
    }
    let meta = w.finish().await?;
    let size = w.bytes_written() as u64;
    let parts: Vec<(&str, String)> = f
        .partition_values
        .iter()
        .filter_map(|(k, v)| Some((k.as_str(), v.clone()?)))
        .collect();
    Ok(Some(Some(delta::add(rel, size, &parts, Some(&meta)))))
}

/// Compacts every table of every workspace in `workspaces` (those of [`tables`]).
pub async fn compact_lake(
    lake: &Location,
    workspaces: &[String],
    opts: CompactOptions,
) -> Result<Vec<TableCompaction>, CompactError> {
    let mut out = Vec::new();
    for ws in workspaces {
        for table in tables() {
            out.push(compact_table(lake, ws, table, opts).await?);
        }
    }
    Ok(out)
}

/// What vacuum deleted from one table.
#[derive(Debug, Clone, serde::Serialize)]
pub struct TableVacuum {
    /// Workspace.
    pub workspace: String,
    /// Table.
    pub table: String,
    /// Objects deleted (removed from the table, or never committed, longer ago than the retention).
    pub deleted: usize,
    /// Expired `_delta_log` entries deleted.
    pub log_entries_deleted: usize,
}

/// Deletes the objects of `ws`'s tables that no snapshot younger than `retention` needs: objects
/// removed by a commit (compaction, re-ingest) and objects no commit ever added (failed or
/// superseded attempts) last modified before it. `retention` must exceed the longest query and
/// the longest ingest attempt (an attempt's objects are uncommitted until its commit). The
/// ME-major copy tables are vacuumed too.
pub async fn vacuum(
    lake: &Location,
    ws: &str,
    retention: Duration,
) -> Result<Vec<TableVacuum>, CompactError> {
    let mut out = Vec::new();
    for table in delta::TABLES
        .into_iter()
        .chain(delta::ME_MAJOR.iter().map(|(_, copy)| *copy))
    {
        out.extend(vacuum_table(lake, ws, table, retention).await?);
    }
    Ok(out)
}

/// As [`vacuum`], for one table (any Delta table of the workspace, e.g. `ml_scores`); `None` when
/// it does not exist.
pub async fn vacuum_table(
    lake: &Location,
    ws: &str,
    table: &str,
    retention: Duration,
) -> Result<Option<TableVacuum>, CompactError> {
    let Some(t) = delta::open(lake, ws, table).await? else {
        return Ok(None);
    };
    let retention = chrono::Duration::from_std(retention).unwrap_or(chrono::Duration::MAX);
    let (t, metrics) = t
        .vacuum()
        .with_retention_period(retention)
        .with_enforce_retention_duration(false)
        .with_mode(VacuumMode::Full)
        .await
        .map_err(|source| CompactError::Vacuum {
            table: format!("{ws}/{table}"),
            source,
        })?;
    // Log entries older than the table's log retention (30 days unless set), up to a
    // checkpoint every younger snapshot can start from: commits do not clean the log.
    let log_entries = deltalake_core::protocol::checkpoints::cleanup_metadata(&t, None)
        .await
        .map_err(|source| CompactError::Vacuum {
            table: format!("{ws}/{table}"),
            source,
        })?;
    Ok(Some(TableVacuum {
        workspace: ws.to_string(),
        table: table.to_string(),
        deleted: metrics.files_deleted.len(),
        log_entries_deleted: log_entries,
    }))
}
