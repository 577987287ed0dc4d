//! Pure-Rust reader for CMS DQMIO files (ROOT files of per-lumisection monitoring elements).
//!
//! Layers, bottom to top: [`source`] (byte ranges from a file, memory or an object store),
//! [`cursor`] (bounds-checked big-endian reading with ROOT byte counts), [`compress`] (ROOT's
//! compression blocks), [`file`] (header, keys, directories), [`tree`] (TTree/TBranch metadata and
//! baskets), [`hist`] (histogram decoding) and [`dqmio`] (the `Indices` tree and the element trees).
//! No layer panics on bad input; every error names what was being read and where.

#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod compress;
pub mod cursor;
pub mod dqmio;
pub mod dump;
pub mod error;
pub mod file;
pub mod hist;
pub mod prefetch;
pub mod source;
pub mod tree;

pub use compress::{Budget, Limits};
pub use dqmio::{DqmioFile, IndexEntry, MeValue, MonitorElement, Order, Selection};
pub use error::{Error, Result};
pub use hist::{Axis, Histogram, MeKind};
pub use source::{ByteSource, LocalFile, MemSource, SourceVersion};
