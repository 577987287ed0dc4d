//! Where bytes live: a lake root (local folder or `s3://bucket/prefix`) and DQMIO inputs read with
//! ranged GETs through the reader's `ByteSource` trait.

use std::collections::HashMap;
use std::ops::Range;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use bytes::Bytes;
use dials_dqmio::source::IoStats;
use dials_dqmio::{ByteSource, Error as ReadError, SourceVersion};
use futures::{StreamExt, TryStreamExt};
use object_store::aws::AmazonS3Builder;
use object_store::local::LocalFileSystem;
use object_store::path::Path;
use object_store::{GetOptions, GetRange, ObjectStore, ObjectStoreExt};

/// Errors locating or opening a store.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// Bad location string.
    #[error("bad location '{0}': {1}")]
    Location(String, String),
    /// The object store refused.
    #[error("{0}")]
    Store(#[from] object_store::Error),
    /// Local folder problem.
    #[error("{0}: {1}")]
    Io(String, std::io::Error),
}

/// A place in an object store: the store and a key prefix.
#[derive(Debug, Clone)]
pub struct Location {
    /// The store.
    pub store: Arc<dyn ObjectStore>,
    /// Key prefix (or key) inside it.
    pub path: Path,
    /// How a person wrote it (`s3://b/p` or a folder).
    pub url: String,
}

/// Builds an S3 store for `bucket` from the environment (`AWS_ENDPOINT_URL`, region, credentials);
/// plain-http endpoints (LocalStack, moto) are allowed when the endpoint says `http://`.
pub fn s3_store(bucket: &str) -> Result<Arc<dyn ObjectStore>, StoreError> {
    let mut b = AmazonS3Builder::from_env().with_bucket_name(bucket);
    let endpoint = std::env::var("AWS_ENDPOINT_URL_S3")
        .or_else(|_| std::env::var("AWS_ENDPOINT_URL"))
        .ok();
    if let Some(ep) = endpoint {
        b = b
            .with_endpoint(&ep)
            .with_allow_http(ep.starts_with("http://"));
    }
    if std::env::var("AWS_REGION").is_err() && std::env::var("AWS_DEFAULT_REGION").is_err() {
        b = b.with_region("us-east-1");
    }
    Ok(Arc::new(b.build()?))
}

/// For benchmarks only: `DIALS_STORE_DELAY_MS=N` delays every request to the lake's store by N ms
/// (GET, PUT, LIST, copy, rename), as a remote object store's latency would, without an emulator's
/// CPU cost (docs/benchmarks.md, stop 27); `DIALS_STORE_COUNT=1` counts them ([`requests`], the
/// ingest report's `lake_requests`). Unset: the store as it is.
pub fn instrumented(store: Arc<dyn ObjectStore>) -> Arc<dyn ObjectStore> {
    static COUNT: std::sync::LazyLock<bool> = std::sync::LazyLock::new(|| {
        std::env::var("DIALS_STORE_COUNT").is_ok_and(|v| !matches!(v.trim(), "" | "0"))
    });
    let store = with_delay(store);
    if *COUNT {
        hooked(store, Arc::new(Count))
    } else {
        store
    }
}

/// Requests to lake stores made by this process so far, by kind (all zero unless
/// `DIALS_STORE_COUNT` is set: [`instrumented`]). Deletes are not counted.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Requests {
    /// GETs (whole, ranged, or several ranges of one object).
    pub get: u64,
    /// PUTs (a multipart upload counts once).
    pub put: u64,
    /// Listings (one per call, however many pages).
    pub list: u64,
    /// Copies and renames.
    pub copy: u64,
}

impl Requests {
    /// Requests made since `before`.
    pub fn since(self, before: Requests) -> Requests {
        Requests {
            get: self.get.saturating_sub(before.get),
            put: self.put.saturating_sub(before.put),
            list: self.list.saturating_sub(before.list),
            copy: self.copy.saturating_sub(before.copy),
        }
    }
}

static COUNTED: [std::sync::atomic::AtomicU64; 4] =
    [const { std::sync::atomic::AtomicU64::new(0) }; 4];

/// Requests to lake stores counted so far ([`instrumented`]).
pub fn requests() -> Requests {
    let n = |i: usize| COUNTED[i].load(std::sync::atomic::Ordering::Relaxed);
    Requests {
        get: n(0),
        put: n(1),
        list: n(2),
        copy: n(3),
    }
}

/// Counts every request into [`requests`].
#[derive(Debug)]
struct Count;

impl Hook for Count {
    fn before<'a>(
        &'a self,
        req: Request<'a>,
    ) -> futures::future::BoxFuture<'a, object_store::Result<()>> {
        let i = match req {
            Request::Get(_) => 0,
            Request::Put(..) => 1,
            Request::List(_) => 2,
            Request::Copy(..) => 3,
        };
        COUNTED[i].fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        Box::pin(futures::future::ready(Ok(())))
    }
}

fn with_delay(store: Arc<dyn ObjectStore>) -> Arc<dyn ObjectStore> {
    static DELAY: std::sync::OnceLock<Option<std::time::Duration>> = std::sync::OnceLock::new();
    let delay = *DELAY.get_or_init(|| {
        std::env::var("DIALS_STORE_DELAY_MS")
            .ok()
            .and_then(|v| v.trim().parse::<u64>().ok())
            .filter(|ms| *ms > 0)
            .map(std::time::Duration::from_millis)
    });
    match delay {
        Some(delay) => hooked(store, Arc::new(Delay(delay))),
        None => store,
    }
}

/// A request a [`hooked`] store is about to pass on.
#[derive(Debug, Clone, Copy)]
pub enum Request<'a> {
    /// A put (single or multipart; a multipart upload's payload is not shown).
    Put(&'a Path, Option<&'a object_store::PutPayload>),
    /// A GET (whole, ranged, or several ranges).
    Get(&'a Path),
    /// A listing, with its prefix.
    List(Option<&'a Path>),
    /// A copy or rename (source, destination).
    Copy(&'a Path, &'a Path),
}

/// What a [`hooked`] store runs before each request it passes on: it may wait, do something else
/// first, or fail the request. For benchmarks ([`with_delay`]) and tests (faults, races at a chosen
/// moment). Deletes pass through unhooked.
pub trait Hook: Send + Sync + std::fmt::Debug {
    /// Runs before `req`; an error fails the request without passing it on.
    fn before<'a>(
        &'a self,
        req: Request<'a>,
    ) -> futures::future::BoxFuture<'a, object_store::Result<()>>;
}

/// `store` with `hook` run before each of its requests.
pub fn hooked(store: Arc<dyn ObjectStore>, hook: Arc<dyn Hook>) -> Arc<dyn ObjectStore> {
    Arc::new(Hooked { inner: store, hook })
}

/// Every request waits this long first ([`with_delay`]).
#[derive(Debug)]
struct Delay(std::time::Duration);

impl Hook for Delay {
    fn before<'a>(
        &'a self,
        _: Request<'a>,
    ) -> futures::future::BoxFuture<'a, object_store::Result<()>> {
        Box::pin(async move {
            tokio::time::sleep(self.0).await;
            Ok(())
        })
    }
}

/// A store that runs a [`Hook`] before each request ([`hooked`]).
#[derive(Debug)]
struct Hooked {
    inner: Arc<dyn ObjectStore>,
    hook: Arc<dyn Hook>,
}

impl std::fmt::Display for Hooked {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Hooked({:?}, {})", self.hook, self.inner)
    }
}

#[async_trait::async_trait]
impl ObjectStore for Hooked {
    async fn put_opts(
        &self,
        location: &Path,
        payload: object_store::PutPayload,
        opts: object_store::PutOptions,
    ) -> object_store::Result<object_store::PutResult> {
        self.hook
            .before(Request::Put(location, Some(&payload)))
            .await?;
        self.inner.put_opts(location, payload, opts).await
    }

    async fn put_multipart_opts(
        &self,
        location: &Path,
        opts: object_store::PutMultipartOptions,
    ) -> object_store::Result<Box<dyn object_store::MultipartUpload>> {
        self.hook.before(Request::Put(location, None)).await?;
        self.inner.put_multipart_opts(location, opts).await
    }

    async fn get_opts(
        &self,
        location: &Path,
        options: object_store::GetOptions,
    ) -> object_store::Result<object_store::GetResult> {
        self.hook.before(Request::Get(location)).await?;
        self.inner.get_opts(location, options).await
    }

    async fn get_ranges(
        &self,
        location: &Path,
        ranges: &[std::ops::Range<u64>],
    ) -> object_store::Result<Vec<bytes::Bytes>> {
        self.hook.before(Request::Get(location)).await?;
        self.inner.get_ranges(location, ranges).await
    }

    fn delete_stream(
        &self,
        locations: futures::stream::BoxStream<'static, object_store::Result<Path>>,
    ) -> futures::stream::BoxStream<'static, object_store::Result<Path>> {
        self.inner.delete_stream(locations)
    }

    fn list(
        &self,
        prefix: Option<&Path>,
    ) -> futures::stream::BoxStream<'static, object_store::Result<object_store::ObjectMeta>> {
        let (inner, hook, prefix) = (self.inner.clone(), self.hook.clone(), prefix.cloned());
        futures::stream::once(async move {
            match hook.before(Request::List(prefix.as_ref())).await {
                Ok(()) => inner.list(prefix.as_ref()),
                Err(e) => futures::stream::once(async move { Err(e) }).boxed(),
            }
        })
        .flatten()
        .boxed()
    }

    fn list_with_offset(
        &self,
        prefix: Option<&Path>,
        offset: &Path,
    ) -> futures::stream::BoxStream<'static, object_store::Result<object_store::ObjectMeta>> {
        // Passed on as such: S3 lists from the offset (`start-after`) instead of from the start.
        let (inner, hook) = (self.inner.clone(), self.hook.clone());
        let (prefix, offset) = (prefix.cloned(), offset.clone());
        futures::stream::once(async move {
            match hook.before(Request::List(prefix.as_ref())).await {
                Ok(()) => inner.list_with_offset(prefix.as_ref(), &offset),
                Err(e) => futures::stream::once(async move { Err(e) }).boxed(),
            }
        })
        .flatten()
        .boxed()
    }

    async fn list_with_delimiter(
        &self,
        prefix: Option<&Path>,
    ) -> object_store::Result<object_store::ListResult> {
        self.hook.before(Request::List(prefix)).await?;
        self.inner.list_with_delimiter(prefix).await
    }

    async fn copy_opts(
        &self,
        from: &Path,
        to: &Path,
        options: object_store::CopyOptions,
    ) -> object_store::Result<()> {
        self.hook.before(Request::Copy(from, to)).await?;
        self.inner.copy_opts(from, to, options).await
    }

    async fn rename_opts(
        &self,
        from: &Path,
        to: &Path,
        options: object_store::RenameOptions,
    ) -> object_store::Result<()> {
        self.hook.before(Request::Copy(from, to)).await?;
        self.inner.rename_opts(from, to, options).await
    }
}

impl Location {
    /// Parses `s3://bucket/prefix` or a local folder (created if missing when `create`).
    pub fn parse(s: &str, create: bool) -> Result<Location, StoreError> {
        if let Some(rest) = s.strip_prefix("s3://") {
            let (bucket, key) = rest.split_once('/').unwrap_or((rest, ""));
            if bucket.is_empty() {
                return Err(StoreError::Location(s.into(), "no bucket".into()));
            }
            let path = Path::parse(key.trim_end_matches('/'))
                .map_err(|e| StoreError::Location(s.into(), e.to_string()))?;
            return Ok(Location {
                // Counted inside the log cache: only what reaches S3.
                store: crate::logcache::log_cached(instrumented(s3_store(bucket)?)),
                path,
                url: s.into(),
            });
        }
        if s.contains("://") {
            return Err(StoreError::Location(
                s.into(),
                "only s3:// URLs and local paths are supported".into(),
            ));
        }
        if create {
            std::fs::create_dir_all(s).map_err(|e| StoreError::Io(s.into(), e))?;
        }
        let abs = std::fs::canonicalize(s).map_err(|e| StoreError::Io(s.into(), e))?;
        let store = LocalFileSystem::new_with_prefix(&abs).map_err(StoreError::Store)?;
        Ok(Location {
            store: instrumented(Arc::new(store)),
            path: Path::default(),
            url: abs.display().to_string(),
        })
    }

    /// The lake named by `DIALS_LAKE` (what the functions are configured with).
    pub fn from_env() -> Result<Location, StoreError> {
        let url = std::env::var("DIALS_LAKE").map_err(|_| {
            StoreError::Location(
                String::new(),
                "DIALS_LAKE is not set (s3://bucket/prefix)".into(),
            )
        })?;
        Location::parse(&url, false)
    }

    /// A child path under this location.
    pub fn child(&self, parts: &[&str]) -> Path {
        let mut p = self.path.clone();
        for part in parts {
            p = p.clone().join(*part);
        }
        p
    }
}

/// A DQMIO object read with ranged GETs. Reads of at least `direct` bytes (value baskets) fetch exactly
/// their range, so a selective read never pays for what it skips; smaller reads (key headers, tree
/// records, name and flag baskets) go through an aligned block cache, so they cost few requests.
/// Memory: at most `max_blocks` blocks, evicted oldest first.
pub struct ObjectSource {
    store: Arc<dyn ObjectStore>,
    path: Path,
    len: u64,
    rt: tokio::runtime::Handle,
    block: u64,
    direct: u64,
    max_blocks: usize,
    cache: Mutex<(HashMap<u64, Bytes>, std::collections::VecDeque<u64>)>,
    stats: IoStats,
    name: String,
    merge_gap: u64,
    merge_ratio: u64,
    concurrency: usize,
    /// Reads still pending at this instant fail (`TimedOut`) instead of blocking the decoder.
    deadline: Option<Instant>,
    /// The version opened (entity tag as the store gave it, modification time).
    version: Option<SourceVersion>,
}

impl ObjectSource {
    /// Opens `path` with one GET of its last [`OPEN_TAIL_BYTES`] (which also tells the object's
    /// size). ROOT writes a file's keys list, streamer info and tree records at the end, so the
    /// reader then finds them in the block cache instead of asking for them one round trip at a
    /// time. Falls back to a HEAD request if the store refuses the suffix range (an empty object). Must be called
    /// from inside a tokio runtime; reads then happen from blocking threads (`spawn_blocking`).
    pub async fn open(
        store: Arc<dyn ObjectStore>,
        path: Path,
        name: String,
    ) -> Result<Self, object_store::Error> {
        Self::open_until(store, path, name, None).await
    }

    /// [`open`](Self::open), with every request (this open's and every later read's) abandoned
    /// when still pending at `deadline`: the read then fails with `TimedOut`, so a stalled store
    /// cannot keep the decoder (a blocking thread) past an ingest's deadline.
    ///
    /// Every read after the open is pinned to the version the open saw (`If-Match` on its entity
    /// tag): when the key is overwritten meanwhile, reads fail with an I/O error saying so (the
    /// attempt is retried and reads the new version) instead of mixing bytes of two versions.
    pub async fn open_until(
        store: Arc<dyn ObjectStore>,
        path: Path,
        name: String,
        deadline: Option<Instant>,
    ) -> Result<Self, object_store::Error> {
        let tail = until(
            deadline,
            &path,
            store.get_opts(
                &path,
                GetOptions {
                    range: Some(GetRange::Suffix(OPEN_TAIL_BYTES)),
                    ..Default::default()
                },
            ),
        );
        let tail = match tail.await {
            Ok(got) => {
                let (size, range, version) =
                    (got.meta.size, got.range.clone(), version_of(&got.meta));
                let bytes = got.bytes().await?;
                if bytes.len() as u64 == range.end - range.start {
                    Some((size, range.start, bytes, version))
                } else {
                    None
                }
            }
            // A store that answers at once that it cannot serve this range (an empty object: 416, or
            // a whole-object 200 from some emulators): HEAD tells the size, and the reader then
            // reports an empty object as not a ROOT file. Missing objects and failures that were
            // already retried (outages, throttling) are returned as they are.
            Err(e)
                if !matches!(e, object_store::Error::NotFound { .. })
                    && !e.to_string().contains(" retries, max_retries") =>
            {
                tracing::debug!(error = %e, "suffix GET refused; sizing the object with HEAD");
                None
            }
            Err(e) => return Err(e),
        };
        let (len, version) = match &tail {
            Some((size, _, _, version)) => (*size, version.clone()),
            None => {
                let meta = until(deadline, &path, store.head(&path)).await?;
                (meta.size, version_of(&meta))
            }
        };
        let src = ObjectSource {
            store,
            path,
            len,
            rt: tokio::runtime::Handle::current(),
            block: 64 << 10,
            direct: 24 << 10,
            max_blocks: 64,
            cache: Mutex::new((HashMap::new(), std::collections::VecDeque::new())),
            stats: IoStats::default(),
            name,
            merge_gap: env_u64("DIALS_READ_MERGE_GAP").unwrap_or(MERGE_GAP),
            merge_ratio: env_u64("DIALS_READ_MERGE_RATIO").unwrap_or(MERGE_WASTE_RATIO),
            concurrency: env_u64("DIALS_READ_CONCURRENCY")
                .map_or(READ_CONCURRENCY, |c| c.clamp(1, 64) as usize),
            deadline,
            version,
        };
        if let Some((_, start, bytes, _)) = tail {
            src.stats.record(bytes.len() as u64);
            src.keep_blocks(start, &bytes);
        }
        Ok(src)
    }

    /// Puts the whole cache blocks inside `bytes` (which start at `start`) into the block cache.
    fn keep_blocks(&self, start: u64, bytes: &Bytes) {
        let end = start + bytes.len() as u64;
        let mut b = start.div_ceil(self.block);
        while b * self.block < end {
            let (lo, hi) = (b * self.block, ((b + 1) * self.block).min(self.len));
            if hi > end {
                break;
            }
            self.remember(b, bytes.slice((lo - start) as usize..(hi - start) as usize));
            b += 1;
        }
    }

    /// Caches block `b`, evicting the oldest blocks beyond `max_blocks`.
    fn remember(&self, b: u64, data: Bytes) {
        let Ok(mut c) = self.cache.lock() else { return };
        let (map, order) = &mut *c;
        while map.len() >= self.max_blocks {
            match order.pop_front() {
                Some(old) => {
                    map.remove(&old);
                }
                None => break,
            }
        }
        if map.insert(b, data).is_none() {
            order.push_back(b);
        }
    }

    /// Requests and bytes fetched so far.
    pub fn stats(&self) -> &IoStats {
        &self.stats
    }

    fn fetch(&self, range: Range<u64>) -> Result<Bytes, ReadError> {
        let (off, len) = (range.start, range.end - range.start);
        self.stats.record(len);
        self.rt
            .block_on(until(
                self.deadline,
                &self.path,
                get_pinned(&self.store, &self.path, range, self.etag()),
            ))
            .map_err(|e| ReadError::Io {
                offset: off,
                len,
                source: io_error(e),
            })
    }
}

impl ByteSource for ObjectSource {
    fn len(&self) -> u64 {
        self.len
    }

    fn read_at(&self, offset: u64, len: usize) -> Result<Bytes, ReadError> {
        let end = offset + len as u64;
        // Large reads (baskets) go straight to the store; small ones through the block cache.
        if len as u64 >= self.direct {
            return self.fetch(offset..end);
        }
        let first = offset / self.block;
        let last = (end.saturating_sub(1)) / self.block;
        let mut out = Vec::with_capacity(len);
        for b in first..=last {
            let cached = self.cache.lock().ok().and_then(|c| c.0.get(&b).cloned());
            let data = match cached {
                Some(d) => d,
                None => {
                    let start = b * self.block;
                    let d = self.fetch(start..(start + self.block).min(self.len))?;
                    self.remember(b, d.clone());
                    d
                }
            };
            let bstart = b * self.block;
            let lo = offset.max(bstart) - bstart;
            let hi = end.min(bstart + data.len() as u64) - bstart;
            if lo > hi || hi as usize > data.len() {
                return Err(ReadError::Truncated {
                    what: "object",
                    at: offset,
                    needed: len as u64,
                    available: 0,
                });
            }
            out.extend_from_slice(&data[lo as usize..hi as usize]);
        }
        Ok(Bytes::from(out))
    }

    /// Fetches the ranges concurrently ([`READ_CONCURRENCY`] requests in flight), merging ranges
    /// closer than [`MERGE_GAP`] into one request so neighbouring baskets cost one round trip while
    /// skipped value baskets are not fetched.
    fn read_ranges(&self, ranges: &[Range<u64>]) -> Result<Vec<Bytes>, ReadError> {
        let merged = merge_ranges(ranges, self.merge_gap, self.merge_ratio, MERGE_MAX);
        for m in &merged {
            self.stats.record(m.end - m.start);
        }
        let deadline = self.deadline;
        let fetches = merged.iter().cloned().map(|r| {
            let store = self.store.clone();
            let path = self.path.clone();
            let etag = self.etag();
            async move {
                let off = r.start;
                let len = r.end - r.start;
                until(deadline, &path, get_pinned(&store, &path, r, etag))
                    .await
                    .map_err(|e| ReadError::Io {
                        offset: off,
                        len,
                        source: io_error(e),
                    })
            }
        });
        let fetched: Vec<Bytes> = self.rt.block_on(
            futures::stream::iter(fetches)
                .buffered(self.concurrency)
                .try_collect(),
        )?;
        ranges
            .iter()
            .map(|r| {
                if r.end <= r.start {
                    return Ok(Bytes::new());
                }
                let k = merged
                    .partition_point(|m| m.start <= r.start)
                    .saturating_sub(1);
                let (Some(m), Some(data)) = (merged.get(k), fetched.get(k)) else {
                    return Err(ReadError::Truncated {
                        what: "object",
                        at: r.start,
                        needed: r.end - r.start,
                        available: 0,
                    });
                };
                let (lo, hi) = ((r.start - m.start) as usize, (r.end - m.start) as usize);
                if r.start < m.start || hi > data.len() {
                    return Err(ReadError::Truncated {
                        what: "object",
                        at: r.start,
                        needed: r.end - r.start,
                        available: 0,
                    });
                }
                Ok(data.slice(lo..hi))
            })
            .collect()
    }

    fn name(&self) -> String {
        self.name.clone()
    }

    fn version(&self) -> Option<SourceVersion> {
        self.version.clone()
    }

    /// One HEAD of the key: the version opened is current while the key still has its entity tag
    /// (a key deleted since holds no current version).
    fn is_current(&self) -> Option<Result<bool, ReadError>> {
        let want = self.etag()?;
        let head = self.rt.block_on(until(
            self.deadline,
            &self.path,
            self.store.head(&self.path),
        ));
        Some(match head {
            Ok(meta) => Ok(meta.e_tag.is_some_and(|have| same_etag(&have, &want))),
            Err(object_store::Error::NotFound { .. }) => Ok(false),
            Err(e) => Err(ReadError::Io {
                offset: 0,
                len: 0,
                source: io_error(e),
            }),
        })
    }
}

impl ObjectSource {
    /// The entity tag reads are pinned to (as the store gave it).
    fn etag(&self) -> Option<String> {
        self.version
            .as_ref()
            .map(|v| v.etag.clone())
            .filter(|e| !e.is_empty())
    }
}

/// An object's version as a store describes it; `None` without an entity tag.
fn version_of(meta: &object_store::ObjectMeta) -> Option<SourceVersion> {
    let etag = meta.e_tag.clone()?;
    Some(SourceVersion {
        modified_ms: meta.last_modified.timestamp_millis(),
        etag,
    })
}

/// The same entity tag, however a store or an event quotes it (`"abc"`, `abc`, `W/"abc"`).
pub fn same_etag(a: &str, b: &str) -> bool {
    bare_etag(a) == bare_etag(b)
}

/// An entity tag without its quotes and weak marker: the one form tags are compared and hashed in.
pub fn bare_etag(tag: &str) -> &str {
    tag.trim().trim_start_matches("W/").trim_matches('"')
}

/// A ranged GET, refused (`Precondition`) when the object is no longer version `etag`.
async fn get_pinned(
    store: &Arc<dyn ObjectStore>,
    path: &Path,
    range: Range<u64>,
    etag: Option<String>,
) -> Result<Bytes, object_store::Error> {
    let opts = GetOptions {
        range: Some(GetRange::Bounded(range)),
        if_match: etag,
        ..Default::default()
    };
    store.get_opts(path, opts).await?.bytes().await
}

/// Runs a store request, abandoning it (a `TimedOut` error naming `path`) if still pending at `deadline`.
async fn until<T>(
    deadline: Option<Instant>,
    path: &Path,
    request: impl std::future::Future<Output = Result<T, object_store::Error>>,
) -> Result<T, object_store::Error> {
    let Some(deadline) = deadline else {
        return request.await;
    };
    match tokio::time::timeout_at(deadline.into(), request).await {
        Ok(r) => r,
        Err(_) => Err(object_store::Error::Generic {
            store: "deadline",
            source: Box::new(std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                format!("request for {path} still pending at the ingest deadline; abandoned"),
            )),
        }),
    }
}

/// The reader's I/O error for a store error, keeping `TimedOut` recognisable.
fn io_error(e: object_store::Error) -> std::io::Error {
    let kind = match &e {
        object_store::Error::Generic {
            store: "deadline", ..
        } => std::io::ErrorKind::TimedOut,
        object_store::Error::Precondition { path, .. } => {
            return std::io::Error::other(format!("{path} was overwritten while being read (a newer version exists; the attempt is retried)"));
        }
        _ => std::io::ErrorKind::Other,
    };
    std::io::Error::new(kind, e)
}

fn env_u64(name: &str) -> Option<u64> {
    std::env::var(name).ok()?.parse().ok()
}

/// Requests in flight for one `read_ranges` call (`DIALS_READ_CONCURRENCY`).
pub const READ_CONCURRENCY: usize = 8;

/// Bytes read from the end of an object when it is opened (see [`ObjectSource::open`]).
pub const OPEN_TAIL_BYTES: u64 = 256 << 10;

/// Ranges closer than this are always fetched as one request (name and flag baskets sit between
/// value baskets; a skipped value basket is larger than this). `DIALS_READ_MERGE_GAP` overrides it.
pub const MERGE_GAP: u64 = 16 << 10;
/// A larger gap is bridged too while the merged request stays at least `MERGE_WASTE_RATIO` parts
/// wanted bytes to one part unwanted: dense reads (every basket wanted, holes where another chunk's
/// baskets sit) become a few large GETs, while sparse reads (small kept baskets among skipped ones)
/// stay exact. `DIALS_READ_MERGE_RATIO` overrides it (0: only `MERGE_GAP`).
pub const MERGE_WASTE_RATIO: u64 = 8;
/// Largest merged request.
pub const MERGE_MAX: u64 = 8 << 20;

/// Sorted, merged cover of `ranges`: ranges closer than `gap` become one; a larger hole is bridged
/// when the merged range's unwanted bytes (all its holes) stay ≤ 1/`ratio` of its wanted bytes
/// (`ratio` 0 disables that); each merged range at most `max` bytes.
pub fn merge_ranges(ranges: &[Range<u64>], gap: u64, ratio: u64, max: u64) -> Vec<Range<u64>> {
    let mut sorted: Vec<Range<u64>> = ranges.iter().filter(|r| r.end > r.start).cloned().collect();
    sorted.sort_by_key(|r| r.start);
    let mut out: Vec<Range<u64>> = Vec::with_capacity(sorted.len());
    // Wanted and unwanted bytes of the last merged range.
    let (mut wanted, mut waste) = (0u64, 0u64);
    for r in sorted {
        if let Some(m) = out.last_mut() {
            let hole = r.start.saturating_sub(m.end);
            let more = r.end.saturating_sub(m.end.max(r.start));
            let fits = r.end.max(m.end) - m.start <= max;
            let cheap =
                hole <= gap || (ratio > 0 && (waste + hole).saturating_mul(ratio) <= wanted + more);
            if fits && cheap {
                wanted += more;
                waste += hole;
                m.end = m.end.max(r.end);
                continue;
            }
        }
        wanted = r.end - r.start;
        waste = 0;
        out.push(r);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::{merge_ranges, ObjectSource, OPEN_TAIL_BYTES};
    use dials_dqmio::ByteSource;
    use object_store::memory::InMemory;
    use object_store::path::Path;
    use object_store::{ObjectStore, ObjectStoreExt};
    use std::sync::Arc;

    fn pattern(n: usize) -> Vec<u8> {
        (0..n).map(|i| (i * 7 % 251) as u8).collect()
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn opening_reads_the_tail_once_and_serves_it_from_the_cache() {
        let store: Arc<dyn ObjectStore> = Arc::new(InMemory::new());
        let data = pattern(3 << 20);
        store
            .put(&Path::from("big.root"), data.clone().into())
            .await
            .expect("put");
        store
            .put(&Path::from("small.root"), data[..5_000].to_vec().into())
            .await
            .expect("put");
        let big = Arc::new(
            ObjectSource::open(store.clone(), Path::from("big.root"), "big".into())
                .await
                .expect("open"),
        );
        assert_eq!(big.len(), data.len() as u64);
        assert_eq!(
            (big.stats().requests(), big.stats().bytes()),
            (1, OPEN_TAIL_BYTES)
        );
        let len = data.len();
        let b = big.clone();
        let (tail, head) = tokio::task::spawn_blocking(move || {
            let tail = b.read_at((len - 1_000) as u64, 900).expect("tail");
            let after_tail = b.stats().requests();
            let head = b.read_at(10, 100).expect("head");
            (tail, (after_tail, head, b.stats().requests()))
        })
        .await
        .expect("join");
        assert_eq!(&tail[..], &data[len - 1_000..len - 100]);
        assert_eq!(head.0, 1, "the tail came from the open request");
        assert_eq!((&head.1[..], head.2), (&data[10..110], 2));
        // An object smaller than the tail: one request in all.
        let small = Arc::new(
            ObjectSource::open(store.clone(), Path::from("small.root"), "small".into())
                .await
                .expect("open"),
        );
        let s = small.clone();
        let got = tokio::task::spawn_blocking(move || s.read_at(0, 5_000).expect("all"))
            .await
            .expect("join");
        assert_eq!(
            (&got[..], small.len(), small.stats().requests()),
            (&data[..5_000], 5_000, 1)
        );
        // A missing object is NotFound (FILE_NOT_AVAILABLE upstream), not some other error.
        let missing = ObjectSource::open(store, Path::from("nope.root"), "nope".into()).await;
        assert!(matches!(missing, Err(object_store::Error::NotFound { .. })));
    }

    #[test]
    fn merges_close_ranges_only() {
        let m = merge_ranges(
            &[100..200, 0..50, 60..90, 10_000..10_100, 40..70],
            20,
            0,
            1 << 20,
        );
        assert_eq!(m, vec![0..200, 10_000..10_100]);
        let m = merge_ranges(&[0..50, 100..200], 10, 0, 1 << 20);
        assert_eq!(m, vec![0..50, 100..200]);
        // A cap splits long runs.
        let m = merge_ranges(&[0..100, 100..200, 200..300], 0, 0, 150);
        assert_eq!(m, vec![0..100, 100..200, 200..300]);
        assert!(merge_ranges(&[], 10, 0, 10).is_empty());
    }

    #[test]
    fn bridges_holes_while_unwanted_bytes_stay_small() {
        let mb = 1 << 20;
        // Dense: 1 MB, 100 KB hole, 1 MB -> one request.
        let m = merge_ranges(
            &[0..mb, mb + 100_000..2 * mb + 100_000],
            16 << 10,
            8,
            8 * mb,
        );
        assert_eq!(m, vec![0..2 * mb + 100_000]);
        // Sparse: small kept baskets after holes as large as themselves stay separate.
        let m = merge_ranges(
            &[0..4_000, 104_000..108_000, 208_000..212_000],
            16 << 10,
            8,
            8 * mb,
        );
        assert_eq!(m.len(), 3);
        // Holes add up: after 1 MB wanted, 100 KB holes are bridged until they pass 1/8 of it.
        let mut rs = vec![0..mb];
        for i in 1..=3 {
            rs.push(mb + i * 104_000 - 4_000..mb + i * 104_000);
        }
        let m = merge_ranges(&rs, 0, 8, 8 * mb);
        assert_eq!(
            m,
            vec![
                0..mb + 104_000,
                mb + 204_000..mb + 208_000,
                mb + 308_000..mb + 312_000
            ]
        );
        // Overlapping wanted ranges count once: 1,500 wanted bytes carry a hole of 187, not 200.
        assert_eq!(
            merge_ranges(&[0..1000, 500..1500, 1700..1701], 0, 8, mb),
            vec![0..1500, 1700..1701]
        );
        assert_eq!(
            merge_ranges(&[0..1000, 500..1500, 1687..1688], 0, 8, mb),
            vec![0..1688]
        );
    }
}

/// A version of an object that is no longer read, only asked about: whether it is still its key's
/// current version (one HEAD). A queued commit (`ingest::QueuedCommit`) carries the version its
/// ingest read; the committing process asks this as the ingest itself would have
/// ([`ByteSource::is_current`] on a tie between two versions written in the same second). It
/// holds no bytes.
pub struct KeyVersion {
    store: Arc<dyn ObjectStore>,
    path: Path,
    name: String,
    version: SourceVersion,
    rt: tokio::runtime::Handle,
}

impl KeyVersion {
    /// `name` as an ingest names its source (`s3://bucket/key`); `None` for any other name (a
    /// local file has no version to ask about) or outside a Tokio runtime.
    pub fn from_name(name: &str, version: SourceVersion) -> Option<Self> {
        let (bucket, key) = name.strip_prefix("s3://")?.split_once('/')?;
        let store = s3_store(bucket).ok()?;
        let rt = tokio::runtime::Handle::try_current().ok()?;
        Some(KeyVersion {
            store,
            path: Path::from(key),
            name: name.to_string(),
            version,
            rt,
        })
    }
}

impl ByteSource for KeyVersion {
    fn len(&self) -> u64 {
        0
    }

    fn read_at(&self, offset: u64, len: usize) -> Result<Bytes, ReadError> {
        Err(ReadError::Io {
            offset,
            len: len as u64,
            source: std::io::Error::other(format!(
                "{}: a version asked about, not read",
                self.name
            )),
        })
    }

    fn name(&self) -> String {
        self.name.clone()
    }

    fn version(&self) -> Option<SourceVersion> {
        Some(self.version.clone())
    }

    fn is_current(&self) -> Option<Result<bool, ReadError>> {
        let head = self.rt.block_on(self.store.head(&self.path));
        Some(match head {
            Ok(meta) => Ok(meta
                .e_tag
                .is_some_and(|have| same_etag(&have, &self.version.etag))),
            Err(object_store::Error::NotFound { .. }) => Ok(false),
            Err(e) => Err(ReadError::Io {
                offset: 0,
                len: 0,
                source: io_error(e),
            }),
        })
    }
}
