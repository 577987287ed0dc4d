//! DIALS ML: the "Anomalous" in DIALS, independent of how the lake stores its tables.
//!
//! Layers, each a module:
//! - [`model`]: the model document (`model.json`, the fields cmsdials' `MLModelsIndex` reads) and its checks;
//! - [`onnx`]: an ONNX file loaded once with tract (pure Rust) and run on `float32 [n_ls, ...]` batches;
//! - [`score`]: a run's (or a file's) histograms → one score and one flag per lumisection;
//! - [`registry`]: models in the lake, `<lake>/<workspace>/models/<name>/<revision>/`;
//! - [`results`]: the per-lumisection results table (`ml_scores`, partitioned by run), written in one place;
//! - [`cert`]: certification JSON and golden JSON from flagged lumisections (DIALS v1.12 algorithms).
//!
//! See `docs/ml.md`.

#![forbid(unsafe_code)]

pub mod bench;
pub mod cert;
pub mod error;
pub mod hook;
pub mod model;
pub mod onnx;
pub mod registry;
pub mod results;
pub mod score;

pub use error::{MlError, Result};
pub use model::{InputMe, ModelDoc, OutputSig, Tag};
pub use onnx::OnnxModel;
pub use score::{MeRows, RunInput, ScoreRow};
