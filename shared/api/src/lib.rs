//! The DIALS REST API over the lake: the same router serves `dials serve`, `dials up` and the
//! query Lambda function. Errors map to HTTP in one place (`error.rs`); every filter is a bound
//! SQL parameter (`params.rs`); the engine registers the lake tables once (`engine.rs`).

pub mod auth;
pub mod budget;
pub mod bulk;
pub mod cache;
pub mod deadline;
pub mod delta_files;
pub mod engine;
pub mod error;
pub mod guard;
pub mod json;
pub mod ml;
pub mod openapi;
pub mod params;
pub mod pruned;
pub mod routes;
pub mod timing;
pub mod ui;

pub use engine::Engine;
pub use error::ApiError;
pub use routes::{router, router_with_auth, App};
