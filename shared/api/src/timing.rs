//! `Server-Timing` on every API response: where the request's time went, as browsers' developer
//! tools and `curl -D-` show it. `follow` (bringing the Delta snapshots up to date), `plan` (SQL to
//! a physical plan), `exec` (reading and computing), summed over the request's queries, and
//! `total` (the handler, encoding the response included).
//!
//! The figures are collected in a task-local set up by [`layer`], so they cost nothing outside a
//! request and never mix two requests.

use std::cell::RefCell;
use std::time::{Duration, Instant};

use axum::extract::Request;
use axum::http::HeaderValue;
use axum::middleware::Next;
use axum::response::Response;

#[derive(Default, Clone, Copy)]
struct Timings {
    follow: Duration,
    plan: Duration,
    exec: Duration,
    queries: u32,
}

tokio::task_local! {
    static TIMINGS: RefCell<Timings>;
}

/// Which part of a query a measurement belongs to.
#[derive(Debug, Clone, Copy)]
pub enum Part {
    /// Bringing the Delta snapshots up to date.
    Follow,
    /// Parsing, logical and physical planning.
    Plan,
    /// Executing (reading objects, computing).
    Exec,
}

/// Adds `d` to the current request's `part` (nothing outside a request).
pub fn add(part: Part, d: Duration) {
    let _ = TIMINGS.try_with(|t| {
        let mut t = t.borrow_mut();
        match part {
            Part::Follow => t.follow += d,
            Part::Plan => {
                t.plan += d;
                t.queries += 1;
            }
            Part::Exec => t.exec += d,
        }
    });
}

/// Times `f` as `part` of the current request.
pub async fn timed<T>(part: Part, f: impl std::future::Future<Output = T>) -> T {
    let t0 = Instant::now();
    let out = f.await;
    add(part, t0.elapsed());
    out
}

fn ms(d: Duration) -> String {
    format!("{:.2}", d.as_secs_f64() * 1000.0)
}

/// Middleware: runs the request with a fresh set of timings and reports them on its response.
pub async fn layer(req: Request, next: Next) -> Response {
    let t0 = Instant::now();
    TIMINGS
        .scope(RefCell::new(Timings::default()), async move {
            let mut resp = next.run(req).await;
            let t = TIMINGS.try_with(|t| *t.borrow()).unwrap_or_default();
            let v = format!(
                "follow;dur={}, plan;dur={};desc=\"{} queries\", exec;dur={}, total;dur={}",
                ms(t.follow),
                ms(t.plan),
                t.queries,
                ms(t.exec),
                ms(t0.elapsed())
            );
            if let Ok(v) = HeaderValue::from_str(&v) {
                resp.headers_mut().insert("server-timing", v);
            }
            resp
        })
        .await
}
