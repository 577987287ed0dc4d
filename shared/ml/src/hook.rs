//! The ingest hook: after a file's histograms are committed, every active, ready model (latest
//! revision) of each workspace the file fed scores the file's lumisections of each run (batch =
//! the file's part of the run). It reads the data objects the ingest just wrote (listed in its
//! report), only the rows of the models' input MEs, with no query engine: the ingest function can
//! call it as it is. A model's failure is that run's `FAILED` status; nothing here fails the
//! ingest (lake errors are logged).

use std::collections::{BTreeMap, BTreeSet};

use arrow::array::{Array, BooleanArray, Float64Array, Int64Array, ListArray, StringArray};
use object_store::path::Path;
use object_store::ObjectStoreExt;
use parquet::arrow::arrow_reader::{ArrowPredicateFn, ParquetRecordBatchReaderBuilder, RowFilter};
use parquet::arrow::ProjectionMask;

use dials_lake::ingest::IngestReport;
use dials_lake::Location;

use crate::error::Result;
use crate::model::ModelDoc;
use crate::registry::{self, ModelCache, RunStatus};
use crate::results::{self, Batch};
use crate::score::{score_run, MeRows, RunInput};

/// Per (run, dataset_id): dataset name and, per ME id, its rows.
type FileRows = BTreeMap<(i64, i64), (String, BTreeMap<i64, MeRows>)>;

/// `run_number=<run>` in an object key, and whether it is a `th1` or `th2` object.
fn run_of(key: &str) -> Option<(i64, u8)> {
    let dim = if key.contains("/th1/") || key.starts_with("th1/") {
        1
    } else if key.contains("/th2/") || key.starts_with("th2/") {
        2
    } else {
        return None;
    };
    let run = key
        .split('/')
        .find_map(|p| p.strip_prefix("run_number="))?
        .parse()
        .ok()?;
    Some((run, dim))
}

/// Bins of row `i` of a `data` column (TH1 `list<f64>` or TH2 `list<list<f64>>`) as float32:
/// a model's input row (TH2: y-major, x fastest).
pub fn bins(data: &ListArray, i: usize) -> Vec<f32> {
    let v = data.value(i);
    if let Some(f) = v.as_any().downcast_ref::<Float64Array>() {
        return f.values().iter().map(|x| *x as f32).collect();
    }
    let mut out = Vec::new();
    if let Some(rows) = v.as_any().downcast_ref::<ListArray>() {
        for j in 0..rows.len() {
            if let Some(f) = rows.value(j).as_any().downcast_ref::<Float64Array>() {
                out.extend(f.values().iter().map(|x| *x as f32));
            }
        }
    }
    out
}

/// Reads the rows of `me_ids` from one data object into `out`.
async fn read_object(
    lake: &Location,
    key: &str,
    run: i64,
    me_ids: &BTreeSet<i64>,
    tails: &BTreeMap<i64, Vec<usize>>,
    out: &mut FileRows,
) -> Result<()> {
    let bytes = lake.store.get(&Path::from(key)).await?.bytes().await?;
    let builder = ParquetRecordBatchReaderBuilder::try_new(bytes)?;
    let schema = builder.parquet_schema();
    let names = [
        "dataset_id",
        "dataset",
        "file_id",
        "ls_number",
        "me_id",
        "me",
        "data",
    ];
    let leaves: Vec<usize> = (0..schema.num_columns())
        .filter(|i| names.contains(&schema.column(*i).path().parts()[0].as_str()))
        .collect();
    let me_leaf: Vec<usize> = (0..schema.num_columns())
        .filter(|i| schema.column(*i).path().parts()[0] == "me_id")
        .collect();
    let wanted = me_ids.clone();
    let predicate = ArrowPredicateFn::new(ProjectionMask::leaves(schema, me_leaf), move |b| {
        let ids = b.column(0).as_any().downcast_ref::<Int64Array>().cloned();
        Ok(BooleanArray::from(
            (0..b.num_rows())
                .map(|i| ids.as_ref().is_some_and(|c| wanted.contains(&c.value(i))))
                .collect::<Vec<_>>(),
        ))
    });
    let mask = ProjectionMask::leaves(schema, leaves);
    let reader = builder
        .with_projection(mask)
        .with_row_filter(RowFilter::new(vec![Box::new(predicate)]))
        .build()?;
    for b in reader {
        let b = b?;
        let col = |n: &str| {
            b.column_by_name(n)
                .and_then(|c| c.as_any().downcast_ref::<Int64Array>().cloned())
        };
        let (Some(d), Some(f), Some(l), Some(m)) = (
            col("dataset_id"),
            col("file_id"),
            col("ls_number"),
            col("me_id"),
        ) else {
            continue;
        };
        let ds = b
            .column_by_name("dataset")
            .and_then(|c| c.as_any().downcast_ref::<StringArray>().cloned());
        let me = b
            .column_by_name("me")
            .and_then(|c| c.as_any().downcast_ref::<StringArray>().cloned());
        let Some(data) = b
            .column_by_name("data")
            .and_then(|c| c.as_any().downcast_ref::<ListArray>().cloned())
        else {
            continue;
        };
        for i in 0..b.num_rows() {
            let e = out.entry((run, d.value(i))).or_insert_with(|| {
                (
                    ds.as_ref()
                        .map(|s| s.value(i).to_string())
                        .unwrap_or_default(),
                    BTreeMap::new(),
                )
            });
            let rows = e.1.entry(m.value(i)).or_insert_with(|| MeRows {
                me: me
                    .as_ref()
                    .map(|s| s.value(i).to_string())
                    .unwrap_or_default(),
                tail: tails.get(&m.value(i)).cloned().unwrap_or_default(),
                rows: BTreeMap::new(),
            });
            // Objects are in `seq` order within a lumisection: the first occurrence wins.
            rows.rows
                .entry((l.value(i), f.value(i)))
                .or_insert_with(|| bins(&data, i));
        }
    }
    Ok(())
}

/// Scores one model on the file's rows of one run: the status and, when it scored, the rows to
/// write (written by the caller, every model's in one commit).
async fn score_model_run(
    lake: &Location,
    cache: &ModelCache,
    doc: &ModelDoc,
    run: i64,
    file_id: i64,
    rows: &FileRows,
) -> Result<Option<(RunStatus, Vec<arrow::array::RecordBatch>)>> {
    let tails: Vec<Vec<usize>> = doc
        .input_signature
        .iter()
        .map(|i| {
            i.dims
                .iter()
                .skip(1)
                .map(|d| (*d).max(0) as usize)
                .collect()
        })
        .collect();
    let mut inputs = Vec::new();
    for ((r, d), (name, per_me)) in rows.range((run, i64::MIN)..=(run, i64::MAX)) {
        debug_assert_eq!(*r, run);
        let mes: Vec<MeRows> = doc
            .input_signature
            .iter()
            .map(|s| per_me.get(&s.me_id).cloned().unwrap_or_default())
            .collect();
        if mes.iter().any(|m| m.rows.is_empty()) {
            continue;
        }
        inputs.push((*d, name.clone(), RunInput { run, mes }));
    }
    if inputs.is_empty() {
        return Ok(None);
    }
    let now = dials_lake::tables::now_rfc3339;
    let outcome: Result<Vec<arrow::array::RecordBatch>> = async {
        let model = cache.get(lake, doc, &tails).await?;
        let mut parts = Vec::new();
        for (d, name, input) in inputs {
            let (doc2, model2) = (doc.clone(), model.clone());
            let scored = tokio::task::spawn_blocking(move || score_run(&doc2, &model2, &input))
                .await
                .map_err(|e| crate::MlError::Run {
                    model: doc.label(),
                    run,
                    message: e.to_string(),
                })??;
            parts.push(results::to_batch(
                doc,
                d,
                &name,
                Batch::File(file_id),
                run,
                &scored,
            )?);
        }
        Ok(parts)
    }
    .await;
    Ok(Some(match outcome {
        Ok(parts) => {
            let scored = parts.iter().map(arrow::array::RecordBatch::num_rows).sum();
            (
                RunStatus {
                    run_number: run,
                    status: "OK".into(),
                    error: None,
                    batch: "file".into(),
                    scored,
                    at: now(),
                },
                parts,
            )
        }
        Err(
            e @ (crate::MlError::Store(_) | crate::MlError::Parquet(_) | crate::MlError::Arrow(_)),
        ) => return Err(e),
        Err(e) => (
            RunStatus {
                run_number: run,
                status: "FAILED".into(),
                error: Some(e.to_string()),
                batch: "file".into(),
                scored: 0,
                at: now(),
            },
            Vec::new(),
        ),
    }))
}

/// The hook. Returns (workspace, model, status) of every run scored or failed.
pub async fn after_ingest(
    lake: &Location,
    report: &IngestReport,
    cache: &ModelCache,
) -> Vec<(String, String, RunStatus)> {
    let mut out = Vec::new();
    for w in &report.workspaces {
        let docs = match registry::list(lake, &w.workspace).await {
            Ok(d) => d,
            Err(e) => {
                tracing::warn!(workspace = %w.workspace, error = %e, "ML hook: cannot list the models; file not scored");
                continue;
            }
        };
        let active: Vec<&ModelDoc> = registry::latest_of_each(&docs)
            .into_iter()
            .filter(|d| d.active && d.ready)
            .collect();
        if active.is_empty() {
            continue;
        }
        let me_ids: BTreeSet<i64> = active
            .iter()
            .flat_map(|d| d.input_signature.iter().map(|i| i.me_id))
            .collect();
        let tails: BTreeMap<i64, Vec<usize>> = active
            .iter()
            .flat_map(|d| {
                d.input_signature.iter().map(|i| {
                    (
                        i.me_id,
                        i.dims
                            .iter()
                            .skip(1)
                            .map(|x| (*x).max(0) as usize)
                            .collect(),
                    )
                })
            })
            .collect();
        let mut rows = FileRows::new();
        let mut runs = BTreeSet::new();
        let mut failed_read = false;
        for key in &w.objects {
            let Some((run, _dim)) = run_of(key) else {
                continue;
            };
            runs.insert(run);
            if let Err(e) = read_object(lake, key, run, &me_ids, &tails, &mut rows).await {
                tracing::warn!(object = %key, error = %e, "ML hook: cannot read the file's histograms; file not scored");
                failed_read = true;
                break;
            }
        }
        if failed_read {
            continue;
        }
        // Every model's scores of the file in one commit of `ml_scores` (one per model and run
        // would make the commits the hook's main cost), then each run's status.
        let mut scored = Vec::new();
        for doc in &active {
            for run in &runs {
                match score_model_run(lake, cache, doc, *run, report.file_id, &rows).await {
                    Ok(Some((st, parts))) => scored.push((*doc, *run, st, parts)),
                    Ok(None) => {}
                    Err(e) => {
                        tracing::warn!(model = %doc.label(), run, error = %e, "ML hook: scores not written")
                    }
                }
            }
        }
        let writes: Vec<results::Pending<'_>> = scored
            .iter()
            .filter(|(_, _, st, _)| st.status == "OK")
            .map(|(doc, run, _, parts)| results::Pending {
                doc: *doc,
                run: *run,
                batch: Batch::File(report.file_id),
                parts: parts.as_slice(),
            })
            .collect();
        if let Err(e) = results::write_batches(lake, &w.workspace, &writes).await {
            tracing::warn!(workspace = %w.workspace, error = %e, "ML hook: scores not written");
            continue;
        }
        let puts = scored
            .iter()
            .map(|(doc, _, st, _)| registry::put_status(lake, doc, st));
        for (r, (doc, run, st, _)) in futures::future::join_all(puts)
            .await
            .into_iter()
            .zip(&scored)
        {
            match r {
                Ok(()) => out.push((w.workspace.clone(), doc.label(), st.clone())),
                Err(e) => {
                    tracing::warn!(model = %doc.label(), run, error = %e, "ML hook: status not written")
                }
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    #[test]
    fn finds_the_run_and_table_of_data_objects() {
        assert_eq!(
            super::run_of("tracker/th1/run_number=380310/part-1.parquet"),
            Some((380310, 1))
        );
        assert_eq!(
            super::run_of("pre/fix/all/th2/run_number=7/part-1.parquet"),
            Some((7, 2))
        );
        assert_eq!(super::run_of("all/me_index/part-1.parquet"), None);
    }
}
