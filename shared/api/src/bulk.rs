//! Bulk output for ML users: the rows of a th1/th2 query as one Arrow IPC stream or Parquet file,
//! cut to the response budget (`budget.rs`); the caller hands out the rest with a `next` link.

use arrow::array::RecordBatch;
use arrow::datatypes::SchemaRef;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};

use crate::error::ApiError;

/// Bytes an Arrow IPC stream ends with (continuation marker + zero length).
const IPC_EOS: usize = 8;

/// An encoded export and how many leading rows of the input it holds.
#[derive(Debug)]
pub struct Encoded {
    /// The Arrow stream or Parquet file.
    pub body: Vec<u8>,
    /// Leading rows of the input it holds (fewer than given: the budget was hit).
    pub rows: usize,
}

/// Encodes as many leading rows of `batches` as fit in `max_raw` bytes as `arrow` (IPC stream) or
/// `parquet`. `rows == 0` while rows were given: the first row alone does not fit.
pub fn encode(
    format: &str,
    schema: SchemaRef,
    batches: &[RecordBatch],
    max_raw: usize,
) -> Result<Encoded, ApiError> {
    let arrow = arrow_prefix(&schema, batches, max_raw)?;
    if format == "arrow" {
        return Ok(arrow);
    }
    // Parquet holds the same rows; its size is known only once written, so it is checked and the
    // row count halved in the rare case it comes out larger than the Arrow stream that fitted.
    let mut rows = arrow.rows;
    loop {
        let body = parquet_of(&schema, batches, rows)?;
        if body.len() <= max_raw || rows == 0 {
            let rows = if body.len() <= max_raw { rows } else { 0 };
            return Ok(Encoded { body, rows });
        }
        rows /= 2;
    }
}

/// The longest prefix of `batches` whose Arrow IPC stream fits `max_raw` bytes. Rows go in chunks
/// sized from the batch's in-memory size; a chunk that overshoots is taken back (a stream is a
/// sequence of self-contained messages, and our schemas have no dictionaries) and halved.
fn arrow_prefix(
    schema: &SchemaRef,
    batches: &[RecordBatch],
    max_raw: usize,
) -> Result<Encoded, ApiError> {
    let mut w = arrow::ipc::writer::StreamWriter::try_new(Vec::new(), schema)?;
    let mut rows = 0;
    'batches: for b in batches {
        let n = b.num_rows();
        if n == 0 {
            continue;
        }
        let per_row = (b.get_array_memory_size() / n).max(1);
        let mut off = 0;
        while off < n {
            let left = max_raw.saturating_sub(w.get_ref().len() + IPC_EOS);
            let mut take = (left / per_row).clamp(1, n - off);
            loop {
                let mark = w.get_ref().len();
                w.write(&b.slice(off, take))?;
                if w.get_ref().len() + IPC_EOS <= max_raw {
                    break;
                }
                w.get_mut().truncate(mark);
                if take == 1 {
                    break 'batches;
                }
                take /= 2;
            }
            off += take;
            rows += take;
        }
    }
    w.finish()?;
    Ok(Encoded {
        body: w.into_inner()?,
        rows,
    })
}

fn parquet_of(
    schema: &SchemaRef,
    batches: &[RecordBatch],
    rows: usize,
) -> Result<Vec<u8>, ApiError> {
    let pq = |e: parquet::errors::ParquetError| ApiError::Internal(e.to_string());
    let mut buf = Vec::new();
    let mut w = parquet::arrow::ArrowWriter::try_new(&mut buf, schema.clone(), None).map_err(pq)?;
    let mut left = rows;
    for b in batches {
        if left == 0 {
            break;
        }
        let take = b.num_rows().min(left);
        w.write(&b.slice(0, take)).map_err(pq)?;
        left -= take;
    }
    w.close().map_err(pq)?;
    Ok(buf)
}

/// The HTTP response of an export.
pub fn response(format: &str, body: Vec<u8>) -> Response {
    (
        StatusCode::OK,
        [(header::CONTENT_TYPE, content_type(format))],
        body,
    )
        .into_response()
}

fn content_type(format: &str) -> &'static str {
    if format == "arrow" {
        "application/vnd.apache.arrow.stream"
    } else {
        "application/vnd.apache.parquet"
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    use arrow::array::{Float64Array, Int64Array};
    use arrow::datatypes::{DataType, Field, Schema};

    fn batch(n: usize) -> RecordBatch {
        let schema = Arc::new(Schema::new(vec![
            Field::new("k", DataType::Int64, false),
            Field::new("v", DataType::Float64, false),
        ]));
        let k = Int64Array::from_iter_values(0..n as i64);
        let v = Float64Array::from_iter_values((0..n).map(|i| i as f64 * 0.5));
        RecordBatch::try_new(schema, vec![Arc::new(k), Arc::new(v)]).expect("batch")
    }

    fn read_arrow(body: &[u8]) -> Vec<i64> {
        let r = arrow::ipc::reader::StreamReader::try_new(std::io::Cursor::new(body), None)
            .expect("stream");
        r.flat_map(|b| {
            let b = b.expect("batch");
            b.column(0)
                .as_any()
                .downcast_ref::<Int64Array>()
                .expect("i64")
                .values()
                .to_vec()
        })
        .collect()
    }

    #[test]
    fn exports_stop_at_the_budget_with_a_readable_prefix() {
        let bs = vec![batch(10_000), batch(5_000)];
        let schema = bs[0].schema();
        let all = encode("arrow", schema.clone(), &bs, usize::MAX).expect("all");
        assert_eq!(all.rows, 15_000);
        for budget in [all.body.len() / 3, 5_000, 2_000] {
            let cut = encode("arrow", schema.clone(), &bs, budget).expect("cut");
            assert!(cut.body.len() <= budget, "{} > {budget}", cut.body.len());
            assert!(cut.rows > 0 && cut.rows < 15_000);
            let keys = read_arrow(&cut.body);
            assert_eq!(
                keys,
                (0..cut.rows as i64).collect::<Vec<_>>(),
                "a readable stream of exactly the leading rows"
            );
            let pq = encode("parquet", schema.clone(), &bs, budget).expect("parquet");
            assert!(pq.body.len() <= budget && pq.rows > 0);
        }
        // Nothing fits: no rows (the caller answers 413).
        assert_eq!(encode("arrow", schema, &bs, 100).expect("tiny").rows, 0);
    }
}
