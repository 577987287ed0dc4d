//! The ML side of the API and of the command line, over the lake as the engine reads it:
//! - [`tables`]: the results table (`ml_scores`) registered with the engine;
//! - [`source`]: a run's histograms of one ME read through the engine (committed files only);
//! - [`events`]: the ingest handler's ML extension (scoring on ingest, dropped models, backfill messages);
//! - [`jobs`]: register (with validation), update, score a run, backfill;
//! - [`routes`]: `ml-models-index/`, `ml-bad-lumisection/` (+ `cert-json/`, `golden-json/`).
//!
//! Models, inference and the table writer live in `dials-ml` (`shared/ml`); see `docs/ml.md`.

pub mod events;
pub mod jobs;
pub mod routes;
pub mod source;
pub mod tables;
