//! Byte sources: where a ROOT file's bytes come from.
//!
//! The reader only ever asks for byte ranges (`read_at`), so a file can be read from a local disk,
//! from memory, or from an object store with ranged GETs, without ever holding the whole file.
//! The interface is synchronous on purpose (see docs/decisions/0003-sync-byte-source.md): decoding
//! is CPU-bound and runs on blocking threads; an object-store source bridges to async I/O inside
//! `read_at` and can fetch many ranges concurrently in `read_ranges`.

use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use bytes::Bytes;

use crate::error::{Error, Result};

/// A random-access, immutable sequence of bytes of known length.
pub trait ByteSource: Send + Sync {
    /// Total length in bytes.
    fn len(&self) -> u64;

    /// Reads exactly `len` bytes at `offset`. Callers check bounds first (see [`read_checked`]).
    fn read_at(&self, offset: u64, len: usize) -> Result<Bytes>;

    /// Reads several ranges; sources with per-request latency override this to fetch concurrently.
    fn read_ranges(&self, ranges: &[Range<u64>]) -> Result<Vec<Bytes>> {
        ranges
            .iter()
            .map(|r| self.read_at(r.start, (r.end - r.start) as usize))
            .collect()
    }

    /// A human-readable name for messages (path or URL).
    fn name(&self) -> String;

    /// True when the source holds no bytes.
    fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The version of the named object these bytes are, when the source knows it: what an ingest
    /// is fenced by (of two versions of one logical file, the newer one's rows win).
    fn version(&self) -> Option<SourceVersion> {
        None
    }

    /// Whether [`version`](Self::version) is still the named object's current version, asked of
    /// its store; `None` when the source cannot tell (local files, memory). It orders two versions
    /// whose modification times are equal (S3 records them to the second): the current one is the
    /// newer. Blocking: call it from a blocking thread, as reads are.
    fn is_current(&self) -> Option<Result<bool>> {
        None
    }
}

/// Which version of a named object a source reads. Every byte a source hands out belongs to this
/// one version (an object-store source pins its reads to it).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct SourceVersion {
    /// When the version was written, in milliseconds since the epoch: orders versions.
    pub modified_ms: i64,
    /// The version's entity tag: tells two versions written in the same millisecond apart. Local
    /// files have no version (an operator's `dials ingest` of a file is the newest attempt).
    pub etag: String,
}

/// Reads `len` bytes at `offset` after checking the range lies inside the source.
pub fn read_checked(
    src: &dyn ByteSource,
    offset: u64,
    len: u64,
    what: &'static str,
) -> Result<Bytes> {
    let total = src.len();
    let end = offset
        .checked_add(len)
        .ok_or_else(|| Error::malformed(what, offset, "offset overflow"))?;
    if end > total {
        return Err(Error::Truncated {
            what,
            at: offset,
            needed: len,
            available: total.saturating_sub(offset),
        });
    }
    let len = usize::try_from(len)
        .map_err(|_| Error::malformed(what, offset, "length exceeds address space"))?;
    src.read_at(offset, len)
}

/// A local file read with positioned reads (`pread`); shareable across threads.
#[derive(Debug)]
pub struct LocalFile {
    path: PathBuf,
    file: std::fs::File,
    len: u64,
    stats: IoStats,
}

impl LocalFile {
    /// Opens `path` for reading.
    pub fn open(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref().to_path_buf();
        let file = std::fs::File::open(&path).map_err(Error::Open)?;
        let meta = file.metadata().map_err(Error::Open)?;
        if meta.is_dir() {
            return Err(Error::Open(std::io::Error::other("is a directory")));
        }
        let len = meta.len();
        Ok(Self {
            path,
            file,
            len,
            stats: IoStats::default(),
        })
    }

    /// Number of reads and bytes read so far.
    pub fn stats(&self) -> &IoStats {
        &self.stats
    }
}

impl ByteSource for LocalFile {
    fn len(&self) -> u64 {
        self.len
    }

    fn read_at(&self, offset: u64, len: usize) -> Result<Bytes> {
        let mut buf = vec![0u8; len];
        read_exact_at(&self.file, &mut buf, offset).map_err(|source| Error::Io {
            offset,
            len: len as u64,
            source,
        })?;
        self.stats.record(len as u64);
        Ok(Bytes::from(buf))
    }

    fn name(&self) -> String {
        self.path.display().to_string()
    }
}

#[cfg(unix)]
fn read_exact_at(file: &std::fs::File, buf: &mut [u8], offset: u64) -> std::io::Result<()> {
    std::os::unix::fs::FileExt::read_exact_at(file, buf, offset)
}

#[cfg(windows)]
fn read_exact_at(file: &std::fs::File, mut buf: &mut [u8], mut offset: u64) -> std::io::Result<()> {
    use std::os::windows::fs::FileExt;
    while !buf.is_empty() {
        let n = file.seek_read(buf, offset)?;
        if n == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        buf = &mut buf[n..];
        offset += n as u64;
    }
    Ok(())
}

/// Bytes held in memory (tests, fuzzing, small objects already downloaded).
#[derive(Debug, Clone)]
pub struct MemSource {
    name: String,
    data: Bytes,
    version: Option<SourceVersion>,
}

impl MemSource {
    /// Wraps `data`, naming it `name` in messages.
    pub fn new(name: impl Into<String>, data: impl Into<Bytes>) -> Self {
        Self {
            name: name.into(),
            data: data.into(),
            version: None,
        }
    }

    /// The same bytes, said to be `version` of their object.
    pub fn with_version(self, version: SourceVersion) -> Self {
        Self {
            version: Some(version),
            ..self
        }
    }
}

impl ByteSource for MemSource {
    fn len(&self) -> u64 {
        self.data.len() as u64
    }

    fn read_at(&self, offset: u64, len: usize) -> Result<Bytes> {
        let start = usize::try_from(offset)
            .map_err(|_| Error::malformed("read", offset, "offset too large"))?;
        let end = start
            .checked_add(len)
            .filter(|e| *e <= self.data.len())
            .ok_or(Error::Truncated {
                what: "read",
                at: offset,
                needed: len as u64,
                available: self.len().saturating_sub(offset),
            })?;
        Ok(self.data.slice(start..end))
    }

    fn name(&self) -> String {
        self.name.clone()
    }

    fn version(&self) -> Option<SourceVersion> {
        self.version.clone()
    }
}

/// Request and byte counters of a source.
#[derive(Debug, Default)]
pub struct IoStats {
    requests: AtomicU64,
    bytes: AtomicU64,
}

impl IoStats {
    /// Records one request of `bytes` bytes.
    pub fn record(&self, bytes: u64) {
        self.requests.fetch_add(1, Ordering::Relaxed);
        self.bytes.fetch_add(bytes, Ordering::Relaxed);
    }
    /// Requests so far.
    pub fn requests(&self) -> u64 {
        self.requests.load(Ordering::Relaxed)
    }
    /// Bytes so far.
    pub fn bytes(&self) -> u64 {
        self.bytes.load(Ordering::Relaxed)
    }
}
