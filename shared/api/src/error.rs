//! Every error the API returns, mapped to HTTP in one place.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::{json, Value};

/// An API error: status and DIALS-shaped JSON body.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// 400 `{"<param>": ["message"]}` — the user's parameter is wrong.
    #[error("invalid parameter {param}: {message}")]
    BadParam {
        /// Parameter name.
        param: String,
        /// Why.
        message: String,
    },
    /// 404 `{"detail": ...}`.
    #[error("{0}")]
    NotFound(String),
    /// 406 — an output format we cannot produce.
    #[error("{0}")]
    NotAcceptable(String),
    /// 500 — our fault (query engine, lake I/O). Never used for user mistakes.
    #[error("internal error: {0}")]
    Internal(String),
    /// 503 — the lake could not be reached; retry later.
    #[error("lake unavailable: {0}")]
    Unavailable(String),
}

impl ApiError {
    /// A bad value for `param`.
    pub fn bad(param: &str, message: impl Into<String>) -> Self {
        ApiError::BadParam { param: param.to_string(), message: message.into() }
    }

    /// The status code.
    pub fn status(&self) -> StatusCode {
        match self {
            ApiError::BadParam { .. } => StatusCode::BAD_REQUEST,
            ApiError::NotFound(_) => StatusCode::NOT_FOUND,
            ApiError::NotAcceptable(_) => StatusCode::NOT_ACCEPTABLE,
            ApiError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
            ApiError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
        }
    }

    /// The JSON body.
    pub fn body(&self) -> Value {
        match self {
            ApiError::BadParam { param, message } => json!({ param.as_str(): [message] }),
            other => json!({ "detail": other.to_string() }),
        }
    }
}

impl From<datafusion::error::DataFusionError> for ApiError {
    fn from(e: datafusion::error::DataFusionError) -> Self {
        tracing::error!(error = %e, "query failed");
        ApiError::Internal(e.to_string())
    }
}

impl From<arrow::error::ArrowError> for ApiError {
    fn from(e: arrow::error::ArrowError) -> Self {
        ApiError::Internal(e.to_string())
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (self.status(), axum::Json(self.body())).into_response()
    }
}
