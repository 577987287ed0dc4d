//! Errors of the ML layer: every one names what it is about (model, ME, run).

/// An ML error.
#[derive(Debug, thiserror::Error)]
pub enum MlError {
    /// The ONNX file could not be read or prepared for the given input shapes.
    #[error("model {model}: cannot load the ONNX file: {message}")]
    Load {
        /// Model name/revision.
        model: String,
        /// tract's message (its whole chain).
        message: String,
    },
    /// The model failed while running on a batch.
    #[error("model {model}: inference failed on run {run}: {message}")]
    Run {
        /// Model name/revision.
        model: String,
        /// Run of the batch.
        run: i64,
        /// tract's message.
        message: String,
    },
    /// The model's outputs do not give what the document says (missing key, wrong length).
    #[error("model {model}: {message}")]
    Output {
        /// Model name/revision.
        model: String,
        /// What is wrong.
        message: String,
    },
    /// The histograms of a batch do not fit together or the model (bins differ).
    #[error("model {model}: input {me}: {message}")]
    Input {
        /// Model name/revision.
        model: String,
        /// ME.
        me: String,
        /// What is wrong.
        message: String,
    },
    /// A model document is not valid (threshold modes, names, inputs).
    #[error("invalid model document: {0}")]
    Invalid(String),
    /// No such model in the registry.
    #[error("no model '{0}' in workspace '{1}'")]
    UnknownModel(String, String),
    /// The lake's store failed.
    #[error("object store: {0}")]
    Store(#[from] object_store::Error),
    /// A model document is not valid JSON.
    #[error("model document {path}: {source}")]
    Json {
        /// Object key.
        path: String,
        /// Cause.
        #[source]
        source: serde_json::Error,
    },
    /// Encoding the results failed.
    #[error("parquet: {0}")]
    Parquet(#[from] parquet::errors::ParquetError),
    /// The results table's Delta log refused or failed a commit.
    #[error("{0}")]
    Delta(#[from] dials_lake::delta::DeltaError),
    /// Compacting or vacuuming the results table, or rewriting a merged object of it, failed.
    #[error("{0}")]
    Compact(#[from] dials_lake::compact::CompactError),
    /// Building Arrow arrays failed.
    #[error("arrow: {0}")]
    Arrow(#[from] arrow::error::ArrowError),
}

/// Result of this crate.
pub type Result<T, E = MlError> = std::result::Result<T, E>;
