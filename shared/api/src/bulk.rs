//! Bulk output for ML users: the rows of a th1/th2 query as one Arrow IPC stream or Parquet file.

use arrow::array::RecordBatch;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};

use crate::error::ApiError;

/// Encodes `batches` as `arrow` (IPC stream) or `parquet`.
pub fn encode(format: &str, batches: &[RecordBatch]) -> Result<Response, ApiError> {
    let Some(schema) = batches.first().map(|b| b.schema()) else {
        return Ok((StatusCode::OK, [(header::CONTENT_TYPE, content_type(format))], Vec::new()).into_response());
    };
    let mut buf = Vec::new();
    match format {
        "arrow" => {
            let mut w = arrow::ipc::writer::StreamWriter::try_new(&mut buf, &schema)?;
            for b in batches {
                w.write(b)?;
            }
            w.finish()?;
        }
        _ => {
            let mut w = parquet::arrow::ArrowWriter::try_new(&mut buf, schema, None).map_err(|e| ApiError::Internal(e.to_string()))?;
            for b in batches {
                w.write(b).map_err(|e| ApiError::Internal(e.to_string()))?;
            }
            w.close().map_err(|e| ApiError::Internal(e.to_string()))?;
        }
    }
    Ok((StatusCode::OK, [(header::CONTENT_TYPE, content_type(format))], buf).into_response())
}

fn content_type(format: &str) -> &'static str {
    if format == "arrow" {
        "application/vnd.apache.arrow.stream"
    } else {
        "application/vnd.apache.parquet"
    }
}
