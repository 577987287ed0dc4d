//! The DIALS lake: what an ingested DQMIO file becomes.
//!
//! Per workspace, one Parquet table per resource under `<lake>/<workspace>/<table>/`, Hive-partitioned
//! by run (`run_number=<n>/`) for the per-lumisection tables, with one file per ingested DQMIO file
//! (`part-<file_id>.parquet`) so a re-ingest replaces instead of duplicating. See `docs/lake.md`.

#![forbid(unsafe_code)]

pub mod committer;
pub mod compact;
pub mod config;
pub mod dataset;
pub mod delta;
pub mod events;
pub mod forward;
pub mod handover;
pub mod ids;
pub mod ingest;
pub mod logcache;
pub mod me_major;
pub mod store;
pub mod tables;
pub mod txns;

pub use config::{Workspace, Workspaces};
pub use dataset::DatasetInfo;
pub use ingest::{ingest, ingest_queued, record_failure, IngestError, IngestReport, IngestRequest};
pub use store::{Location, ObjectSource};
