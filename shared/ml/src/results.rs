//! The per-lumisection results table, `ml_scores`: one row per (model revision, file, lumisection)
//! with the score and the flag at scoring time. A Delta Lake table like every lake table
//! (decision 0007), partitioned by run like `th1`:
//! `<lake>/<workspace>/ml_scores/run_number=<run>/part-<model_id>-<batch>-<uuid>.parquet` plus
//! `_delta_log/`, where the batch is `file-<file_id>` (scored on ingest) or `run` (backfill: the
//! whole run at once). Every write goes through [`write_batch`] (one commit per batch).

use std::sync::Arc;

use arrow::array::{ArrayRef, BooleanArray, Float64Array, Int64Array, RecordBatch, StringArray};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use deltalake_core::kernel::Action;
use object_store::{ObjectStoreExt, PutPayload};
use parquet::arrow::ArrowWriter;

use arrow::array::Array;
use dials_lake::{compact, delta, Location};

use crate::error::Result;
use crate::model::ModelDoc;
use crate::score::ScoreRow;

/// Table folder under a workspace.
pub const TABLE: &str = "ml_scores";

/// The partition column (a path segment `run_number=<run>`, not a column of the files).
pub const PARTITION: &str = "run_number";

/// Schema of `ml_scores` (`run_number` is the partition, not a column).
pub fn schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("model_id", DataType::Int64, false),
        Field::new("model_name", DataType::Utf8, false),
        Field::new("revision", DataType::Int64, false),
        Field::new("dataset_id", DataType::Int64, false),
        Field::new("dataset", DataType::Utf8, false),
        Field::new("file_id", DataType::Int64, false),
        Field::new("ls_number", DataType::Int64, false),
        Field::new("me_id", DataType::Int64, false),
        Field::new("score", DataType::Float64, true),
        Field::new("flag", DataType::Boolean, false),
        Field::new("batch", DataType::Utf8, false),
        Field::new("batch_id", DataType::Int64, false),
        Field::new("scored_at", DataType::Utf8, false),
    ]))
}

/// What a batch was: one file's lumisections of a run (ingest) or the whole run (backfill).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Batch {
    /// The lumisections of the run in one file.
    File(i64),
    /// Every lumisection of the run.
    Run,
}

impl Batch {
    /// The start of the names of this batch's objects (a unique suffix follows).
    fn stem(self, model_id: i64) -> String {
        match self {
            Batch::File(f) => format!("part-{model_id}-file-{f}"),
            Batch::Run => format!("part-{model_id}-run"),
        }
    }
}

/// Rows of one dataset's batch, as a record batch.
pub fn to_batch(
    doc: &ModelDoc,
    dataset_id: i64,
    dataset: &str,
    batch: Batch,
    run: i64,
    rows: &[ScoreRow],
) -> Result<RecordBatch> {
    let n = rows.len();
    let (kind, batch_id) = match batch {
        Batch::File(f) => ("file", f),
        Batch::Run => ("run", run),
    };
    let now = dials_lake::tables::now_rfc3339();
    let me_id = doc.input_signature.first().map_or(0, |i| i.me_id);
    let cols: Vec<ArrayRef> = vec![
        Arc::new(Int64Array::from(vec![doc.id; n])),
        Arc::new(StringArray::from(vec![doc.name.as_str(); n])),
        Arc::new(Int64Array::from(vec![doc.revision; n])),
        Arc::new(Int64Array::from(vec![dataset_id; n])),
        Arc::new(StringArray::from(vec![dataset; n])),
        Arc::new(Int64Array::from(
            rows.iter().map(|r| r.file_id).collect::<Vec<_>>(),
        )),
        Arc::new(Int64Array::from(
            rows.iter().map(|r| r.ls_number).collect::<Vec<_>>(),
        )),
        Arc::new(Int64Array::from(vec![me_id; n])),
        Arc::new(Float64Array::from(
            rows.iter().map(|r| r.score).collect::<Vec<_>>(),
        )),
        Arc::new(BooleanArray::from(
            rows.iter().map(|r| r.flag).collect::<Vec<_>>(),
        )),
        Arc::new(StringArray::from(vec![kind; n])),
        Arc::new(Int64Array::from(vec![batch_id; n])),
        Arc::new(StringArray::from(vec![now.as_str(); n])),
    ];
    Ok(RecordBatch::try_new(schema(), cols)?)
}

/// Commit attempts of one write that lost a race with a concurrent commit to the table (commits
/// are exclusive: any other commit since its snapshot) before giving up.
const COMMIT_TRIES: usize = 50;

/// True when an object named `name` holds rows that a write of `batch` by model `model_id`
/// replaces: the same file batch, or (a whole-run batch) every batch of the model in the run.
pub fn replaces(batch: Batch, model_id: i64, name: &str) -> bool {
    let Some(rest) = name.strip_prefix(&format!("part-{model_id}-")) else {
        return false;
    };
    match batch {
        Batch::Run => true,
        Batch::File(f) => rest
            .strip_prefix(&format!("file-{f}"))
            .is_some_and(|r| r.starts_with('-') || r == ".parquet"),
    }
}

/// One batch of scores to write: a model's rows of one run (all datasets).
#[derive(Debug, Clone, Copy)]
pub struct Pending<'a> {
    /// The model revision.
    pub doc: &'a ModelDoc,
    /// Run.
    pub run: i64,
    /// File or whole run.
    pub batch: Batch,
    /// The rows.
    pub parts: &'a [RecordBatch],
}

/// Writes the scores of one batch (all datasets' rows of that run); see [`write_batches`].
/// Returns the new object's path in the table.
pub async fn write_batch(
    lake: &Location,
    doc: &ModelDoc,
    run: i64,
    batch: Batch,
    parts: &[RecordBatch],
) -> Result<Option<String>> {
    Ok(write_batches(
        lake,
        &doc.workspace,
        &[Pending {
            doc,
            run,
            batch,
            parts,
        }],
    )
    .await?
    .into_iter()
    .next()
    .flatten())
}

/// Writes batches of scores of workspace `ws`, each as one new object, and commits them to the
/// `ml_scores` Delta table together with the removal of what they replace — the same batch's
/// earlier object or, for a whole-run batch, every object of the model in that run — in one
/// commit: a reader sees the old rows or the new ones, never both, and writing the same batch
/// again is idempotent. An empty batch commits only its removals. A commit that conflicts with a
/// concurrent one is retried on the new snapshot. Returns each batch's new object (table path).
pub async fn write_batches(
    lake: &Location,
    ws: &str,
    items: &[Pending<'_>],
) -> Result<Vec<Option<String>>> {
    let mut added = Vec::new();
    for p in items {
        let rows: usize = p.parts.iter().map(RecordBatch::num_rows).sum();
        if rows == 0 {
            added.push(None);
            continue;
        }
        let mut buf = Vec::new();
        let mut w =
            ArrowWriter::try_new(&mut buf, schema(), Some(dials_lake::ingest::writer_props()))?;
        for b in p.parts {
            w.write(b)?;
        }
        let meta = w.close()?;
        // A new name per write: readers of the previous snapshot keep reading the old object.
        let rel = format!(
            "{PARTITION}={}/{}-{}.parquet",
            p.run,
            p.batch.stem(p.doc.id),
            uuid::Uuid::new_v4().simple()
        );
        let size = buf.len() as u64;
        lake.store
            .put(
                &delta::store_path(lake, ws, TABLE, &rel),
                PutPayload::from(buf),
            )
            .await?;
        added.push(Some(delta::add(
            rel,
            size,
            &[(PARTITION, p.run.to_string())],
            Some(&meta),
        )));
    }
    if items.is_empty() {
        return Ok(Vec::new());
    }
    let mut tries = 0;
    loop {
        tries += 1;
        let mut t = delta::open_or_create_table(lake, ws, TABLE, &schema(), &[PARTITION]).await?;
        let active = delta::active_files(&t)?;
        let replaced = |f: &delta::ActiveFile| {
            let run = f.partition_values.get(PARTITION).cloned().flatten();
            let name = delta::object_name(&f.path);
            items.iter().any(|p| {
                run.as_deref() == Some(p.run.to_string().as_str())
                    && replaces(p.batch, p.doc.id, name)
            })
        };
        let mut actions: Vec<Action> = active
            .iter()
            .filter(|f| replaced(f))
            .map(|f| Action::Remove(delta::remove(f)))
            .collect();
        // Merged objects (compaction) hold rows of many batches: those holding rows this write
        // replaces are written again without them, in the same commit.
        for f in active
            .iter()
            .filter(|f| delta::object_name(&f.path).starts_with(compact::MERGED_PREFIX))
        {
            let run = f.partition_values.get(PARTITION).cloned().flatten();
            let mine: Vec<&Pending<'_>> = items
                .iter()
                .filter(|p| run.as_deref() == Some(p.run.to_string().as_str()))
                .filter(|p| {
                    f.int_bounds("model_id")
                        .is_none_or(|(lo, hi)| (lo..=hi).contains(&p.doc.id))
                })
                .collect();
            if mine.is_empty() {
                continue;
            }
            let drop = |b: &RecordBatch| replaced_rows(b, &mine, &f.path);
            match compact::rewrite_without(lake, ws, TABLE, f, &REPLACE_KEY, &drop).await? {
                None => {}
                Some(rest) => {
                    actions.push(Action::Remove(delta::remove(f)));
                    actions.extend(rest.map(Action::Add));
                }
            }
        }
        // A table without data commits yet takes in the objects the plain-Parquet format of this
        // table left in its folder (those this commit does not replace), so they stay readable.
        if active.is_empty() && t.version() == Some(0) {
            for f in legacy_objects(lake, ws)
                .await?
                .iter()
                .filter(|f| !replaced(f))
            {
                let run = f
                    .partition_values
                    .get(PARTITION)
                    .cloned()
                    .flatten()
                    .unwrap_or_default();
                actions.push(Action::Add(delta::add(
                    f.path.clone(),
                    u64::try_from(f.size).unwrap_or(0),
                    &[(PARTITION, run)],
                    None,
                )));
            }
        }
        actions.extend(added.iter().flatten().map(|a| Action::Add(a.clone())));
        if actions.is_empty() {
            return Ok(added.into_iter().map(|a| a.map(|a| a.path)).collect());
        }
        // A write that replaces objects commits exclusively: any commit since the snapshot it
        // decided on fails it, and it decides again. delta-rs's own check would let it through a
        // compaction (whose commit changes no data) that merged an object it removes into a new
        // one still holding the replaced rows. A write that only adds (a first scoring) keeps
        // delta-rs's check, so concurrent first scorings of many files do not retry each other.
        let replacing = actions.iter().any(|a| matches!(a, Action::Remove(_)));
        let committed = if replacing {
            delta::commit_txns_exclusive(&mut t, actions, Vec::new(), &[PARTITION]).await
        } else {
            delta::commit(&mut t, actions, None, &[PARTITION]).await
        };
        match committed {
            Ok(version) => {
                tracing::debug!(
                    workspace = ws,
                    batches = items.len(),
                    version,
                    "ml_scores committed"
                );
                return Ok(added.into_iter().map(|a| a.map(|a| a.path)).collect());
            }
            Err(e) if e.is_conflict() && tries < COMMIT_TRIES => {
                tracing::debug!(workspace = ws, tries, error = %e, "ml_scores commit conflicted; retried on the new snapshot");
                // Concurrent writers of the table (scoring of parallel ingests, backfills) spread out.
                let jitter = u64::from(uuid::Uuid::new_v4().as_bytes()[0]) % 20;
                tokio::time::sleep(std::time::Duration::from_millis(5 * tries as u64 + jitter))
                    .await;
            }
            Err(e) => return Err(e.into()),
        }
    }
}

/// The columns that say which write a row came from.
const REPLACE_KEY: [&str; 3] = ["model_id", "batch", "batch_id"];

/// Rows of `b` (columns [`REPLACE_KEY`] at least) that one of `writes` replaces: a file batch's
/// rows of its model and file, or (a whole-run batch) every row of its model.
fn replaced_rows(
    b: &RecordBatch,
    writes: &[&Pending<'_>],
    object: &str,
) -> std::result::Result<BooleanArray, dials_lake::compact::CompactError> {
    let bad = || {
        dials_lake::compact::CompactError::Arrow(arrow::error::ArrowError::SchemaError(format!(
            "{object}: no model_id/batch/batch_id columns"
        )))
    };
    let int = |name: &str| {
        b.column_by_name(name)
            .and_then(|c| c.as_any().downcast_ref::<Int64Array>())
            .ok_or_else(bad)
    };
    let (model, batch_id) = (int("model_id")?, int("batch_id")?);
    let batch = b
        .column_by_name("batch")
        .and_then(|c| c.as_any().downcast_ref::<StringArray>())
        .ok_or_else(bad)?;
    Ok((0..b.num_rows())
        .map(|i| {
            Some(writes.iter().any(|p| {
                model.is_valid(i)
                    && model.value(i) == p.doc.id
                    && match p.batch {
                        Batch::Run => true,
                        Batch::File(f) => {
                            batch.is_valid(i)
                                && batch.value(i) == "file"
                                && batch_id.is_valid(i)
                                && batch_id.value(i) == f
                        }
                    }
            }))
        })
        .collect())
}

/// Merges the small objects of `ws`'s results table per run (`dials compact`, the scheduled
/// maintenance): one model's scores of a run stop costing one object per scored file.
pub async fn compact(
    lake: &Location,
    ws: &str,
    opts: compact::CompactOptions,
) -> Result<compact::TableCompaction> {
    Ok(compact::compact_table_as(lake, ws, TABLE, &schema(), opts).await?)
}

/// Deletes the objects of `ws`'s results table that no snapshot younger than `retention` needs
/// (see `dials_lake::compact::vacuum`); `None` when the table does not exist.
pub async fn vacuum(
    lake: &Location,
    ws: &str,
    retention: std::time::Duration,
) -> Result<Option<compact::TableVacuum>> {
    Ok(compact::vacuum_table(lake, ws, TABLE, retention).await?)
}

/// Objects of the plain-Parquet `ml_scores` (before it was a Delta table):
/// `run_number=<run>/part-<model_id>-file-<file_id>.parquet` and `part-<model_id>-run.parquet`.
async fn legacy_objects(lake: &Location, ws: &str) -> Result<Vec<delta::ActiveFile>> {
    use futures::TryStreamExt;
    let dir = lake.child(&[ws, TABLE]);
    let metas: Vec<_> = match lake.store.list(Some(&dir)).try_collect::<Vec<_>>().await {
        Ok(m) => m,
        Err(object_store::Error::NotFound { .. }) => Vec::new(),
        Err(e) => return Err(e.into()),
    };
    let mut out = Vec::new();
    for m in metas {
        let Some(rel) = m
            .location
            .prefix_match(&dir)
            .map(|it| it.map(|p| p.as_ref().to_string()).collect::<Vec<_>>())
        else {
            continue;
        };
        let [part, name] = rel.as_slice() else {
            continue;
        };
        let Some(run) = part
            .strip_prefix(&format!("{PARTITION}="))
            .filter(|r| r.parse::<i64>().is_ok())
        else {
            continue;
        };
        let legacy = name
            .strip_prefix("part-")
            .and_then(|r| r.strip_suffix(".parquet"))
            .is_some_and(|r| {
                let mut it = r.splitn(2, '-');
                let id_ok = it.next().is_some_and(|id| id.parse::<i64>().is_ok());
                let rest = it.next().unwrap_or_default();
                id_ok
                    && (rest == "run"
                        || rest
                            .strip_prefix("file-")
                            .is_some_and(|f| f.parse::<i64>().is_ok()))
            });
        if legacy {
            out.push(delta::ActiveFile {
                path: format!("{part}/{name}"),
                size: i64::try_from(m.size).unwrap_or(i64::MAX),
                modification_time: m.last_modified.timestamp_millis(),
                partition_values: [(PARTITION.to_string(), Some(run.to_string()))]
                    .into_iter()
                    .collect(),
                stats: None,
            });
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn doc(ws: &str) -> ModelDoc {
        serde_json::from_value(serde_json::json!({
            "id": 12, "name": "m", "revision": 1, "ready": true, "active": true, "type": "onnx",
            "anomaly_threshold": 0.5, "builtin_threshold": false, "description": "", "flagging_key": null,
            "input_signature": [], "metric_key": "mse", "output_signature": [], "tags": null,
            "isvc_service_name": null, "isvc_yaml": null, "created_by": "t", "modified_by": "t",
            "created_at": "", "modified_at": "", "workspace": ws
        }))
        .expect("doc")
    }

    fn rows(n: i64, file_id: i64) -> Vec<ScoreRow> {
        (1..=n)
            .map(|ls| ScoreRow {
                file_id,
                ls_number: ls,
                score: Some(ls as f64),
                flag: false,
            })
            .collect()
    }

    async fn active(lake: &Location) -> Vec<String> {
        let t = delta::open(lake, "ws", TABLE)
            .await
            .expect("open")
            .expect("a table");
        let mut v: Vec<String> = delta::active_files(&t)
            .expect("files")
            .into_iter()
            .map(|f| f.path)
            .collect();
        v.sort();
        v
    }

    #[tokio::test]
    async fn rescoring_replaces_and_legacy_objects_are_taken_in() {
        let dir =
            std::env::temp_dir().join(format!("dials-mlscores-{}", uuid::Uuid::new_v4().simple()));
        let lake = Location::parse(dir.to_str().expect("utf-8"), true).expect("lake");
        let d = doc("ws");
        // An object of the plain-Parquet format, for file 9 of run 5.
        let old = to_batch(&d, 1, "/A/B/DQMIO", Batch::File(9), 5, &rows(2, 9)).expect("batch");
        let mut buf = Vec::new();
        let mut w = ArrowWriter::try_new(&mut buf, schema(), None).expect("writer");
        w.write(&old).expect("write");
        w.close().expect("close");
        lake.store
            .put(
                &delta::store_path(&lake, "ws", TABLE, "run_number=5/part-12-file-9.parquet"),
                PutPayload::from(buf),
            )
            .await
            .expect("put");

        // File 10 scored: a new table holding the legacy object and the new one.
        let b = to_batch(&d, 1, "/A/B/DQMIO", Batch::File(10), 5, &rows(3, 10)).expect("batch");
        write_batch(&lake, &d, 5, Batch::File(10), &[b.clone()])
            .await
            .expect("first write");
        let a = active(&lake).await;
        assert_eq!(a.len(), 2, "{a:?}");
        assert!(a.contains(&"run_number=5/part-12-file-9.parquet".to_string()));
        // The same batch again: still two objects (the file-10 one replaced).
        write_batch(&lake, &d, 5, Batch::File(10), &[b])
            .await
            .expect("again");
        let again = active(&lake).await;
        assert_eq!(again.len(), 2);
        assert_ne!(again, a);
        // The whole run: one object replaces every batch of the model in the run.
        let r = to_batch(&d, 1, "/A/B/DQMIO", Batch::Run, 5, &rows(5, 10)).expect("batch");
        write_batch(&lake, &d, 5, Batch::Run, &[r])
            .await
            .expect("run");
        let last = active(&lake).await;
        assert_eq!(last.len(), 1);
        assert!(last[0].starts_with("run_number=5/part-12-run-"), "{last:?}");
        let _ = std::fs::remove_dir_all(dir);
    }

    /// Every row of the table: (model_id, batch, batch_id, ls_number, score), sorted.
    async fn table_rows(lake: &Location) -> Vec<(i64, String, i64, i64, i64)> {
        let t = delta::open(lake, "ws", TABLE)
            .await
            .expect("open")
            .expect("a table");
        let mut out = Vec::new();
        for f in delta::active_files(&t).expect("files") {
            let bytes = lake
                .store
                .get(&delta::store_path(lake, "ws", TABLE, &f.path))
                .await
                .expect("get")
                .bytes()
                .await
                .expect("bytes");
            let r = parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(bytes)
                .expect("parquet")
                .build()
                .expect("reader");
            for b in r {
                let b = b.expect("batch");
                let int = |n: &str| {
                    b.column_by_name(n)
                        .and_then(|c| c.as_any().downcast_ref::<Int64Array>())
                        .expect("int column")
                        .clone()
                };
                let (m, id, ls) = (int("model_id"), int("batch_id"), int("ls_number"));
                let kind = b
                    .column_by_name("batch")
                    .and_then(|c| c.as_any().downcast_ref::<StringArray>())
                    .expect("batch column")
                    .clone();
                let score = b
                    .column_by_name("score")
                    .and_then(|c| c.as_any().downcast_ref::<Float64Array>())
                    .expect("score column")
                    .clone();
                for i in 0..b.num_rows() {
                    out.push((
                        m.value(i),
                        kind.value(i).to_string(),
                        id.value(i),
                        ls.value(i),
                        score.value(i) as i64,
                    ));
                }
            }
        }
        out.sort();
        out
    }

    /// Model 12 scores files 10, 11, 12 of run 5 and file 20 of run 6, model 13 file 10 of run 5
    /// (13 rows, one object each); returns model 12.
    async fn scored(lake: &Location) -> ModelDoc {
        let d12 = doc("ws");
        let d13 = ModelDoc {
            id: 13,
            ..doc("ws")
        };
        for (d, file, n, run) in [
            (&d12, 10, 3, 5),
            (&d12, 11, 3, 5),
            (&d12, 12, 2, 5),
            (&d13, 10, 3, 5),
            (&d12, 20, 2, 6),
        ] {
            let b = to_batch(d, 1, "/A/B/DQMIO", Batch::File(file), run, &rows(n, file))
                .expect("batch");
            write_batch(lake, d, run, Batch::File(file), &[b])
                .await
                .expect("write");
        }
        d12
    }

    /// Model 12's new scores of file 11: 4 lumisections, scores x10.
    fn rescored() -> Vec<ScoreRow> {
        rows(4, 11)
            .into_iter()
            .map(|r| ScoreRow {
                score: r.score.map(|s| s * 10.0),
                ..r
            })
            .collect()
    }

    #[tokio::test]
    async fn compacted_scores_are_replaced_row_by_row_and_vacuumed() {
        let dir = std::env::temp_dir().join(format!(
            "dials-mlscores-c-{}",
            uuid::Uuid::new_v4().simple()
        ));
        let lake = Location::parse(dir.to_str().expect("utf-8"), true).expect("lake");
        let d12 = scored(&lake).await;
        let before = table_rows(&lake).await;
        assert_eq!(before.len(), 13);
        let opts = compact::CompactOptions {
            min_objects: 2,
            ..Default::default()
        };
        let c = compact(&lake, "ws", opts).await.expect("compact");
        // Run 5's four objects merged into one; run 6's single object left as it is.
        assert_eq!((c.merged, c.inputs, c.objects_after), (1, 4, 2), "{c:?}");
        assert_eq!(table_rows(&lake).await, before, "compaction changes no row");
        let merged = active(&lake).await;
        assert!(
            merged.iter().any(|p| p.starts_with("run_number=5/part-c-")),
            "{merged:?}"
        );

        // Model 12 scores file 11 again (4 lumisections now, scores x10): only those rows change,
        // inside the merged object.
        let again = rescored();
        let b = to_batch(&d12, 1, "/A/B/DQMIO", Batch::File(11), 5, &again).expect("batch");
        write_batch(&lake, &d12, 5, Batch::File(11), &[b])
            .await
            .expect("rescore");
        let now = table_rows(&lake).await;
        let of = |m: i64, id: i64| {
            now.iter()
                .filter(|r| r.0 == m && r.2 == id)
                .cloned()
                .collect::<Vec<_>>()
        };
        assert_eq!(
            of(12, 11).iter().map(|r| (r.3, r.4)).collect::<Vec<_>>(),
            vec![(1, 10), (2, 20), (3, 30), (4, 40)]
        );
        assert_eq!(of(12, 10).len(), 3);
        assert_eq!(of(12, 12).len(), 2);
        assert_eq!(
            of(13, 10).len(),
            3,
            "another model's rows of the same file stay"
        );
        assert_eq!(of(12, 20).len(), 2, "another run's rows stay");
        assert_eq!(now.len(), 14);

        // The whole run for model 12: every model-12 row of run 5 replaced, model 13's kept.
        let r = to_batch(&d12, 1, "/A/B/DQMIO", Batch::Run, 5, &rows(5, 10)).expect("batch");
        write_batch(&lake, &d12, 5, Batch::Run, &[r])
            .await
            .expect("run");
        let now = table_rows(&lake).await;
        let run5_model12: Vec<_> = now.iter().filter(|r| r.0 == 12 && r.2 != 20).collect();
        assert_eq!(run5_model12.len(), 5);
        assert!(run5_model12.iter().all(|r| r.1 == "run" && r.2 == 5));
        assert_eq!(now.iter().filter(|r| r.0 == 13).count(), 3);
        assert_eq!(now.len(), 5 + 3 + 2);

        // Vacuum deletes what no snapshot needs; the table reads back the same.
        let v = vacuum(&lake, "ws", std::time::Duration::ZERO)
            .await
            .expect("vacuum")
            .expect("a table");
        assert!(v.deleted >= 4, "{v:?}");
        assert_eq!(table_rows(&lake).await, now);
        let _ = std::fs::remove_dir_all(dir);
    }

    /// Compacts the table through the store underneath (unhooked) just before the first commit
    /// that removes objects is put: a compaction that lands between a rescore's decision and its
    /// commit, at the moment chosen, every time.
    #[derive(Debug)]
    struct CompactBeforeRescore {
        lake: Location,
        fired: std::sync::atomic::AtomicBool,
        compacted: std::sync::Mutex<Option<(usize, usize)>>,
    }

    impl dials_lake::store::Hook for CompactBeforeRescore {
        fn before<'a>(
            &'a self,
            req: dials_lake::store::Request<'a>,
        ) -> futures::future::BoxFuture<'a, object_store::Result<()>> {
            Box::pin(async move {
                let dials_lake::store::Request::Put(path, Some(payload)) = req else {
                    return Ok(());
                };
                let entry: Vec<u8> = payload.iter().flat_map(|b| b.iter().copied()).collect();
                let commit = path.as_ref().contains(&format!("{TABLE}/_delta_log/"))
                    && path.as_ref().ends_with(".json");
                if commit
                    && String::from_utf8_lossy(&entry).contains("\"remove\"")
                    && !self.fired.swap(true, std::sync::atomic::Ordering::SeqCst)
                {
                    let opts = compact::CompactOptions {
                        min_objects: 2,
                        ..Default::default()
                    };
                    let c = compact(&self.lake, "ws", opts).await.map_err(|e| {
                        object_store::Error::Generic {
                            store: "test",
                            source: e.to_string().into(),
                        }
                    })?;
                    *self.compacted.lock().expect("lock") = Some((c.merged, c.inputs));
                }
                Ok(())
            })
        }
    }

    /// A rescore decides on a snapshot, then a compaction merges the object it replaces (and the
    /// other files' objects of the run) before the rescore's commit lands: the rescore must not
    /// commit over the compaction (the merged object would keep the old scores beside the new
    /// ones); it decides again and ends with each row once.
    #[tokio::test]
    async fn a_rescore_that_a_compaction_overtakes_decides_again() {
        let dir = std::env::temp_dir().join(format!(
            "dials-mlscores-race-{}",
            uuid::Uuid::new_v4().simple()
        ));
        let lake = Location::parse(dir.to_str().expect("utf-8"), true).expect("lake");
        let d12 = scored(&lake).await;
        let before = table_rows(&lake).await;
        assert_eq!(before.len(), 13);
        let hook = std::sync::Arc::new(CompactBeforeRescore {
            lake: lake.clone(),
            fired: Default::default(),
            compacted: Default::default(),
        });
        let raced = Location {
            store: dials_lake::store::hooked(lake.store.clone(), hook.clone()),
            ..lake.clone()
        };
        // Model 12 scores file 11 again: 4 lumisections, scores x10.
        let again = rescored();
        let b = to_batch(&d12, 1, "/A/B/DQMIO", Batch::File(11), 5, &again).expect("batch");
        write_batch(&raced, &d12, 5, Batch::File(11), &[b])
            .await
            .expect("rescore");
        assert_eq!(
            *hook.compacted.lock().expect("lock"),
            Some((1, 4)),
            "the compaction merged run 5's four objects between the rescore's decision and commit"
        );
        let mut want: Vec<_> = before
            .into_iter()
            .filter(|r| !(r.0 == 12 && r.2 == 11))
            .collect();
        want.extend((1..=4).map(|ls| (12, "file".to_string(), 11, ls, 10 * ls)));
        want.sort();
        assert_eq!(
            table_rows(&lake).await,
            want,
            "every row once: the new scores of file 11, nothing else changed"
        );
        assert!(
            active(&lake)
                .await
                .iter()
                .any(|p| p.starts_with("run_number=5/part-c-")),
            "the compaction's merged object stays (rewritten without file 11's old rows)"
        );
        let _ = std::fs::remove_dir_all(dir);
    }

    #[test]
    fn a_batch_replaces_its_own_objects_only() {
        // Same file batch (this format and the one before Delta), not another file's, not another model's.
        assert!(replaces(Batch::File(7), 12, "part-12-file-7-0a1b.parquet"));
        assert!(replaces(Batch::File(7), 12, "part-12-file-7.parquet"));
        assert!(!replaces(
            Batch::File(7),
            12,
            "part-12-file-70-0a1b.parquet"
        ));
        assert!(!replaces(Batch::File(7), 12, "part-12-run-0a1b.parquet"));
        assert!(!replaces(Batch::File(7), 1, "part-12-file-7-0a1b.parquet"));
        // A whole run replaces every batch of the model in the run.
        assert!(replaces(Batch::Run, 12, "part-12-run-0a1b.parquet"));
        assert!(replaces(Batch::Run, 12, "part-12-file-7-0a1b.parquet"));
        assert!(!replaces(Batch::Run, 12, "part-123-run-0a1b.parquet"));
    }
}
