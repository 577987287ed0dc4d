//! Errors of the ROOT/DQMIO reading layer.
//!
//! Every failure carries enough context (what was being read, where) for a one-line message that
//! names the problem. Nothing in this crate panics on bad input: every length read from a file is
//! checked against the bytes that are actually there before it is used.

use std::fmt;

/// Result alias for this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Compression algorithms found in ROOT block headers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize)]
pub enum Algorithm {
    /// `ZL`: zlib (deflate with zlib header and adler32).
    Zlib,
    /// `XZ`: lzma (xz container).
    Lzma,
    /// `L4`: lz4 block with an xxhash64 checksum.
    Lz4,
    /// `ZS`: zstd frame.
    Zstd,
    /// `CS`: ROOT's pre-zlib algorithm (not supported).
    OldRoot,
}

impl fmt::Display for Algorithm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Algorithm::Zlib => "zlib",
            Algorithm::Lzma => "lzma",
            Algorithm::Lz4 => "lz4",
            Algorithm::Zstd => "zstd",
            Algorithm::OldRoot => "old-root",
        })
    }
}

/// Everything that can go wrong while reading a ROOT/DQMIO file (fields: offsets are file offsets).
#[allow(missing_docs)]
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The file could not be opened.
    #[error("cannot open: {0}")]
    Open(#[source] std::io::Error),
    /// The byte source failed (file system, object store).
    #[error("read of {len} bytes at offset {offset} failed: {source}")]
    Io {
        offset: u64,
        len: u64,
        #[source]
        source: std::io::Error,
    },
    /// The file does not start with the ROOT magic.
    #[error("not a ROOT file (first bytes {0:?})")]
    NotRoot(String),
    /// A read would go past the end of the file or of a buffer.
    #[error("truncated {what}: needs {needed} bytes at offset {at}, only {available} available")]
    Truncated {
        what: &'static str,
        at: u64,
        needed: u64,
        available: u64,
    },
    /// A structure does not make sense (bad byte count, impossible length, ...).
    #[error("malformed {what} at offset {at}: {detail}")]
    Malformed {
        what: &'static str,
        at: u64,
        detail: String,
    },
    /// A compressed block could not be decompressed.
    #[error("{algorithm} block at offset {at} failed to decompress: {detail}")]
    Decompress {
        algorithm: Algorithm,
        at: u64,
        detail: String,
    },
    /// A checksum stored with the data does not match.
    #[error("{algorithm} checksum mismatch in block at offset {at}")]
    Checksum { algorithm: Algorithm, at: u64 },
    /// An object claims more decompressed bytes than it can legitimately hold (its container's
    /// declared size, the compression format) or than the reader allows (one object, one read).
    /// Raised before anything is allocated for it.
    #[error(
        "{what} at offset {at} claims {claimed} bytes decompressed, more than {limit}: {bound}"
    )]
    TooLarge {
        what: &'static str,
        at: u64,
        claimed: u64,
        limit: u64,
        bound: String,
    },
    /// A valid construct this reader does not implement.
    #[error("unsupported: {0}")]
    Unsupported(String),
    /// The file is a ROOT file but not a DQMIO file.
    #[error("not a DQMIO file: {0}")]
    NotDqmio(String),
    /// A named object is missing.
    #[error("{0} not found")]
    NotFound(String),
    /// A regular expression given by the caller is invalid.
    #[error("invalid regular expression: {0}")]
    Regex(#[from] regex::Error),
}

impl Error {
    /// Shorthand for [`Error::Malformed`].
    pub fn malformed(what: &'static str, at: u64, detail: impl Into<String>) -> Self {
        Error::Malformed {
            what,
            at,
            detail: detail.into(),
        }
    }
}
