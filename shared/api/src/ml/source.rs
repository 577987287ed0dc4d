//! Histograms as a model eats them, read through the engine: committed files only, bins without
//! under/overflow, TH2 rows `[ny][nx]` flattened.

use std::collections::BTreeMap;

use arrow::array::{Array, Int32Array, Int64Array, ListArray, RecordBatch, StringArray};
use datafusion::scalar::ScalarValue;
use dials_ml::MeRows;

use crate::engine::Engine;
use crate::error::ApiError;
use crate::ml::tables::finished;

/// What the lake knows of an ME: id, dimension and the shape of one lumisection's bins.
#[derive(Debug, Clone, PartialEq)]
pub struct MeInfo {
    /// ME id.
    pub me_id: i64,
    /// 1 or 2.
    pub dim: i64,
    /// `[nx]` or `[ny, nx]` of a sample histogram.
    pub tail: Vec<usize>,
}

fn i64_col<'a>(b: &'a RecordBatch, name: &str) -> Result<&'a Int64Array, ApiError> {
    b.column_by_name(name)
        .and_then(|c| c.as_any().downcast_ref::<Int64Array>())
        .ok_or_else(|| ApiError::Internal(format!("column {name} is not int64")))
}

fn i32_col<'a>(b: &'a RecordBatch, name: &str) -> Result<&'a Int32Array, ApiError> {
    b.column_by_name(name)
        .and_then(|c| c.as_any().downcast_ref::<Int32Array>())
        .ok_or_else(|| ApiError::Internal(format!("column {name} is not int32")))
}

fn hist_table(engine: &Engine, ws: &str, dim: i64) -> String {
    engine.table(ws, if dim == 2 { "th2" } else { "th1" })
}

/// The ME named `me` in `ws` (committed files), with the shape of a sample histogram; `None` when
/// the lake does not hold it.
pub async fn me_info(engine: &Engine, ws: &str, me: &str) -> Result<Option<MeInfo>, ApiError> {
    let fin = finished(engine, ws).await?;
    let me_id = dials_lake::ids::me_id(me);
    let sql = format!(
        "SELECT MAX(dim) AS dim FROM {} WHERE me_id = $1 AND file_id IN {fin}",
        engine.table(ws, "me_index")
    );
    let got = engine
        .query(&sql, vec![ScalarValue::Int64(Some(me_id))])
        .await?;
    let dim = got.first().and_then(|b| {
        i64_col(b, "dim")
            .ok()
            .filter(|c| !c.is_empty() && !c.is_null(0))
            .map(|c| c.value(0))
    });
    let Some(dim) = dim else { return Ok(None) };
    let cols = if dim == 2 { "x_bin, y_bin" } else { "x_bin" };
    let sql = format!(
        "SELECT {cols} FROM {} WHERE me_id = $1 AND file_id IN {fin} LIMIT 1",
        hist_table(engine, ws, dim)
    );
    let got = engine
        .query(&sql, vec![ScalarValue::Int64(Some(me_id))])
        .await?;
    let Some(b) = got.iter().find(|b| b.num_rows() > 0) else {
        return Ok(None);
    };
    let nx = i32_col(b, "x_bin")?.value(0).max(0) as usize;
    let tail = if dim == 2 {
        vec![i32_col(b, "y_bin")?.value(0).max(0) as usize, nx]
    } else {
        vec![nx]
    };
    Ok(Some(MeInfo { me_id, dim, tail }))
}

/// `(dataset_id, run)` pairs holding `me_id` (committed files), optionally limited to a dataset and runs.
pub async fn runs_with(
    engine: &Engine,
    ws: &str,
    me_id: i64,
    dim: i64,
    dataset_id: Option<i64>,
    runs: Option<&[i64]>,
) -> Result<Vec<(i64, i64)>, ApiError> {
    let fin = finished(engine, ws).await?;
    let mut params = vec![ScalarValue::Int64(Some(me_id))];
    let mut cond = format!("me_id = $1 AND file_id IN {fin}");
    if let Some(d) = dataset_id {
        params.push(ScalarValue::Int64(Some(d)));
        cond.push_str(&format!(" AND dataset_id = ${}", params.len()));
    }
    if let Some(rs) = runs {
        let mut ph = Vec::new();
        for r in rs {
            params.push(ScalarValue::Int64(Some(*r)));
            ph.push(format!("${}", params.len()));
        }
        cond.push_str(&format!(
            " AND run_number IN ({})",
            if ph.is_empty() {
                "NULL".to_string()
            } else {
                ph.join(", ")
            }
        ));
    }
    let sql = format!("SELECT DISTINCT dataset_id, run_number FROM {} WHERE {cond} ORDER BY run_number, dataset_id", hist_table(engine, ws, dim));
    let mut out = Vec::new();
    for b in engine.query(&sql, params).await? {
        let (d, r) = (i64_col(&b, "dataset_id")?, i64_col(&b, "run_number")?);
        out.extend((0..b.num_rows()).map(|i| (d.value(i), r.value(i))));
    }
    Ok(out)
}

/// One run's histograms of an ME, per dataset: `dataset_id` → (dataset name, rows keyed by
/// (lumisection, file)). Only committed files; `file_id` limits the read to one file (ingest's
/// batch). A file holding the ME twice in a lumisection gives its first occurrence (lowest `seq`).
pub async fn read_run(
    engine: &Engine,
    ws: &str,
    me: &str,
    info: &MeInfo,
    run: i64,
    dataset_id: Option<i64>,
    file_id: Option<i64>,
) -> Result<BTreeMap<i64, (String, MeRows)>, ApiError> {
    let fin = finished(engine, ws).await?;
    let mut params = vec![
        ScalarValue::Int64(Some(run)),
        ScalarValue::Int64(Some(info.me_id)),
    ];
    let mut cond = format!("run_number = $1 AND me_id = $2 AND file_id IN {fin}");
    if let Some(d) = dataset_id {
        params.push(ScalarValue::Int64(Some(d)));
        cond.push_str(&format!(" AND dataset_id = ${}", params.len()));
    }
    if let Some(f) = file_id {
        params.push(ScalarValue::Int64(Some(f)));
        cond.push_str(&format!(" AND file_id = ${}", params.len()));
    }
    let sql = format!(
        "SELECT dataset_id, dataset, file_id, ls_number, data FROM {} WHERE {cond} ORDER BY dataset_id, file_id, ls_number, seq",
        hist_table(engine, ws, info.dim)
    );
    let mut out: BTreeMap<i64, (String, MeRows)> = BTreeMap::new();
    for b in engine.query(&sql, params).await? {
        let (d, f, l) = (
            i64_col(&b, "dataset_id")?,
            i64_col(&b, "file_id")?,
            i64_col(&b, "ls_number")?,
        );
        let names = b
            .column_by_name("dataset")
            .and_then(|c| c.as_any().downcast_ref::<StringArray>());
        let data = b
            .column_by_name("data")
            .and_then(|c| c.as_any().downcast_ref::<ListArray>())
            .ok_or_else(|| ApiError::Internal("column data is not a list".into()))?;
        for i in 0..b.num_rows() {
            let e = out.entry(d.value(i)).or_insert_with(|| {
                let name = names.map(|n| n.value(i).to_string()).unwrap_or_default();
                (
                    name,
                    MeRows {
                        me: me.to_string(),
                        tail: info.tail.clone(),
                        rows: BTreeMap::new(),
                    },
                )
            });
            e.1.rows
                .entry((l.value(i), f.value(i)))
                .or_insert_with(|| dials_ml::hook::bins(data, i));
        }
    }
    Ok(out)
}
