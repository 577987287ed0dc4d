//! The per-lumisection results table, `ml_scores`: one row per (model revision, file, lumisection)
//! with the score and the flag at scoring time. Hive-partitioned by run like `th1`:
//! `<lake>/<workspace>/ml_scores/run_number=<run>/part-<model_id>-<batch>.parquet`, where the
//! batch is `file-<file_id>` (scored on ingest) or `run` (backfill: the whole run at once).
//! Every write goes through [`write_batch`], the one place to change when the table format changes.

use std::sync::Arc;

use arrow::array::{ArrayRef, BooleanArray, Float64Array, Int64Array, RecordBatch, StringArray};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use futures::TryStreamExt;
use object_store::{ObjectStoreExt, PutPayload};
use parquet::arrow::ArrowWriter;

use dials_lake::Location;

use crate::error::Result;
use crate::model::ModelDoc;
use crate::score::ScoreRow;

/// Table folder under a workspace.
pub const TABLE: &str = "ml_scores";

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
    fn object(self, model_id: i64) -> String {
        match self {
            Batch::File(f) => format!("part-{model_id}-file-{f}.parquet"),
            Batch::Run => format!("part-{model_id}-run.parquet"),
        }
    }
}

/// Rows of one dataset's batch, as a record batch.
pub fn to_batch(doc: &ModelDoc, dataset_id: i64, dataset: &str, batch: Batch, run: i64, rows: &[ScoreRow]) -> Result<RecordBatch> {
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
        Arc::new(Int64Array::from(rows.iter().map(|r| r.file_id).collect::<Vec<_>>())),
        Arc::new(Int64Array::from(rows.iter().map(|r| r.ls_number).collect::<Vec<_>>())),
        Arc::new(Int64Array::from(vec![me_id; n])),
        Arc::new(Float64Array::from(rows.iter().map(|r| r.score).collect::<Vec<_>>())),
        Arc::new(BooleanArray::from(rows.iter().map(|r| r.flag).collect::<Vec<_>>())),
        Arc::new(StringArray::from(vec![kind; n])),
        Arc::new(Int64Array::from(vec![batch_id; n])),
        Arc::new(StringArray::from(vec![now.as_str(); n])),
    ];
    Ok(RecordBatch::try_new(schema(), cols)?)
}

/// Writes the scores of one batch (all datasets' rows of that run) as one object, replacing what
/// the same batch wrote before (idempotent). A whole-run batch then removes the model's per-file
/// objects of that run: the run object holds those rows now. An empty batch writes nothing (and
/// removes an earlier object of the same batch). Returns the object key.
pub async fn write_batch(lake: &Location, doc: &ModelDoc, run: i64, batch: Batch, parts: &[RecordBatch]) -> Result<Option<String>> {
    let part = format!("run_number={run}");
    let path = lake.child(&[&doc.workspace, TABLE, &part, &batch.object(doc.id)]);
    let rows: usize = parts.iter().map(RecordBatch::num_rows).sum();
    let written = if rows == 0 {
        match lake.store.delete(&path).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => None,
            Err(e) => return Err(e.into()),
        }
    } else {
        let mut buf = Vec::new();
        let mut w = ArrowWriter::try_new(&mut buf, schema(), Some(dials_lake::ingest::writer_props()))?;
        for b in parts {
            w.write(b)?;
        }
        w.close()?;
        lake.store.put(&path, PutPayload::from(buf)).await?;
        Some(path.to_string())
    };
    if batch == Batch::Run {
        let dir = lake.child(&[&doc.workspace, TABLE, &part]);
        let prefix = format!("part-{}-file-", doc.id);
        let metas: Vec<_> = match lake.store.list(Some(&dir)).try_collect::<Vec<_>>().await {
            Ok(m) => m,
            Err(object_store::Error::NotFound { .. }) => Vec::new(),
            Err(e) => return Err(e.into()),
        };
        for m in metas.iter().filter(|m| m.location.filename().is_some_and(|f| f.starts_with(&prefix))) {
            match lake.store.delete(&m.location).await {
                Ok(()) | Err(object_store::Error::NotFound { .. }) => {}
                Err(e) => return Err(e.into()),
            }
        }
    }
    Ok(written)
}

