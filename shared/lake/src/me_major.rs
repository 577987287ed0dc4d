//! The ME-major copy of `th1` and `th2`, written by compaction.
//!
//! The main tables are lumisection-major (an ingest writes a file's rows in `Indices` order,
//! compaction keeps the order of the first lumisection): one lumisection × every ME is a few pages,
//! but one ME × a run touches a page of every lumisection. For each run partition of `th1`/`th2`,
//! compaction also writes `<table>_by_me/run_number=<run>/part-m-<covers>-<uuid>.parquet`: every
//! row of the partition's active objects, sorted by (`me_id`, `ls_number`, `file_id`, `seq`).
//! `<covers>` is [`covers`] of the names of the main objects it was built from, so a reader knows
//! whether the copy still holds exactly the run's rows: it is current while the main table's
//! active objects of the run are those objects (any ingest, re-ingest or compaction of the run
//! changes them), and a stale copy is never read; the next compaction writes it again.

use std::collections::BTreeMap;

use arrow::array::{Array, Int64Array, RecordBatch};
use deltalake_core::kernel::{Action, Add};
use futures::TryStreamExt;
use object_store::buffered::BufWriter;
use object_store::ObjectStoreExt;
use parquet::arrow::arrow_reader::RowSelection;
use parquet::arrow::async_writer::AsyncArrowWriter;
use parquet::arrow::ProjectionMask;

use crate::compact::{open_object, CompactError, TableCompaction};
use crate::delta::{self, ActiveFile};
use crate::ingest::writer_props;
use crate::store::Location;

/// Name prefix of a copy object: `part-m-<covers>-<uuid>.parquet`.
pub const COPY_PREFIX: &str = "part-m-";

/// Row groups of a copy: one ME of a run (one row per lumisection, ~100–4,000 rows) spans one or
/// two of them, and the page index (pages of ≤ 1,024 rows) narrows the read to its pages.
pub const COPY_ROW_GROUP_ROWS: usize = 4096;

/// Uncompressed input bytes (Parquet footer sizes) held in memory at once while a copy is sorted:
/// a larger partition is read in several passes, each taking only its rows (a row selection).
const CHUNK_BYTES: u64 = 192 << 20;

/// Rows gathered into one batch for the writer.
const OUT_ROWS: usize = 2048;

/// Upload part size of a copy object.
const UPLOAD_PART_BYTES: usize = 6 << 20;

/// Times a copy commit is tried again after a concurrent commit to the copy table.
const COMMIT_ATTEMPTS: usize = 5;

/// Columns of the sort key (the rows' order in a copy).
const KEY: [&str; 4] = ["me_id", "ls_number", "file_id", "seq"];

/// The copy table of `table` (`th1` → `th1_by_me`), if it has one.
pub fn copy_table(table: &str) -> Option<&'static str> {
    delta::ME_MAJOR
        .iter()
        .find(|(t, _)| *t == table)
        .map(|(_, c)| *c)
}

/// The stable digest (16 hex digits, xxh64 seed 0) of a set of object names: what a copy covers.
pub fn covers<'a>(names: impl IntoIterator<Item = &'a str>) -> String {
    let mut v: Vec<&str> = names.into_iter().collect();
    v.sort_unstable();
    v.dedup();
    format!(
        "{:016x}",
        xxhash_rust::xxh64::xxh64(v.join("\n").as_bytes(), 0)
    )
}

/// The `<covers>` part of a copy object's name (`part-m-<covers>-<uuid>.parquet`).
pub fn covers_of(name: &str) -> Option<&str> {
    let (c, _) = name.strip_prefix(COPY_PREFIX)?.split_once('-')?;
    (c.len() == 16 && c.bytes().all(|b| b.is_ascii_hexdigit())).then_some(c)
}

/// The run of an object of a run-partitioned table.
pub fn run_of(f: &ActiveFile) -> Option<i64> {
    f.partition_values
        .get("run_number")?
        .as_deref()?
        .parse()
        .ok()
}

/// Brings the copy of `ws`'s `table` up to date with `main` (the table's active objects): every
/// run whose copy does not cover exactly its current objects gets a new copy object, committed
/// with the removal of the run's previous ones (one commit per run); copies of runs without
/// objects are removed. Counts go to `report`.
pub(crate) async fn write_copies(
    lake: &Location,
    ws: &str,
    table: &str,
    main: &[ActiveFile],
    report: &mut TableCompaction,
) -> Result<(), CompactError> {
    let Some(copy) = copy_table(table) else {
        return Ok(());
    };
    let mut runs: BTreeMap<i64, Vec<ActiveFile>> = BTreeMap::new();
    for f in main {
        if let Some(run) = run_of(f) {
            runs.entry(run).or_default().push(f.clone());
        }
    }
    let existing = delta::open(lake, ws, copy).await?;
    if runs.is_empty() && existing.is_none() {
        return Ok(());
    }
    let mut t = match existing {
        Some(t) => t,
        None => delta::open_or_create(lake, ws, copy).await?,
    };
    let (schema, partitions) = delta::layout(table)?;
    let schema = schema.as_ref().clone();
    // The copy table changes below only by this loop's commits, each to its own run.
    let copies = delta::active_files(&t)?;
    for (run, files) in &runs {
        let digest = covers(files.iter().map(|f| delta::object_name(&f.path)));
        if copy_is_current(&copies, *run, &digest) {
            report.copies_current += 1;
            continue;
        }
        let name = format!(
            "{COPY_PREFIX}{digest}-{}.parquet",
            uuid::Uuid::new_v4().simple()
        );
        let rel = format!("run_number={run}/{name}");
        let Some(add) = write_copy(lake, ws, table, copy, files, &rel, &schema, *run).await? else {
            report.copies_skipped += 1;
            continue;
        };
        let size = u64::try_from(add.size).unwrap_or(0);
        if commit_run(&mut t, *run, Some(add), &digest, partitions).await? {
            report.copies += 1;
            report.copy_bytes += size;
        } else {
            // Another compaction wrote the same copy first: ours was never committed.
            let _ = lake
                .store
                .delete(&delta::store_path(lake, ws, copy, &rel))
                .await;
            report.copies_current += 1;
        }
    }
    // Runs whose main partition is empty (every file of the run failed or moved): nothing to copy.
    let orphaned: Vec<i64> = delta::active_files(&t)?
        .iter()
        .filter_map(run_of)
        .filter(|r| !runs.contains_key(r))
        .collect();
    let orphaned: std::collections::BTreeSet<i64> = orphaned.into_iter().collect();
    for run in orphaned {
        commit_run(&mut t, run, None, "", partitions).await?;
    }
    Ok(())
}

/// True when the copy table's objects (`active`) of `run` are exactly one object covering `digest`.
fn copy_is_current(active: &[ActiveFile], run: i64, digest: &str) -> bool {
    let mut objs = active.iter().filter(|f| run_of(f) == Some(run));
    objs.next()
        .is_some_and(|f| covers_of(delta::object_name(&f.path)) == Some(digest))
        && objs.next().is_none()
}

/// Commits `add` (if any) and the removal of the run's other copy objects; false when a concurrent
/// commit already made the run's copy current (`add` is then not committed).
async fn commit_run(
    t: &mut deltalake_core::DeltaTable,
    run: i64,
    add: Option<Add>,
    digest: &str,
    partitions: &[&str],
) -> Result<bool, CompactError> {
    for _ in 0..COMMIT_ATTEMPTS {
        let mut actions: Vec<Action> = add.iter().cloned().map(Action::Add).collect();
        let old: Vec<ActiveFile> = delta::active_files(t)?
            .into_iter()
            .filter(|f| run_of(f) == Some(run))
            .collect();
        actions.extend(old.iter().map(|f| Action::Remove(delta::remove(f))));
        if actions.is_empty() {
            return Ok(true);
        }
        match delta::commit(t, actions, None, partitions).await {
            Ok(_) => return Ok(true),
            Err(e) if e.is_conflict() => {
                t.update_incremental(None)
                    .await
                    .map_err(|e| delta::DeltaError::Delta {
                        table: t.table_url().to_string(),
                        source: e,
                    })?;
                if add.is_some() && copy_is_current(&delta::active_files(t)?, run, digest) {
                    return Ok(false);
                }
                tracing::debug!(run, error = %e, "copy commit raced another; trying again");
            }
            Err(e) => return Err(e.into()),
        }
    }
    Err(CompactError::CopyContended(run))
}

/// One row's place: its sort key, then (object, row in the object).
type Place = (i64, i64, i64, i64, u32, u32);

/// Writes the copy of one run partition (`files`, the main table's active objects of the run) to
/// `rel` in the copy table; `None` (nothing written) when an object's schema is not the table's.
#[allow(clippy::too_many_arguments)]
async fn write_copy(
    lake: &Location,
    ws: &str,
    table: &str,
    copy: &str,
    files: &[ActiveFile],
    rel: &str,
    schema: &arrow::datatypes::Schema,
    run: i64,
) -> Result<Option<Add>, CompactError> {
    let mut files: Vec<&ActiveFile> = files.iter().collect();
    files.sort_by(|a, b| a.path.cmp(&b.path));
    // Pass 1: the sort key of every row (48 bytes a row), and the input's uncompressed size.
    let mut places: Vec<Place> = Vec::new();
    let mut rows_of: Vec<usize> = Vec::with_capacity(files.len());
    let mut bytes = 0u64;
    for (i, f) in files.iter().enumerate() {
        let b = open_object(lake, ws, table, f, None).await?;
        if b.schema().fields() != schema.fields() {
            tracing::warn!(ws, table, object = %f.path, "schema differs from the table's; run has no ME-major copy");
            return Ok(None);
        }
        bytes += b
            .metadata()
            .row_groups()
            .iter()
            .map(|rg| u64::try_from(rg.total_byte_size()).unwrap_or(0))
            .sum::<u64>();
        let mask = ProjectionMask::columns(b.parquet_schema(), KEY);
        let mut stream = b.with_projection(mask).build()?;
        let obj = u32::try_from(i).map_err(|_| CompactError::TooLarge(f.path.clone()))?;
        let mut row = 0usize;
        while let Some(batch) = stream.try_next().await? {
            let col = |name: &str| {
                batch
                    .column_by_name(name)
                    .and_then(|c| c.as_any().downcast_ref::<Int64Array>())
                    .cloned()
            };
            let (Some(me), Some(ls), Some(fid), Some(seq)) =
                (col("me_id"), col("ls_number"), col("file_id"), col("seq"))
            else {
                return Err(CompactError::NoKey(f.path.clone()));
            };
            for j in 0..batch.num_rows() {
                let r =
                    u32::try_from(row + j).map_err(|_| CompactError::TooLarge(f.path.clone()))?;
                let s = if seq.is_null(j) { -1 } else { seq.value(j) };
                places.push((me.value(j), ls.value(j), fid.value(j), s, obj, r));
            }
            row += batch.num_rows();
        }
        rows_of.push(row);
    }
    places.sort_unstable();
    let out = delta::store_path(lake, ws, copy, rel);
    let w = BufWriter::with_capacity(lake.store.clone(), out, UPLOAD_PART_BYTES);
    let props = writer_props()
        .into_builder()
        .set_max_row_group_row_count(Some(COPY_ROW_GROUP_ROWS))
        .build();
    let mut w = AsyncArrowWriter::try_new(w, std::sync::Arc::new(schema.clone()), Some(props))?;
    // Pass 2, per chunk of the sorted rows: read each object's rows of the chunk (a row
    // selection, in file order), then gather them in key order.
    let chunks = usize::try_from(bytes.div_ceil(CHUNK_BYTES))
        .unwrap_or(usize::MAX)
        .max(1);
    let chunk_rows = places.len().div_ceil(chunks).max(1);
    tracing::debug!(
        ws,
        table,
        run,
        rows = places.len(),
        bytes,
        chunks,
        "writing ME-major copy"
    );
    for chunk in places.chunks(chunk_rows) {
        let mut wanted: Vec<Vec<usize>> = vec![Vec::new(); files.len()];
        for p in chunk {
            wanted[p.4 as usize].push(p.5 as usize);
        }
        // The batches read, every object's in a row (not concatenated: that would hold the chunk
        // twice), and per object the index of its first batch and its batches' first rows.
        let mut batches: Vec<RecordBatch> = Vec::new();
        let mut starts: Vec<(usize, Vec<usize>)> = vec![(0, Vec::new()); files.len()];
        for (i, rows) in wanted.iter_mut().enumerate() {
            if rows.is_empty() {
                continue;
            }
            rows.sort_unstable();
            let ranges = rows.iter().map(|r| *r..*r + 1);
            let selection = RowSelection::from_consecutive_ranges(ranges, rows_of[i]);
            let mut stream = open_object(lake, ws, table, files[i], None)
                .await?
                .with_row_selection(selection)
                .build()?;
            let (first, mut offsets, mut n) = (batches.len(), Vec::new(), 0usize);
            while let Some(b) = stream.try_next().await? {
                offsets.push(n);
                n += b.num_rows();
                batches.push(b);
            }
            if n != rows.len() {
                return Err(CompactError::CopyRows(files[i].path.clone()));
            }
            starts[i] = (first, offsets);
        }
        let refs: Vec<&RecordBatch> = batches.iter().collect();
        for piece in chunk.chunks(OUT_ROWS) {
            // Position of a row among its object's selected rows (sorted), then its batch.
            let mut idx = Vec::with_capacity(piece.len());
            for p in piece {
                let (o, r) = (p.4 as usize, p.5 as usize);
                let pos = wanted[o]
                    .binary_search(&r)
                    .map_err(|_| CompactError::CopyRows(files[o].path.clone()))?;
                let (first, offsets) = &starts[o];
                let k = offsets
                    .partition_point(|start| *start <= pos)
                    .saturating_sub(1);
                idx.push((first + k, pos - offsets.get(k).copied().unwrap_or(0)));
            }
            let b = arrow::compute::interleave_record_batch(&refs, &idx)?;
            w.write(&b).await?;
        }
    }
    let meta = w.finish().await?;
    let size = w.bytes_written() as u64;
    Ok(Some(delta::add(
        rel.to_string(),
        size,
        &[("run_number", run.to_string())],
        Some(&meta),
    )))
}
