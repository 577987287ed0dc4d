//! A warm-function read cache in front of the lake's object store.
//!
//! Lake objects are written once per name and replaced only by a re-ingest of the same file, so
//! their bytes are stable between listings. The query function keeps the byte ranges it has read
//! in aligned blocks (LRU by insertion, bounded in bytes), so repeated and overlapping queries on
//! a warm function stop paying a round trip per Parquet page. Validity follows the listings the
//! engine already refreshes every listing TTL: an object whose size, modification time or ETag
//! changes in a listing loses its blocks; an object never listed is read straight through.

use std::collections::{HashMap, VecDeque};
use std::fmt;
use std::ops::Range;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use futures::stream::BoxStream;
use futures::StreamExt;
use object_store::path::Path;
use object_store::{
    GetOptions, GetRange, GetResult, GetResultPayload, ListResult, ObjectMeta, ObjectStore,
};

/// Block size of the cache.
pub const BLOCK: u64 = 128 << 10;
/// Default budget (`DIALS_QUERY_CACHE_MB` overrides; 0 disables).
pub const DEFAULT_BUDGET_MB: u64 = 256;

#[derive(Default)]
struct State {
    /// What the last listing said of each object.
    meta: HashMap<Path, ObjectMeta>,
    blocks: HashMap<(Path, u64), Bytes>,
    order: VecDeque<(Path, u64)>,
    bytes: u64,
    hits: u64,
    misses: u64,
}

/// The caching store (see the module docs).
pub struct CachedStore {
    inner: Arc<dyn ObjectStore>,
    budget: u64,
    state: Arc<Mutex<State>>,
}

impl fmt::Debug for CachedStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "CachedStore({}, {} MB)", self.inner, self.budget >> 20)
    }
}

impl fmt::Display for CachedStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "CachedStore({})", self.inner)
    }
}

impl CachedStore {
    /// Wraps `inner` with a cache of `budget` bytes.
    pub fn new(inner: Arc<dyn ObjectStore>, budget: u64) -> Self {
        CachedStore {
            inner,
            budget,
            state: Arc::default(),
        }
    }

    /// Budget from `DIALS_QUERY_CACHE_MB` (default [`DEFAULT_BUDGET_MB`]).
    pub fn budget_from_env() -> u64 {
        std::env::var("DIALS_QUERY_CACHE_MB")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(DEFAULT_BUDGET_MB)
            << 20
    }

    /// (hits, misses) in blocks so far.
    pub fn stats(&self) -> (u64, u64) {
        self.state
            .lock()
            .map(|s| (s.hits, s.misses))
            .unwrap_or((0, 0))
    }

    fn observe(state: &Mutex<State>, m: &ObjectMeta) {
        let Ok(mut s) = state.lock() else { return };
        let changed = s.meta.get(&m.location).is_some_and(|old| {
            old.size != m.size || old.last_modified != m.last_modified || old.e_tag != m.e_tag
        });
        if changed {
            s.blocks.retain(|(p, _), _| p != &m.location);
            s.order.retain(|(p, _)| p != &m.location);
            s.bytes = s.blocks.values().map(|b| b.len() as u64).sum();
        }
        s.meta.insert(m.location.clone(), m.clone());
    }

    /// What the last listing said of `location` (None: never listed, not cached).
    fn listed(&self, location: &Path) -> Option<ObjectMeta> {
        self.state.lock().ok()?.meta.get(location).cloned()
    }

    /// Reads `ranges` of an object of known `size` through the block cache.
    async fn cached_ranges(
        &self,
        location: &Path,
        size: u64,
        ranges: &[Range<u64>],
    ) -> object_store::Result<Vec<Bytes>> {
        let mut wanted: Vec<u64> = ranges
            .iter()
            .filter(|r| r.end > r.start)
            .flat_map(|r| r.start / BLOCK..r.end.div_ceil(BLOCK))
            .collect();
        wanted.sort_unstable();
        wanted.dedup();
        let mut have: HashMap<u64, Bytes> = HashMap::new();
        let mut missing = Vec::new();
        if let Ok(mut s) = self.state.lock() {
            for b in &wanted {
                match s.blocks.get(&(location.clone(), *b)) {
                    Some(d) => {
                        have.insert(*b, d.clone());
                    }
                    None => missing.push(*b),
                }
            }
            s.hits += have.len() as u64;
            s.misses += missing.len() as u64;
        } else {
            missing = wanted.clone();
        }
        if !missing.is_empty() {
            // Consecutive missing blocks become one range.
            let mut runs: Vec<Range<u64>> = Vec::new();
            for b in &missing {
                match runs.last_mut() {
                    Some(r) if r.end == *b => r.end = b + 1,
                    _ => runs.push(*b..b + 1),
                }
            }
            let byte_ranges: Vec<Range<u64>> = runs
                .iter()
                .map(|r| r.start * BLOCK..(r.end * BLOCK).min(size))
                .collect();
            let got = self.inner.get_ranges(location, &byte_ranges).await?;
            let mut fresh = Vec::new();
            for (run, data) in runs.iter().zip(got) {
                for b in run.clone() {
                    let lo = ((b - run.start) * BLOCK) as usize;
                    let hi = (lo + BLOCK as usize).min(data.len());
                    if lo >= hi {
                        continue;
                    }
                    let block = data.slice(lo..hi);
                    have.insert(b, block.clone());
                    fresh.push((b, block));
                }
            }
            self.insert(location, fresh);
        }
        ranges
            .iter()
            .map(|r| {
                if r.end <= r.start {
                    return Ok(Bytes::new());
                }
                let (first, last) = (r.start / BLOCK, (r.end - 1) / BLOCK);
                if first == last {
                    let b = have.get(&first).ok_or_else(|| short(location, r))?;
                    let lo = (r.start - first * BLOCK) as usize;
                    let hi = (r.end - first * BLOCK) as usize;
                    return b
                        .get(lo..hi)
                        .map(|_| b.slice(lo..hi))
                        .ok_or_else(|| short(location, r));
                }
                let mut out = Vec::with_capacity((r.end - r.start) as usize);
                for blk in first..=last {
                    let b = have.get(&blk).ok_or_else(|| short(location, r))?;
                    let base = blk * BLOCK;
                    let lo = r.start.max(base) - base;
                    let hi = r.end.min(base + b.len() as u64) - base;
                    out.extend_from_slice(
                        b.get(lo as usize..hi as usize)
                            .ok_or_else(|| short(location, r))?,
                    );
                }
                if out.len() as u64 != r.end - r.start {
                    return Err(short(location, r));
                }
                Ok(Bytes::from(out))
            })
            .collect()
    }

    fn insert(&self, location: &Path, blocks: Vec<(u64, Bytes)>) {
        let Ok(mut s) = self.state.lock() else { return };
        for (b, data) in blocks {
            let key = (location.clone(), b);
            s.bytes += data.len() as u64;
            if let Some(old) = s.blocks.insert(key.clone(), data) {
                s.bytes -= old.len() as u64;
            } else {
                s.order.push_back(key);
            }
        }
        while s.bytes > self.budget {
            let Some(old) = s.order.pop_front() else {
                break;
            };
            if let Some(d) = s.blocks.remove(&old) {
                s.bytes -= d.len() as u64;
            }
        }
    }
}

fn short(location: &Path, r: &Range<u64>) -> object_store::Error {
    object_store::Error::Generic {
        store: "cache",
        source: format!(
            "{location}: range {}..{} beyond the object as listed",
            r.start, r.end
        )
        .into(),
    }
}

dials_lake::forward_object_store! {
    impl ObjectStore for CachedStore {
        // `list_with_offset` stays the trait's default (through `list`, so that what it lists is
        // observed too); DataFusion reads the files the Delta log names and lists nothing here.
        forward(inner) [put_opts, put_multipart_opts, delete_stream, copy_opts];
        async fn get_opts(
            &self,
            location: &Path,
            options: GetOptions,
        ) -> object_store::Result<GetResult> {
            // Only plain bounded range reads of listed objects are cached; everything else passes through.
            let plain = options.if_match.is_none()
                && options.if_none_match.is_none()
                && options.if_modified_since.is_none()
                && options.if_unmodified_since.is_none()
                && options.version.is_none()
                && !options.head;
            let (Some(GetRange::Bounded(range)), true, Some(meta)) =
                (options.range.clone(), plain, self.listed(location))
            else {
                return self.inner.get_opts(location, options).await;
            };
            if self.budget == 0 || range.end > meta.size || range.start >= range.end {
                return self.inner.get_opts(location, options).await;
            }
            let data = self
                .cached_ranges(location, meta.size, std::slice::from_ref(&range))
                .await?
                .pop()
                .unwrap_or_default();
            let stream = futures::stream::once(async move { Ok(data) }).boxed();
            Ok(GetResult {
                payload: GetResultPayload::Stream(stream),
                meta,
                range,
                attributes: Default::default(),
            })
        }

        async fn get_ranges(
            &self,
            location: &Path,
            ranges: &[Range<u64>],
        ) -> object_store::Result<Vec<Bytes>> {
            match self.listed(location).map(|m| m.size) {
                Some(size) if self.budget > 0 && ranges.iter().all(|r| r.end <= size) => {
                    self.cached_ranges(location, size, ranges).await
                }
                _ => self.inner.get_ranges(location, ranges).await,
            }
        }

        fn list(&self, prefix: Option<&Path>) -> BoxStream<'static, object_store::Result<ObjectMeta>> {
            let state = self.state.clone();
            self.inner
                .list(prefix)
                .map(move |r| {
                    if let Ok(m) = &r {
                        CachedStore::observe(&state, m);
                    }
                    r
                })
                .boxed()
        }

        async fn list_with_delimiter(&self, prefix: Option<&Path>) -> object_store::Result<ListResult> {
            let res = self.inner.list_with_delimiter(prefix).await?;
            for m in &res.objects {
                CachedStore::observe(&self.state, m);
            }
            Ok(res)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures::TryStreamExt;
    use object_store::memory::InMemory;
    use object_store::ObjectStoreExt;

    fn data(seed: u8, n: usize) -> Bytes {
        Bytes::from(
            (0..n)
                .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed))
                .collect::<Vec<u8>>(),
        )
    }

    #[tokio::test]
    async fn serves_ranges_from_blocks_and_drops_them_when_a_listing_shows_a_new_version() {
        let inner: Arc<dyn ObjectStore> = Arc::new(InMemory::new());
        let p = Path::from("ws/th1/run_number=1/part-1.parquet");
        let v1 = data(1, 3 * BLOCK as usize + 1000);
        inner.put(&p, v1.clone().into()).await.unwrap();
        let store = CachedStore::new(inner.clone(), 64 << 20);
        // Not listed yet: read straight through, nothing cached.
        assert_eq!(store.get_range(&p, 10..20).await.unwrap(), v1.slice(10..20));
        assert_eq!(store.stats(), (0, 0));
        let _: Vec<_> = store
            .list(Some(&Path::from("ws")))
            .try_collect()
            .await
            .unwrap();
        let ranges = [
            5..BLOCK + 7,
            2 * BLOCK - 3..3 * BLOCK + 1000,
            0..0,
            100..101,
        ];
        let got = store.get_ranges(&p, &ranges).await.unwrap();
        for (r, g) in ranges.iter().zip(&got) {
            assert_eq!(g, &v1.slice(r.start as usize..r.end as usize));
        }
        let (_, misses) = store.stats();
        assert_eq!(misses, 4);
        // Same and overlapping ranges again: all hits, same bytes.
        assert_eq!(
            store.get_range(&p, BLOCK..BLOCK + 50).await.unwrap(),
            v1.slice(BLOCK as usize..BLOCK as usize + 50)
        );
        assert_eq!(store.stats().1, 4);
        // A re-ingest rewrites the object; once a listing shows it, the old blocks are gone.
        let v2 = data(2, 3 * BLOCK as usize + 1000);
        inner.put(&p, v2.clone().into()).await.unwrap();
        let _: Vec<_> = store.list(None).try_collect().await.unwrap();
        assert_eq!(store.get_range(&p, 10..20).await.unwrap(), v2.slice(10..20));
        // A range past the listed size passes through: whatever the store answers.
        let direct = inner
            .get_range(&p, 0..10 * BLOCK)
            .await
            .map_err(|e| e.to_string());
        assert_eq!(
            store
                .get_range(&p, 0..10 * BLOCK)
                .await
                .map_err(|e| e.to_string()),
            direct
        );
    }

    #[tokio::test]
    async fn stays_within_its_budget() {
        let inner: Arc<dyn ObjectStore> = Arc::new(InMemory::new());
        let p = Path::from("a.parquet");
        let v = data(3, 10 * BLOCK as usize);
        inner.put(&p, v.clone().into()).await.unwrap();
        let store = CachedStore::new(inner, 2 * BLOCK);
        let _: Vec<_> = store.list(None).try_collect().await.unwrap();
        for i in 0..10 {
            let r = i * BLOCK + 1..i * BLOCK + 9;
            assert_eq!(
                store.get_range(&p, r.clone()).await.unwrap(),
                v.slice(r.start as usize..r.end as usize)
            );
        }
        let s = store.state.lock().unwrap();
        assert!(
            s.bytes <= 2 * BLOCK && s.blocks.len() <= 2,
            "{} bytes cached",
            s.bytes
        );
    }
}
