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
    /// 401 `{"detail", "code"}` with `WWW-Authenticate: Bearer` — no usable token (auth.rs).
    #[error("{detail}")]
    Unauthorized {
        /// DIALS's error code (`authorization_not_found`, `access_token_expired`, ...).
        code: &'static str,
        /// Why.
        detail: String,
        /// A token was sent but refused (`error="invalid_token"` in the challenge).
        invalid: bool,
    },
    /// 403 `{"detail", "code"}` — a valid token that may not read what it asks for.
    #[error("{detail}")]
    Forbidden {
        /// Error code (`workspace_forbidden`, `no_workspace`).
        code: &'static str,
        /// Why.
        detail: String,
    },
    /// 404 `{"detail": ...}`.
    #[error("{0}")]
    NotFound(String),
    /// 406 — an output format we cannot produce.
    #[error("{0}")]
    NotAcceptable(String),
    /// 413 — one item alone is larger than a response may be (see `budget.rs`); nothing smaller
    /// can be sent for it, so a page cannot move past it.
    #[error("{0}")]
    TooLarge(String),
    /// 500 — our fault (query engine, lake I/O). Never used for user mistakes.
    #[error("internal error: {0}")]
    Internal(String),
    /// 503 with `Retry-After` — the lake's object store failed or did not answer within the
    /// request's deadline; the same request may well succeed later.
    #[error("lake unavailable: {0}")]
    Unavailable(String),
}

/// Seconds a client is told to wait after a 503 (`Retry-After`): about one listing TTL.
pub const RETRY_AFTER_SECS: u32 = 2;

impl ApiError {
    /// A bad value for `param`.
    pub fn bad(param: &str, message: impl Into<String>) -> Self {
        ApiError::BadParam {
            param: param.to_string(),
            message: message.into(),
        }
    }

    /// The status code.
    pub fn status(&self) -> StatusCode {
        match self {
            ApiError::BadParam { .. } => StatusCode::BAD_REQUEST,
            ApiError::Unauthorized { .. } => StatusCode::UNAUTHORIZED,
            ApiError::Forbidden { .. } => StatusCode::FORBIDDEN,
            ApiError::NotFound(_) => StatusCode::NOT_FOUND,
            ApiError::NotAcceptable(_) => StatusCode::NOT_ACCEPTABLE,
            ApiError::TooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
            ApiError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
        }
    }

    /// The JSON body.
    pub fn body(&self) -> Value {
        match self {
            ApiError::BadParam { param, message } => json!({ param.as_str(): [message] }),
            ApiError::Unauthorized { code, detail, .. } | ApiError::Forbidden { code, detail } => {
                json!({ "detail": detail, "code": code })
            }
            other => json!({ "detail": other.to_string() }),
        }
    }
}

/// The object-store error somewhere in `e`'s chain of sources, if the failure came from the store.
/// DataFusion wraps store errors in several layers (`ObjectStore`, `External`, `Context`, Parquet's
/// and Arrow's `External`), so the chain is walked instead of matching one variant.
pub fn store_error<'a>(
    e: &'a (dyn std::error::Error + 'static),
) -> Option<&'a object_store::Error> {
    let mut cur: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(err) = cur {
        if let Some(s) = err.downcast_ref::<object_store::Error>() {
            return Some(s);
        }
        if let Some(datafusion::error::DataFusionError::ObjectStore(s)) =
            err.downcast_ref::<datafusion::error::DataFusionError>()
        {
            return Some(s);
        }
        cur = err.source();
    }
    None
}

impl From<datafusion::error::DataFusionError> for ApiError {
    fn from(e: datafusion::error::DataFusionError) -> Self {
        // A store that failed (after its retries) is an outage to wait out, not a bug of ours.
        if let Some(s) = store_error(&e) {
            tracing::warn!(error = %e, "lake store failed");
            return ApiError::Unavailable(s.to_string());
        }
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
        let mut resp = (self.status(), axum::Json(self.body())).into_response();
        use axum::http::{header, HeaderValue};
        match &self {
            ApiError::Unavailable(_) => {
                resp.headers_mut()
                    .insert(header::RETRY_AFTER, HeaderValue::from(RETRY_AFTER_SECS));
            }
            ApiError::Unauthorized { invalid, .. } => {
                // RFC 6750: the challenge; a refused token also says so (the detail is in the body).
                let challenge = if *invalid {
                    "Bearer realm=\"dials\", error=\"invalid_token\""
                } else {
                    "Bearer realm=\"dials\""
                };
                resp.headers_mut().insert(
                    header::WWW_AUTHENTICATE,
                    HeaderValue::from_static(challenge),
                );
                resp.headers_mut()
                    .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
            }
            ApiError::Forbidden { .. } => {
                resp.headers_mut()
                    .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
            }
            _ => {}
        }
        resp
    }
}
