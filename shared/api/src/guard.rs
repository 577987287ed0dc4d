//! The lake's object store as the query engine sees it: unreadable objects are quarantined.
//!
//! One object that cannot be read (a truncated or foreign Parquet file, an object the function may
//! not read) would otherwise fail every query whose scan is not pruned away from it. When a query
//! fails, the engine probes the objects of the tables it read (`Engine::query_as`): each object whose
//! Parquet footer cannot be read is put here, with a logged warning, and left out of every listing
//! from then on, until a listing shows it changed (a re-ingest rewrites it: new size, ETag or
//! modification time). Store-wide failures (every object fails, connection errors after the
//! client's retries) are outages instead: nothing is quarantined and the request gets a 503.

use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, Mutex};

use futures::stream::BoxStream;
use futures::StreamExt;
use object_store::path::Path;
use object_store::{ListResult, ObjectMeta, ObjectStore};

/// Quarantined objects: the listing entry each had when it was found unreadable.
type Quarantine = Arc<Mutex<HashMap<Path, ObjectMeta>>>;

/// The guarding store (see the module docs).
pub struct GuardedStore {
    inner: Arc<dyn ObjectStore>,
    quarantine: Quarantine,
}

impl fmt::Debug for GuardedStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "GuardedStore({})", self.inner)
    }
}

impl fmt::Display for GuardedStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "GuardedStore({})", self.inner)
    }
}

impl GuardedStore {
    /// Wraps `inner`.
    pub fn new(inner: Arc<dyn ObjectStore>) -> Self {
        GuardedStore {
            inner,
            quarantine: Arc::default(),
        }
    }

    /// The store underneath (reads that must see quarantined objects too, e.g. probes).
    pub fn inner(&self) -> &Arc<dyn ObjectStore> {
        &self.inner
    }

    /// Leaves `meta`'s object out of listings until a listing shows another version of it.
    pub fn quarantine(&self, meta: ObjectMeta) {
        if let Ok(mut q) = self.quarantine.lock() {
            q.insert(meta.location.clone(), meta);
        }
    }

    /// True if this version of the object is quarantined.
    pub fn holds(&self, meta: &ObjectMeta) -> bool {
        self.quarantine
            .lock()
            .map(|q| {
                q.get(&meta.location)
                    .is_some_and(|m| m.size == meta.size && m.e_tag == meta.e_tag)
            })
            .unwrap_or(false)
    }

    /// True if the object at `location` is quarantined. For objects named by the Delta log: they
    /// are never rewritten in place (every ingest attempt names its own), so the path alone says
    /// it; the size the log records is what was written, not what the store now holds.
    pub fn hides_committed(&self, location: &Path) -> bool {
        self.quarantine
            .lock()
            .map(|q| q.contains_key(location))
            .unwrap_or(false)
    }

    /// Paths quarantined now.
    pub fn quarantined(&self) -> Vec<Path> {
        self.quarantine
            .lock()
            .map(|q| q.keys().cloned().collect())
            .unwrap_or_default()
    }

    /// True if `m` is the quarantined version of its object; a changed object leaves the quarantine.
    fn hides(q: &Quarantine, m: &ObjectMeta) -> bool {
        let Ok(mut q) = q.lock() else { return false };
        match q.get(&m.location) {
            None => false,
            Some(old)
                if old.size == m.size
                    && old.e_tag == m.e_tag
                    && old.last_modified == m.last_modified =>
            {
                true
            }
            Some(_) => {
                tracing::info!(object = %m.location, "lake object changed since it was quarantined; reading it again");
                q.remove(&m.location);
                false
            }
        }
    }
}

dials_lake::forward_object_store! {
    impl ObjectStore for GuardedStore {
        // `list_with_offset` stays the trait's default: it goes through `list`, which hides
        // quarantined objects.
        forward(inner) [put_opts, put_multipart_opts, get_opts, get_ranges, delete_stream, copy_opts];
        fn list(&self, prefix: Option<&Path>) -> BoxStream<'static, object_store::Result<ObjectMeta>> {
            let q = self.quarantine.clone();
            self.inner
                .list(prefix)
                .filter(move |r| {
                    let keep = !matches!(r, Ok(m) if GuardedStore::hides(&q, m));
                    futures::future::ready(keep)
                })
                .boxed()
        }

        async fn list_with_delimiter(&self, prefix: Option<&Path>) -> object_store::Result<ListResult> {
            let mut res = self.inner.list_with_delimiter(prefix).await?;
            res.objects
                .retain(|m| !GuardedStore::hides(&self.quarantine, m));
            Ok(res)
        }
    }
}

/// Why a probed object could not be read, and whether that looks like the store failing as a
/// whole (connection, timeout, throttling after retries) rather than this object.
#[derive(Debug)]
pub struct Unreadable {
    /// The object as listed.
    pub meta: ObjectMeta,
    /// What went wrong.
    pub error: String,
    /// A store-wide failure, not this object's.
    pub outage: bool,
}

/// Reads the Parquet footer of every object under `prefix` through `store`; returns the objects it
/// could read and those it could not.
pub async fn probe(
    store: &Arc<dyn ObjectStore>,
    prefix: &Path,
) -> object_store::Result<(usize, Vec<Unreadable>)> {
    use futures::TryStreamExt;
    let metas: Vec<ObjectMeta> = store.list(Some(prefix)).try_collect().await?;
    let mut ok = 0;
    let mut bad = Vec::new();
    for meta in metas
        .into_iter()
        .filter(|m| m.location.as_ref().ends_with(".parquet"))
    {
        // Deprecated in favour of a hand-written AsyncFileReader; for reading one footer on the
        // failure path it is exactly what is needed.
        #[allow(deprecated)]
        let reader = parquet::arrow::async_reader::ParquetObjectReader::new(
            store.clone(),
            meta.location.clone(),
        )
        .with_file_size(meta.size);
        match parquet::arrow::ParquetRecordBatchStreamBuilder::new(reader).await {
            Ok(_) => ok += 1,
            Err(e) => {
                let outage = crate::error::store_error(&e)
                    .is_some_and(|s| matches!(s, object_store::Error::Generic { .. }));
                bad.push(Unreadable {
                    meta,
                    error: e.to_string(),
                    outage,
                });
            }
        }
    }
    Ok((ok, bad))
}
