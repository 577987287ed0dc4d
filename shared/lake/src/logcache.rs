//! Delta log entries kept in memory once read or written (an S3 lake's store, [`log_cached`]).
//!
//! A commit entry (`…/_delta_log/<20 digits>.json`) is written once, by a conditional put, and never
//! changes. Yet one process reads the same entries several times: a commit that lost its version
//! reads the commits that landed first (`handover::landed_from`), then the post-commit update of
//! its table reads them again, with the process's own entry; a table followed by the prepare step
//! reads what a commit of the same process just wrote. Measured on LocalStack with 10 writers at
//! once (docs/benchmarks.md, stop 29), GETs were two thirds of a process's requests. Here a whole
//! GET of an entry is answered from memory when the process wrote it (the payload of its create
//! put) or read it before; every other request passes through.
//!
//! Assumes what the committer already does: a table is not deleted and created again at the same
//! place while a process using it runs (its version numbers would start over).

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use futures::StreamExt;
use object_store::path::Path;
use object_store::{
    GetOptions, GetResult, GetResultPayload, ObjectMeta, ObjectStore, PutMode, PutOptions,
    PutPayload, PutResult,
};

/// Bytes of entries kept at most (the oldest go first).
const MAX_BYTES: usize = 64 << 20;
/// Entries larger than this are not kept (a compaction's commit of many thousand removes).
const MAX_ENTRY: usize = 4 << 20;

/// `store` with its Delta log entries kept once read or written.
pub fn log_cached(store: Arc<dyn ObjectStore>) -> Arc<dyn ObjectStore> {
    Arc::new(LogCache {
        inner: store,
        kept: Mutex::new(Kept::default()),
    })
}

/// Whole GETs of log entries answered from memory so far, by every cached store of the process.
pub fn hits() -> u64 {
    HITS.load(std::sync::atomic::Ordering::Relaxed)
}

static HITS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

/// True for `…/_delta_log/<20 digits>.json`. Asked of every GET (Parquet reads too): no
/// allocation.
fn is_entry(p: &Path) -> bool {
    let Some(name) = p.as_ref().strip_suffix(".json") else {
        return false;
    };
    let (dir, digits) = name.rsplit_once('/').unwrap_or(("", name));
    digits.len() == 20
        && digits.bytes().all(|b| b.is_ascii_digit())
        && (dir == "_delta_log" || dir.ends_with("/_delta_log"))
}

/// A GET of the whole object, with no condition.
fn whole(o: &GetOptions) -> bool {
    o.if_match.is_none()
        && o.if_none_match.is_none()
        && o.if_modified_since.is_none()
        && o.if_unmodified_since.is_none()
        && o.range.is_none()
        && o.version.is_none()
        && !o.head
}

#[derive(Default)]
struct Kept {
    entries: HashMap<Path, (Bytes, ObjectMeta)>,
    order: VecDeque<Path>,
    bytes: usize,
}

#[derive(Debug)]
struct LogCache {
    inner: Arc<dyn ObjectStore>,
    kept: Mutex<Kept>,
}

impl std::fmt::Debug for Kept {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} entries, {} bytes", self.entries.len(), self.bytes)
    }
}

impl std::fmt::Display for LogCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "LogCache({})", self.inner)
    }
}

impl LogCache {
    fn find(&self, p: &Path) -> Option<(Bytes, ObjectMeta)> {
        self.kept.lock().ok()?.entries.get(p).cloned()
    }

    fn keep(&self, bytes: Bytes, meta: ObjectMeta) {
        if bytes.len() > MAX_ENTRY {
            return;
        }
        let Ok(mut k) = self.kept.lock() else {
            return;
        };
        let path = meta.location.clone();
        if k.entries.contains_key(&path) {
            return;
        }
        k.bytes += bytes.len();
        k.entries.insert(path.clone(), (bytes, meta));
        k.order.push_back(path);
        while k.bytes > MAX_BYTES {
            let Some(old) = k.order.pop_front() else {
                break;
            };
            if let Some((b, _)) = k.entries.remove(&old) {
                k.bytes -= b.len();
            }
        }
    }
}

fn answer(bytes: Bytes, meta: ObjectMeta, attributes: object_store::Attributes) -> GetResult {
    let len = bytes.len() as u64;
    GetResult {
        payload: GetResultPayload::Stream(futures::stream::once(async move { Ok(bytes) }).boxed()),
        meta,
        range: 0..len,
        attributes,
    }
}

crate::forward_object_store! {
    impl ObjectStore for LogCache {
        forward(inner) [put_multipart_opts, get_ranges, delete_stream, list, list_with_offset, list_with_delimiter, copy_opts, rename_opts];
        async fn put_opts(
            &self,
            location: &Path,
            payload: PutPayload,
            opts: PutOptions,
        ) -> object_store::Result<PutResult> {
            // Only a create can be kept: it fails if anything was there.
            let copy =
                (is_entry(location) && matches!(opts.mode, PutMode::Create)).then(|| payload.clone());
            let put = self.inner.put_opts(location, payload, opts).await?;
            if let Some(payload) = copy {
                let bytes = Bytes::from(payload);
                let meta = ObjectMeta {
                    location: location.clone(),
                    last_modified: chrono::Utc::now(),
                    size: bytes.len() as u64,
                    e_tag: put.e_tag.clone(),
                    version: put.version.clone(),
                };
                self.keep(bytes, meta);
            }
            Ok(put)
        }

        async fn get_opts(
            &self,
            location: &Path,
            options: GetOptions,
        ) -> object_store::Result<GetResult> {
            if !(whole(&options) && is_entry(location)) {
                return self.inner.get_opts(location, options).await;
            }
            if let Some((bytes, meta)) = self.find(location) {
                HITS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                return Ok(answer(bytes, meta, Default::default()));
            }
            let got = self.inner.get_opts(location, options).await?;
            let (meta, attributes) = (got.meta.clone(), got.attributes.clone());
            let bytes = got.bytes().await?;
            self.keep(bytes.clone(), meta.clone());
            Ok(answer(bytes, meta, attributes))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use object_store::memory::InMemory;
    use object_store::ObjectStoreExt;

    use crate::store::{hooked, Hook, Request};

    /// Counts the GETs that reach the store underneath.
    #[derive(Debug, Default)]
    struct Gets(std::sync::atomic::AtomicUsize);

    impl Hook for Gets {
        fn before<'a>(
            &'a self,
            req: Request<'a>,
        ) -> futures::future::BoxFuture<'a, object_store::Result<()>> {
            if matches!(req, Request::Get(_)) {
                self.0.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            }
            Box::pin(futures::future::ready(Ok(())))
        }
    }

    fn gets(g: &Gets) -> usize {
        g.0.load(std::sync::atomic::Ordering::Relaxed)
    }

    #[test]
    fn only_commit_entries_are_kept() {
        assert!(is_entry(&Path::from(
            "lake/default/th1/_delta_log/00000000000000000007.json"
        )));
        assert!(is_entry(&Path::from(
            "_delta_log/00000000000000000000.json"
        )));
        assert!(!is_entry(&Path::from("_delta_log/_last_checkpoint")));
        assert!(!is_entry(&Path::from(
            "_delta_log/00000000000000000010.checkpoint.parquet"
        )));
        assert!(!is_entry(&Path::from(
            "_delta_log/0000000000000000007.json"
        )));
        assert!(!is_entry(&Path::from("th1/00000000000000000007.json")));
    }

    #[tokio::test]
    async fn an_entry_written_or_read_once_is_answered_from_memory() {
        let counted = Arc::new(Gets::default());
        let under: Arc<dyn ObjectStore> = Arc::new(InMemory::new());
        let store = log_cached(hooked(under.clone(), counted.clone()));
        let mine = Path::from("t/_delta_log/00000000000000000001.json");
        let theirs = Path::from("t/_delta_log/00000000000000000002.json");
        let data = Path::from("t/part-1.parquet");

        // Written by a create: read back without a GET.
        let create = PutOptions {
            mode: PutMode::Create,
            ..Default::default()
        };
        store
            .put_opts(
                &mine,
                PutPayload::from_static(b"{\"add\":1}"),
                create.clone(),
            )
            .await
            .expect("put");
        let got = store
            .get(&mine)
            .await
            .expect("get")
            .bytes()
            .await
            .expect("bytes");
        assert_eq!(got.as_ref(), b"{\"add\":1}");
        assert_eq!(gets(&counted), 0);

        // Written by another process: read once, then from memory.
        under
            .put(&theirs, PutPayload::from_static(b"{\"remove\":2}"))
            .await
            .expect("put");
        for _ in 0..3 {
            let got = store
                .get(&theirs)
                .await
                .expect("get")
                .bytes()
                .await
                .expect("bytes");
            assert_eq!(got.as_ref(), b"{\"remove\":2}");
        }
        assert_eq!(gets(&counted), 1);

        // A ranged or conditional GET, a HEAD, or any other object: passed on every time.
        store.get_range(&theirs, 0..2).await.expect("range");
        store.head(&theirs).await.expect("head");
        store
            .put(&data, PutPayload::from_static(b"x"))
            .await
            .expect("put");
        store.get(&data).await.expect("get");
        store.get(&data).await.expect("get");
        assert_eq!(gets(&counted), 5);

        // A create that fails (the version was taken) keeps nothing: the winner's entry is read.
        under
            .put(
                &Path::from("t/_delta_log/00000000000000000003.json"),
                PutPayload::from_static(b"winner"),
            )
            .await
            .expect("put");
        let lost = Path::from("t/_delta_log/00000000000000000003.json");
        assert!(store
            .put_opts(&lost, PutPayload::from_static(b"loser"), create)
            .await
            .is_err());
        let got = store
            .get(&lost)
            .await
            .expect("get")
            .bytes()
            .await
            .expect("bytes");
        assert_eq!(got.as_ref(), b"winner");

        // A missing entry is not kept as missing.
        let next = Path::from("t/_delta_log/00000000000000000004.json");
        assert!(store.get(&next).await.is_err());
        under
            .put(&next, PutPayload::from_static(b"later"))
            .await
            .expect("put");
        let got = store
            .get(&next)
            .await
            .expect("get")
            .bytes()
            .await
            .expect("bytes");
        assert_eq!(got.as_ref(), b"later");
    }

    #[tokio::test]
    async fn the_oldest_entries_go_first_past_the_bound() {
        let counted = Arc::new(Gets::default());
        let store = log_cached(hooked(Arc::new(InMemory::new()), counted.clone()));
        let big = vec![b'x'; MAX_ENTRY];
        let n = MAX_BYTES / MAX_ENTRY + 1;
        let create = PutOptions {
            mode: PutMode::Create,
            ..Default::default()
        };
        for v in 0..n {
            let p = Path::from(format!("t/_delta_log/{v:020}.json"));
            store
                .put_opts(&p, PutPayload::from(big.clone()), create.clone())
                .await
                .expect("put");
        }
        // The last one is kept, the first one went.
        store
            .get(&Path::from(format!("t/_delta_log/{:020}.json", n - 1)))
            .await
            .expect("get");
        assert_eq!(gets(&counted), 0);
        store
            .get(&Path::from(format!("t/_delta_log/{:020}.json", 0)))
            .await
            .expect("get");
        assert_eq!(gets(&counted), 1);
    }
}
