//! The files of every lake table come from its Delta log, never from a directory listing.
//!
//! DataFusion's `ListingTable` asks the session's list-files cache for a table's objects before it
//! lists the store. [`DeltaFiles`] is that cache: for every registered table it answers with the
//! objects of the table's latest loaded Delta snapshot (an empty list before the first commit), so
//! queries read committed objects only, whatever else lies in the folder (a running ingest's
//! objects, a failed attempt's, removed ones not yet vacuumed). [`DeltaFiles::follow_tables`]
//! moves the snapshots a query reads forward (one log listing per table, a read per new commit):
//! the `file_index` tables at most once per interval, any other table only when a query reads it
//! and a `file_index` moved since it was last read.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use datafusion::common::TableReference;
use datafusion::execution::cache::cache_manager::CachedFileList;
use datafusion::execution::cache::{Cache, CacheEntryInfo, TableScopedPath};
use deltalake_core::logstore::{LogStore, LogStoreRef};
use deltalake_core::DeltaTable;
use dials_lake::delta;

use crate::guard::GuardedStore;
use object_store::path::Path;
use object_store::ObjectMeta;

/// A table a query reads is re-read at least this often, whether or not a `file_index` moved.
const FULL_REFRESH: Duration = Duration::from_secs(60);

/// Integer columns whose per-object bounds (from the Delta `Add` statistics, and the partition
/// value for `run_number`) a scan prunes objects by (`pruned.rs`).
pub const PRUNE_COLUMNS: [&str; 5] = ["run_number", "ls_number", "me_id", "file_id", "dataset_id"];

/// Per object of a table: (min, max) of each of [`PRUNE_COLUMNS`] if known.
pub type Bounds = [Option<(i64, i64)>; PRUNE_COLUMNS.len()];

/// A table's objects and their bounds (same order).
pub type ObjectsWithBounds = (Arc<Vec<ObjectMeta>>, Arc<Vec<Bounds>>);

/// String columns whose per-object bounds (Add statistics) a scan of a `file_index` prunes by:
/// `status`, so that the API's "files not FINISHED" query opens only objects that hold such
/// records instead of every file's record.
pub const TEXT_PRUNE_COLUMNS: [&str; 1] = ["status"];

/// Per object: (min, max) of each of [`TEXT_PRUNE_COLUMNS`] if known (`file_index` tables only).
pub type TextBounds = [Option<(String, String)>; TEXT_PRUNE_COLUMNS.len()];

/// Per run: for `th1`/`th2`, the digest of the names of the run's objects
/// (`dials_lake::me_major::covers`); for their ME-major copies, what the run's copy object covers
/// (empty when the run has more than one copy object: never current).
pub type RunDigests = Arc<HashMap<i64, String>>;

/// One table's current objects and their bounds (same order), and its per-run digests.
#[derive(Clone)]
struct Listed {
    files: CachedFileList,
    bounds: Arc<Vec<Bounds>>,
    /// Empty for tables other than a `file_index`.
    texts: Arc<Vec<TextBounds>>,
    runs: RunDigests,
}

tokio::task_local! {
    /// While a scan runs inside [`DeltaFiles::scoped`]: the one table whose objects it sees
    /// narrowed to those its filters can match.
    static NARROWED: (Path, CachedFileList);
}

/// One table: where DataFusion sees it and its log.
struct Source {
    /// True for a workspace's `file_index` (followed first; its commits come last in an ingest).
    index: bool,
    /// The table folder's path in the store DataFusion reads through (the list-files cache key).
    key: Path,
    log: LogStoreRef,
    table: tokio::sync::Mutex<Option<DeltaTable>>,
    /// The index epoch ([`DeltaFiles::epoch`]) and time of this table's last complete refresh.
    seen: std::sync::Mutex<(u64, Option<Instant>)>,
}

impl Source {
    /// True when a query reading this table must refresh it first: a `file_index` moved since
    /// (`epoch`), or it was last read from the log [`FULL_REFRESH`] ago or more.
    fn due(&self, epoch: u64) -> bool {
        match self.seen.lock() {
            Ok(s) => s.0 < epoch || s.1.is_none_or(|at| at.elapsed() >= FULL_REFRESH),
            Err(_) => true,
        }
    }

    fn refreshed(&self, epoch: u64, at: Instant) {
        if let Ok(mut s) = self.seen.lock() {
            *s = (s.0.max(epoch), Some(at));
        }
    }
}

/// The list-files cache of the query engine, fed from the Delta logs.
pub struct DeltaFiles {
    sources: Vec<Source>,
    lists: RwLock<HashMap<Path, Listed>>,
    /// When the `file_index` snapshots were last brought up to date.
    followed: tokio::sync::Mutex<Option<Instant>>,
    /// Counts the `file_index` moves: a table last refreshed at a lower epoch may miss rows a
    /// FINISHED record promises.
    epoch: std::sync::atomic::AtomicU64,
    interval: Duration,
    /// Objects found unreadable are left out (`guard.rs`).
    guard: Arc<GuardedStore>,
    /// Counts the snapshot moves (and quarantines): what is derived from the tables is current
    /// while this has not changed.
    changes: std::sync::atomic::AtomicU64,
}

impl std::fmt::Debug for DeltaFiles {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "DeltaFiles({} tables)", self.sources.len())
    }
}

impl DeltaFiles {
    /// A cache for `tables` (key path, log store), followed at most every `interval`.
    /// `tables`: (key path, log store, is it a `file_index`).
    pub fn new(
        tables: Vec<(Path, LogStoreRef, bool)>,
        interval: Duration,
        guard: Arc<GuardedStore>,
    ) -> Self {
        let mut lists = HashMap::new();
        let sources = tables
            .into_iter()
            .map(|(key, log, index)| {
                lists.insert(
                    key.clone(),
                    Listed {
                        files: CachedFileList::new(Vec::new()),
                        bounds: Arc::new(Vec::new()),
                        texts: Arc::new(Vec::new()),
                        runs: Arc::default(),
                    },
                );
                Source {
                    index,
                    key,
                    log,
                    table: tokio::sync::Mutex::new(None),
                    seen: std::sync::Mutex::new((0, None)),
                }
            })
            .collect();
        DeltaFiles {
            sources,
            lists: RwLock::new(lists),
            followed: tokio::sync::Mutex::new(None),
            epoch: std::sync::atomic::AtomicU64::new(1),
            interval,
            guard,
            changes: std::sync::atomic::AtomicU64::new(0),
        }
    }

    /// Brings every snapshot up to date ([`DeltaFiles::follow_tables`] for all tables).
    pub async fn follow(&self) -> Result<(), delta::DeltaError> {
        self.follow_for(None).await
    }

    /// Brings the snapshots of the tables at `keys` up to date before a query reads them. The
    /// `file_index` tables first, unless that happened less than the interval ago (concurrent
    /// callers wait for one refresh; one log listing each). An ingest commits its file's record
    /// last, so another table only needs reading when a `file_index` moved since it was last read
    /// (or every [`FULL_REFRESH`], for commits that do not end with a record: a compaction, a
    /// failed file's row removals, whose rows are not served anyway); and only when a query reads
    /// it, so a new file costs a query the logs of the tables it reads, not all of them. A log that
    /// cannot be read fails the call, and the next call tries it again.
    pub async fn follow_tables(&self, keys: &[Path]) -> Result<(), delta::DeltaError> {
        self.follow_for(Some(keys)).await
    }

    async fn follow_for(&self, keys: Option<&[Path]>) -> Result<(), delta::DeltaError> {
        {
            let mut followed = self.followed.lock().await;
            if followed.is_none_or(|at| at.elapsed() >= self.interval) {
                let indexes = futures::future::join_all(
                    self.sources
                        .iter()
                        .filter(|s| s.index)
                        .map(|s| self.refresh(s)),
                )
                .await;
                let mut moved = false;
                let mut failed = None;
                for r in indexes {
                    match r {
                        Ok(m) => moved |= m,
                        Err(e) => failed = failed.or(Some(e)),
                    }
                }
                if moved {
                    self.epoch.fetch_add(1, std::sync::atomic::Ordering::AcqRel);
                }
                // Only a complete refresh counts: while a log cannot be read, every request tries
                // again (and answers 503) instead of serving an incomplete lake for an interval.
                if let Some(e) = failed {
                    return Err(e);
                }
                *followed = Some(Instant::now());
            }
        }
        // Read after the `file_index` refresh: what is refreshed now is at least as new as it.
        let epoch = self.epoch.load(std::sync::atomic::Ordering::Acquire);
        let due = self
            .sources
            .iter()
            .filter(|s| !s.index && keys.is_none_or(|k| k.contains(&s.key)) && s.due(epoch));
        let results = futures::future::join_all(due.map(|s| async move {
            let at = Instant::now();
            let r = self.refresh(s).await;
            if r.is_ok() {
                s.refreshed(epoch, at);
            }
            r
        }))
        .await;
        results.into_iter().collect::<Result<Vec<bool>, _>>()?;
        Ok(())
    }

    /// Brings every table's snapshot up to date now, whatever the interval; true if any moved.
    pub async fn invalidate_and_follow(&self) -> Result<bool, delta::DeltaError> {
        let before = self.changes();
        {
            let mut followed = self.followed.lock().await;
            *followed = None;
            self.epoch.fetch_add(1, std::sync::atomic::Ordering::AcqRel);
        }
        self.follow().await?;
        Ok(self.changes() != before)
    }

    /// Refreshes one table; true if its version moved (or it appeared).
    async fn refresh(&self, s: &Source) -> Result<bool, delta::DeltaError> {
        let mut slot = s.table.lock().await;
        let before = slot.as_ref().and_then(DeltaTable::version);
        match slot.as_mut() {
            Some(t) => {
                t.update_incremental(None)
                    .await
                    .map_err(|e| delta::DeltaError::Delta {
                        table: t.table_url().to_string(),
                        source: e,
                    })?;
            }
            None => {
                // A table not created yet (no file of the workspace has that kind): one listing of
                // its log folder says so. The Delta kernel would log an ERROR for it at every refresh.
                let exists = s.log.is_delta_table_location().await.map_err(|e| {
                    delta::DeltaError::Delta {
                        table: s.log.root_url().to_string(),
                        source: e,
                    }
                })?;
                if !exists {
                    return Ok(false);
                }
                *slot = delta::open_with(s.log.clone()).await?
            }
        }
        let Some(t) = slot.as_ref() else {
            return Ok(false);
        };
        if before.is_some() && before == t.version() {
            return Ok(false);
        }
        let active = delta::active_files(t)?;
        let runs = run_digests(s.key.filename().unwrap_or_default(), &active);
        let mut bounds = Vec::with_capacity(active.len());
        let mut texts = Vec::new();
        let mut files = Vec::with_capacity(active.len());
        for f in active {
            // The statistics are parsed once for both kinds of bounds.
            let (ints, strs) = if s.index {
                f.all_bounds(&PRUNE_COLUMNS, &TEXT_PRUNE_COLUMNS)
            } else {
                (f.bounds(&PRUNE_COLUMNS), Vec::new())
            };
            let mut b: Bounds = Default::default();
            for (slot, v) in b.iter_mut().zip(ints) {
                *slot = v;
            }
            bounds.push(b);
            if s.index {
                let mut t: TextBounds = Default::default();
                for (slot, v) in t.iter_mut().zip(strs) {
                    *slot = v;
                }
                texts.push(t);
            }
            let mut location = s.key.clone();
            for part in f.path.split('/') {
                location = location.join(part);
            }
            files.push(ObjectMeta {
                location,
                last_modified: DateTime::<Utc>::from_timestamp_millis(f.modification_time)
                    .unwrap_or_default(),
                size: u64::try_from(f.size).unwrap_or(0),
                e_tag: None,
                version: None,
            });
        }
        if let Ok(mut lists) = self.lists.write() {
            lists.insert(
                s.key.clone(),
                Listed {
                    files: CachedFileList::new(files),
                    bounds: Arc::new(bounds),
                    texts: Arc::new(texts),
                    runs,
                },
            );
        }
        self.changed();
        Ok(true)
    }

    /// How many times a snapshot moved (or objects were quarantined) so far.
    pub fn changes(&self) -> u64 {
        self.changes.load(std::sync::atomic::Ordering::Acquire)
    }

    /// Marks everything derived from the tables as out of date.
    pub fn changed(&self) {
        self.changes
            .fetch_add(1, std::sync::atomic::Ordering::AcqRel);
    }

    /// Objects of the table at `key` in the current snapshot.
    pub fn files(&self, key: &Path) -> Option<Arc<Vec<ObjectMeta>>> {
        self.lists
            .read()
            .ok()
            .and_then(|l| l.get(key).map(|c| c.files.files.clone()))
    }

    /// The table's objects with their bounds (same order).
    pub fn with_bounds(&self, key: &Path) -> Option<ObjectsWithBounds> {
        self.lists.read().ok().and_then(|l| {
            l.get(key)
                .map(|c| (c.files.files.clone(), c.bounds.clone()))
        })
    }

    /// [`DeltaFiles::with_bounds`] and the objects' [`TextBounds`] (empty unless the table is a
    /// `file_index`), from one snapshot.
    pub fn with_text_bounds(
        &self,
        key: &Path,
    ) -> Option<(ObjectsWithBounds, Arc<Vec<TextBounds>>)> {
        self.lists.read().ok().and_then(|l| {
            l.get(key)
                .map(|c| ((c.files.files.clone(), c.bounds.clone()), c.texts.clone()))
        })
    }

    /// The table's objects with their bounds and its per-run digests, from one snapshot.
    pub fn with_runs(&self, key: &Path) -> Option<(ObjectsWithBounds, RunDigests)> {
        self.lists.read().ok().and_then(|l| {
            l.get(key)
                .map(|c| ((c.files.files.clone(), c.bounds.clone()), c.runs.clone()))
        })
    }

    /// Runs `f` (a scan) seeing only `keep` as the objects of the table at `key`.
    pub async fn scoped<F: std::future::Future>(
        key: Path,
        keep: Vec<ObjectMeta>,
        f: F,
    ) -> F::Output {
        NARROWED.scope((key, CachedFileList::new(keep)), f).await
    }
}

/// The per-run digests of table `table` (its folder name) with objects `active`: for a table with
/// an ME-major copy, each run's [`covers`](dials_lake::me_major::covers) of its object names; for a
/// copy table, each run's copy object's `<covers>`; none for other tables.
fn run_digests(table: &str, active: &[delta::ActiveFile]) -> RunDigests {
    use dials_lake::me_major::{covers, covers_of, run_of};
    let mut out: HashMap<i64, String> = HashMap::new();
    if delta::ME_MAJOR.iter().any(|(main, _)| *main == table) {
        let mut names: HashMap<i64, Vec<&str>> = HashMap::new();
        for f in active {
            if let Some(run) = run_of(f) {
                names
                    .entry(run)
                    .or_default()
                    .push(delta::object_name(&f.path));
            }
        }
        out = names.into_iter().map(|(run, n)| (run, covers(n))).collect();
    } else if delta::ME_MAJOR.iter().any(|(_, copy)| *copy == table) {
        for f in active {
            let Some(run) = run_of(f) else { continue };
            let c = covers_of(delta::object_name(&f.path))
                .unwrap_or_default()
                .to_string();
            // Two objects for one run: not a copy compaction commits; never used.
            out.entry(run).and_modify(|have| have.clear()).or_insert(c);
        }
    }
    Arc::new(out)
}

impl Cache<TableScopedPath, CachedFileList> for DeltaFiles {
    fn get(&self, key: &TableScopedPath) -> Option<CachedFileList> {
        let narrowed = NARROWED
            .try_with(|(k, files)| (*k == key.path).then(|| files.clone()))
            .ok()
            .flatten();
        let list = match narrowed {
            Some(l) => l,
            None => self
                .lists
                .read()
                .ok()
                .and_then(|l| l.get(&key.path).map(|c| c.files.clone()))?,
        };
        if self.guard.quarantined().is_empty() {
            return Some(list);
        }
        let kept = list
            .files
            .iter()
            .filter(|m| !self.guard.hides_committed(&m.location))
            .cloned()
            .collect();
        Some(CachedFileList::new(kept))
    }

    /// Listings are never cached: a path that is not a lake table is listed every time.
    fn put(&self, _key: &TableScopedPath, _value: CachedFileList) -> Option<CachedFileList> {
        None
    }

    fn remove(&self, _k: &TableScopedPath) -> Option<CachedFileList> {
        None
    }

    fn contains_key(&self, k: &TableScopedPath) -> bool {
        self.lists
            .read()
            .map(|l| l.contains_key(&k.path))
            .unwrap_or(false)
    }

    fn len(&self) -> usize {
        self.lists.read().map(|l| l.len()).unwrap_or(0)
    }

    fn clear(&self) {}

    fn name(&self) -> String {
        "DeltaFiles".to_string()
    }

    fn cache_limit(&self) -> usize {
        usize::MAX
    }

    fn update_cache_limit(&self, _limit: usize) {}

    fn cache_ttl(&self) -> Option<Duration> {
        None
    }

    fn update_cache_ttl(&self, _ttl: Option<Duration>) {}

    fn drop_table_entries(&self, _table_ref: &TableReference) -> datafusion::common::Result<()> {
        Ok(())
    }

    fn list_entries(
        &self,
    ) -> datafusion::common::HashMap<TableScopedPath, CacheEntryInfo<CachedFileList>> {
        datafusion::common::HashMap::default()
    }
}
