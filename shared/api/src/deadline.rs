//! The request deadline: every request ends within `DIALS_REQUEST_TIMEOUT_MS`.
//!
//! The query function runs behind API Gateway, which gives up after 29 s, while the object store
//! client retries a failing request for up to 180 s (object_store's default). Dropping the request's
//! future at the deadline cancels its queries and their store requests (DataFusion aborts its tasks
//! when their streams are dropped), and the client gets a 503 with `Retry-After` in time, instead of
//! API Gateway's bare 504 after the function's time ran out.

use std::time::Duration;

use axum::extract::Request;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use crate::error::ApiError;

/// Default deadline: under API Gateway's 29 s integration timeout, with room to answer.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(25);

/// `DIALS_REQUEST_TIMEOUT_MS`, default [`DEFAULT_TIMEOUT`] (read per request).
pub fn timeout() -> Duration {
    std::env::var("DIALS_REQUEST_TIMEOUT_MS")
        .ok()
        .and_then(|v| v.trim().parse::<u64>().ok())
        .filter(|ms| *ms > 0)
        .map_or(DEFAULT_TIMEOUT, Duration::from_millis)
}

/// Middleware: the request, or a 503 when it outlives the deadline.
pub async fn enforce(req: Request, next: Next) -> Response {
    let limit = timeout();
    let path = req.uri().path().to_string();
    match tokio::time::timeout(limit, next.run(req)).await {
        Ok(resp) => resp,
        Err(_) => {
            tracing::warn!(
                path,
                timeout_ms = limit.as_millis() as u64,
                "request deadline passed; the lake did not answer in time"
            );
            ApiError::Unavailable(format!(
                "the lake did not answer within {:.1} s; try again",
                limit.as_secs_f64()
            ))
            .into_response()
        }
    }
}
