//! Group commit: the commits that concurrent ingests in one process make to the same table are
//! merged into one Delta transaction.
//!
//! Every commit to a Delta table reads the snapshot (checkpoint + log tail), looks up the file's
//! application transaction and writes the next log entry; with thousands of files in a table that is
//! most of a small file's ingest time, and concurrent writers to one table retry each other's
//! commits. Here an ingest hands its table change (an [`Intent`]: its objects in, the file's earlier
//! objects out, under the file's transaction id and generation) to the table's queue and waits.
//! Whoever holds the table's commit lock takes every intent waiting, decides each one on one
//! snapshot exactly as a lone commit would (superseded by a newer generation; the file's earlier
//! objects to remove; merged objects to rewrite) and commits them together, one application
//! transaction per file. While that commit runs, the next intents gather behind the lock: the more
//! files arrive at once, the larger the batches. Exactly-once is unchanged: a batch is one atomic
//! commit, each file's transaction version is the one its lone commit would have written, and a
//! batch that loses a race is decided again on the new snapshot.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, LazyLock, Mutex};
use std::time::Duration;

use deltalake_core::kernel::{Action, Add};
use deltalake_core::DeltaTable;
use tokio::sync::oneshot;

use dials_dqmio::ByteSource;

use crate::compact;
use crate::delta;
use crate::handover;
use crate::ingest::IngestError;
use crate::store::Location;
use crate::txns::TxnIndex;

/// Times a batch is decided again after losing a race (each decision re-reads the log tail).
const COMMIT_ATTEMPTS: usize = 50;

/// Files per commit at most (`DIALS_COMMIT_BATCH` overrides; 1 = every file commits alone, as
/// before group commit): bounds one commit's log entry and its decision time.
const MAX_BATCH: usize = 64;

fn max_batch() -> usize {
    static MAX: LazyLock<usize> = LazyLock::new(|| {
        std::env::var("DIALS_COMMIT_BATCH")
            .ok()
            .and_then(|v| v.trim().parse().ok())
            .filter(|n: &usize| *n > 0)
            .unwrap_or(MAX_BATCH)
    });
    *MAX
}

/// One file's change to one table.
pub struct Intent {
    /// DQMIO file id.
    pub file_id: i64,
    /// The attempt's generation (see `delta::version_generation`).
    pub generation: i64,
    /// The attempt's objects of this table.
    pub adds: Vec<Add>,
    /// The attempt's source, asked whether its version is still the key's current one when the
    /// file's last commit to the table is of another version written at the same instant
    /// (`delta::same_instant`): the current version wins. `None`: the generations decide.
    pub source: Option<Arc<dyn ByteSource>>,
}

impl std::fmt::Debug for Intent {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Intent")
            .field("file_id", &self.file_id)
            .field("generation", &self.generation)
            .field("adds", &self.adds.len())
            .field("source", &self.source.as_ref().map(|s| s.name()))
            .finish()
    }
}

/// Whether `intent`'s source version is its key's current one (`None`: the source cannot tell).
async fn source_is_current(intent: &Intent) -> Option<Result<bool, IngestError>> {
    let src = intent.source.clone()?;
    match tokio::task::spawn_blocking(move || src.is_current()).await {
        Ok(answer) => answer.map(|r| {
            r.map_err(|e| {
                IngestError::NotAvailable(format!("asking which version is current: {e}"))
            })
        }),
        Err(e) => Some(Err(IngestError::Task(format!(
            "asking which version is current: {e}"
        )))),
    }
}

type Waiter = (Intent, oneshot::Sender<Result<(), IngestError>>);

/// A waiting change, with the sender its submitter's [`settled`] waits on (dropped when done).
type Queued = (
    Intent,
    oneshot::Sender<Result<(), IngestError>>,
    oneshot::Sender<()>,
);

tokio::task_local! {
    /// While [`settled`] runs a future: the commits it submitted, each resolving once its table's
    /// post-commit work (snapshot, checkpoint) is done.
    static SETTLES: Mutex<Vec<oneshot::Receiver<()>>>;
}

/// Runs `f` (an ingest), then waits until every commit it submitted has also finished its
/// post-commit work, whether `f` succeeded or not. A commit answers its files as soon as it is in
/// the log and loads the table's new snapshot afterwards; a process must not exit (or a Lambda
/// invocation end, freezing it) in the middle of that.
pub async fn settled<F: std::future::Future>(f: F) -> F::Output {
    let (out, settles) = SETTLES
        .scope(Mutex::new(Vec::new()), async {
            let out = f.await;
            let settles = SETTLES.with(|s| {
                s.lock()
                    .map(|mut v| std::mem::take(&mut *v))
                    .unwrap_or_default()
            });
            (out, settles)
        })
        .await;
    for s in settles {
        // Resolved (or dropped) when the commit task is done.
        let _ = s.await;
    }
    out
}

/// One table's waiting intents and its commit lock, which guards what the previous commits left:
/// the loaded table (followed commit by commit instead of loaded again) and its files' generations.
/// A process assumes nobody deletes a table under it (a table created again at the same place
/// would be followed from the old one's version).
#[derive(Default)]
struct Queue {
    waiting: Mutex<Vec<Queued>>,
    lock: tokio::sync::Mutex<Loaded>,
    /// Commits of this queue refused because another writer moved the table first.
    races_lost: AtomicUsize,
}

#[derive(Default)]
struct Loaded {
    table: Option<DeltaTable>,
    txns: Option<TxnIndex>,
    /// The log could not be read directly: ask delta-rs until the table is loaded again (instead
    /// of reading the log again for every batch).
    txns_unreadable: bool,
    /// The last commit lost a race: follow the log before deciding again.
    behind: bool,
    /// When the table was last brought to the log's latest version (loaded, followed, or
    /// committed to): [`prepare`] leaves a table this fresh as it is.
    current_at: Option<std::time::Instant>,
}

/// A table brought to the latest version this recently is not followed again by [`prepare`]
/// (`DIALS_PREPARE_FRESH_MS`): the files of a burst, which start within moments of each other, do
/// not each list the table's log.
const PREPARE_FRESH: Duration = Duration::from_millis(1000);

fn prepare_fresh() -> Duration {
    static FRESH: LazyLock<Duration> = LazyLock::new(|| {
        std::env::var("DIALS_PREPARE_FRESH_MS")
            .ok()
            .and_then(|v| v.trim().parse().ok())
            .map(Duration::from_millis)
            .unwrap_or(PREPARE_FRESH)
    });
    *FRESH
}

/// The table at its latest version, followed from the one loaded if any (`create`: created if it
/// has no commit yet). Loading it again forgets the generations read for the old one. Without
/// `follow`, a table already loaded is taken as it is: a commit decided on it fails if the table
/// moved (`delta::commit_txns_exclusive`) and is then decided again on the followed table, so a
/// writer alone saves a log listing per commit.
#[allow(clippy::too_many_arguments)]
async fn latest<'a>(
    slot: &'a mut Option<DeltaTable>,
    follow: bool,
    txns: &mut Option<TxnIndex>,
    txns_unreadable: &mut bool,
    lake: &Location,
    ws: &str,
    table: &str,
    create: bool,
) -> Result<Option<&'a mut DeltaTable>, delta::DeltaError> {
    let followed = match slot.as_mut() {
        Some(_) if !follow => true,
        Some(t) => t.update_incremental(None).await.is_ok(),
        None => false,
    };
    if !followed {
        *txns = None;
        *txns_unreadable = false;
        *slot = if create {
            Some(delta::open_or_create(lake, ws, table).await?)
        } else {
            delta::open(lake, ws, table).await?
        };
    }
    Ok(slot.as_mut())
}

/// The generations of `t`'s files, brought to its version (`None`: the log could not be read
/// directly; the caller asks delta-rs file by file).
async fn synced<'a>(
    txns: &'a mut Option<TxnIndex>,
    unreadable: &mut bool,
    t: &DeltaTable,
) -> Option<&'a TxnIndex> {
    if *unreadable {
        return None;
    }
    let advanced = match txns.as_mut() {
        Some(ix) => matches!(ix.advance(t).await, Ok(true)),
        None => false,
    };
    if !advanced {
        *txns = match TxnIndex::build(t).await {
            Ok(ix) => Some(ix),
            Err(e) => {
                tracing::warn!(table = %t.table_url(), error = %e, "files' generations not read from the log directly; asking delta-rs file by file");
                *unreadable = true;
                None
            }
        };
    }
    txns.as_ref()
}

/// Whether a commit made while no file of the process is pending leaves its table's snapshot
/// behind, to be followed at the table's next use, instead of bringing it to the commit at once
/// (`DIALS_FOLLOW_AFTER_COMMIT=1`: at once, as before stop 29). Measured: docs/benchmarks.md, stop 29.
fn follow_lazily() -> bool {
    static LAZY: LazyLock<bool> = LazyLock::new(|| {
        !std::env::var("DIALS_FOLLOW_AFTER_COMMIT").is_ok_and(|v| matches!(v.trim(), "1" | "true"))
    });
    *LAZY
}

/// Files of this process that have not yet handed their changes to the data tables' commits.
static PENDING: AtomicUsize = AtomicUsize::new(0);

/// How long a data table's commit holds back for pending files at most (`DIALS_COMMIT_LINGER_MS`).
const MAX_LINGER: Duration = Duration::from_millis(2000);

fn max_linger() -> Duration {
    static MAX: LazyLock<Duration> = LazyLock::new(|| {
        std::env::var("DIALS_COMMIT_LINGER_MS")
            .ok()
            .and_then(|v| v.trim().parse().ok())
            .map(Duration::from_millis)
            .unwrap_or(MAX_LINGER)
    });
    *MAX
}

/// A file on its way to the data tables' commits (from the start of its ingest until it hands
/// them its changes, or fails). While any is pending, a data table's commit waits for it, up to
/// [`MAX_LINGER`]: the files of a burst (an SQS batch decoded one after the other) then share one
/// commit per table instead of one each. A file alone never waits.
pub struct Pending(());

impl Pending {
    /// Counts a file as pending until the guard is dropped.
    #[allow(clippy::new_without_default)]
    pub fn new() -> Self {
        PENDING.fetch_add(1, Ordering::AcqRel);
        Pending(())
    }
}

impl Drop for Pending {
    fn drop(&mut self) {
        PENDING.fetch_sub(1, Ordering::AcqRel);
    }
}

/// Queues by table URL (a process may write several lakes: tests do).
static QUEUES: LazyLock<Mutex<HashMap<String, Arc<Queue>>>> =
    LazyLock::new(|| Mutex::new(HashMap::new()));

fn queue(key: String) -> Arc<Queue> {
    match QUEUES.lock() {
        Ok(mut q) => q.entry(key).or_default().clone(),
        // A panic elsewhere poisoned the map: a queue of its own still commits correctly.
        Err(_) => Arc::new(Queue::default()),
    }
}

fn queue_key(lake: &Location, ws: &str, table: &str) -> String {
    format!("{}/{ws}/{table}", lake.url.trim_end_matches('/'))
}

/// Runs `f` as a task of its own that the enclosing [`settled`] waits for (the process must not
/// exit, nor a Lambda invocation end, while it reads a table's log).
pub(crate) fn spawn_settled<F>(f: F)
where
    F: std::future::Future<Output = ()> + Send + 'static,
{
    let (done, settle) = oneshot::channel::<()>();
    let _ = SETTLES.try_with(|s| {
        if let Ok(mut v) = s.lock() {
            v.push(settle);
        }
    });
    tokio::spawn(async move {
        f.await;
        drop(done);
    });
}

/// Brings `ws`'s `table` to its latest version ahead of this process's next commit to it, in the
/// background: loaded if the process has not loaded it yet, followed past other writers' commits
/// if it has, with its files' generations. Called when an ingest starts, so that the table's log is
/// read while the file decodes instead of when its commit is due (for a fresh process on S3 that
/// was most of the commit time: a LIST and the checkpoint and tail GETs per table), and a warm
/// process's commit does not first lose a race to the writers that moved the table meanwhile.
/// Skipped while the table's commit lock is held (its holder loads or follows the table itself).
/// Never creates the table.
pub fn prepare(lake: &Location, ws: &str, table: &str) {
    let q = queue(queue_key(lake, ws, table));
    let (lake, ws, table) = (lake.clone(), ws.to_string(), table.to_string());
    spawn_settled(async move {
        let Ok(mut loaded) = q.lock.try_lock() else {
            return;
        };
        let Loaded {
            table: slot,
            txns,
            txns_unreadable,
            behind,
            current_at,
        } = &mut *loaded;
        let follow = slot.is_some();
        if follow && !*behind && current_at.is_some_and(|at| at.elapsed() < prepare_fresh()) {
            return;
        }
        match latest(
            slot,
            follow,
            txns,
            txns_unreadable,
            &lake,
            &ws,
            &table,
            false,
        )
        .await
        {
            Ok(Some(t)) => {
                *behind = false;
                *current_at = Some(std::time::Instant::now());
                synced(txns, txns_unreadable, t).await;
            }
            Ok(None) => {}
            Err(e) => {
                tracing::debug!(ws, table, error = %e, "table not prepared; its commit loads it");
            }
        }
    });
}

/// Commits of this process refused because another writer moved their table first, all tables.
static RACES_LOST: AtomicUsize = AtomicUsize::new(0);

/// Commits of other files' that this process's commits went past without deciding again.
static REBASED: AtomicUsize = AtomicUsize::new(0);

/// How many commits of other writers (of other files) this process's commits went past without
/// deciding again (`delta::commit_txns_rebasing`), all tables.
pub fn rebased_total() -> usize {
    REBASED.load(Ordering::Relaxed)
}

/// How many of this process's commits, to any table, were refused because another writer had
/// moved the table (each was decided again on the followed table).
pub fn races_lost_total() -> usize {
    RACES_LOST.load(Ordering::Relaxed)
}

/// How many of this process's commits to `ws`'s `table` were refused because another writer had
/// moved the table (each was decided again on the followed table).
pub fn races_lost(lake: &Location, ws: &str, table: &str) -> usize {
    queue(queue_key(lake, ws, table))
        .races_lost
        .load(Ordering::Relaxed)
}

/// Commits `intent` to `ws`'s `table`, with whatever other intents for the table are waiting;
/// returns when it is committed (or superseded, or failed). Nothing is committed when there is
/// nothing to add or remove.
pub async fn submit(
    lake: &Location,
    ws: &str,
    table: &str,
    intent: Intent,
) -> Result<(), IngestError> {
    submit_inner(lake, ws, table, intent, false).await
}

/// [`submit`] for a data table: the commit first waits (at most [`MAX_LINGER`]) until no file
/// of this process is [`Pending`] any more, so that their changes join it. Not for `file_index`:
/// a pending file's STARTED record needs that table's commit.
pub async fn submit_with_pending(
    lake: &Location,
    ws: &str,
    table: &str,
    intent: Intent,
) -> Result<(), IngestError> {
    submit_inner(lake, ws, table, intent, true).await
}

async fn submit_inner(
    lake: &Location,
    ws: &str,
    table: &str,
    intent: Intent,
    linger: bool,
) -> Result<(), IngestError> {
    let q = queue(queue_key(lake, ws, table));
    let (tx, rx) = oneshot::channel();
    // Dropped by the commit task once the commit carrying this change is completely done.
    let (done, settle) = oneshot::channel::<()>();
    let _ = SETTLES.try_with(|s| {
        if let Ok(mut v) = s.lock() {
            v.push(settle);
        }
    });
    if let Ok(mut w) = q.waiting.lock() {
        w.push((intent, tx, done));
    }
    // The turn at the lock runs as a task of its own: a submitter that stops waiting (its ingest
    // failed on another table, or ran out of time) never cancels a commit carrying other files'
    // changes.
    let (lake, ws_name, table_name) = (lake.clone(), ws.to_string(), table.to_string());
    tokio::spawn(async move {
        let asked = std::time::Instant::now();
        let mut loaded = q.lock.lock().await;
        let lock_wait = asked.elapsed();
        if linger {
            let since = std::time::Instant::now();
            while PENDING.load(Ordering::Acquire) > 0 && since.elapsed() < max_linger() {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        }
        // The oldest waiting changes, at most a batch; the rest go to the next holder of the lock
        // (every submitter's turn takes the lock once, so none is left behind).
        let batch = q
            .waiting
            .lock()
            .map(|mut w| {
                let n = w.len().min(max_batch());
                w.drain(..n).collect::<Vec<_>>()
            })
            .unwrap_or_default();
        if !batch.is_empty() {
            let (batch, done): (Vec<Waiter>, Vec<oneshot::Sender<()>>) = batch
                .into_iter()
                .map(|(intent, tx, done)| ((intent, tx), done))
                .unzip();
            let started = std::time::Instant::now();
            commit_batch(&mut loaded, &q, &lake, &ws_name, &table_name, batch).await;
            tracing::debug!(
                ws = %ws_name,
                table = %table_name,
                lock_wait_ms = lock_wait.as_millis() as u64,
                commit_ms = started.elapsed().as_millis() as u64,
                "turn at the table's lock done"
            );
            // The commit and its post-commit work are done.
            drop(done);
        }
    });
    rx.await.unwrap_or_else(|_| {
        Err(IngestError::Task(format!(
            "{ws}/{table}: the commit taking this file's change stopped"
        )))
    })
}

/// Decides and commits `batch` (answering every waiter).
async fn commit_batch(
    loaded: &mut Loaded,
    q: &Queue,
    lake: &Location,
    ws: &str,
    table: &str,
    batch: Vec<Waiter>,
) {
    let partitions = match delta::layout(table) {
        Ok((_, p)) => p,
        Err(e) => {
            let msg = e.to_string();
            for (_, tx) in batch {
                let _ = tx.send(Err(IngestError::Task(msg.clone())));
            }
            return;
        }
    };
    // Two attempts of one file in a batch: the higher generation (the later one on a tie) is
    // decided; the other is superseded by it. Attempts of versions written at the same instant
    // are all decided, one round after the other: the second then meets the first's commit and
    // the key's current version wins (`decide_and_commit`).
    let mut latest: BTreeMap<i64, Vec<usize>> = BTreeMap::new();
    for (i, (intent, _)) in batch.iter().enumerate() {
        let kept = latest.entry(intent.file_id).or_default();
        let g = intent.generation;
        let older = |j: &usize| {
            let h = batch[*j].0.generation;
            !delta::same_instant(g, h) && g > h
        };
        let newer = kept.iter().any(|j| {
            let h = batch[*j].0.generation;
            !delta::same_instant(g, h) && h > g
        });
        if !newer {
            kept.retain(|j| !older(j));
            // The later of two attempts of one version replaces the earlier one.
            kept.retain(|j| batch[*j].0.generation != g);
            kept.push(i);
        }
    }
    let round: HashMap<usize, usize> = latest
        .into_values()
        .flat_map(|kept| kept.into_iter().enumerate().map(|(r, i)| (i, r)))
        .collect();
    let mut rounds: Vec<Vec<Waiter>> = Vec::new();
    for (i, (intent, tx)) in batch.into_iter().enumerate() {
        match round.get(&i) {
            Some(&r) => {
                if rounds.len() <= r {
                    rounds.resize_with(r + 1, Vec::new);
                }
                rounds[r].push((intent, tx));
            }
            None => {
                let _ = tx.send(Err(IngestError::Superseded(format!(
                    "{ws}/{table}: a newer attempt of the same file is committed in the same batch"
                ))));
            }
        }
    }
    for waiting in rounds {
        commit_round(loaded, q, lake, ws, table, partitions, waiting).await;
    }
}

/// Decides and commits `waiting` (at most one attempt per file), again on the new snapshot after
/// each lost race.
async fn commit_round(
    loaded: &mut Loaded,
    q: &Queue,
    lake: &Location,
    ws: &str,
    table: &str,
    partitions: &[&str],
    mut waiting: Vec<Waiter>,
) {
    let mut tries = 0;
    while !waiting.is_empty() {
        tries += 1;
        match decide_and_commit(loaded, lake, ws, table, partitions, &mut waiting).await {
            Ok(()) => {}
            Err(e) if e.is_conflict() && tries < COMMIT_ATTEMPTS => {
                q.races_lost.fetch_add(1, Ordering::Relaxed);
                RACES_LOST.fetch_add(1, Ordering::Relaxed);
                tracing::debug!(ws, table, tries, files = waiting.len(), error = %e, "batch commit raced another; deciding again");
            }
            Err(e) => {
                let msg = e.to_string();
                for (_, tx) in waiting.drain(..) {
                    let _ = tx.send(Err(IngestError::Task(format!("{ws}/{table}: {msg}"))));
                }
            }
        }
    }
}

/// One decision round on the current snapshot: answers the intents it settles (superseded,
/// nothing to do, failed, committed) and removes them from `waiting`. An intent whose merged objects
/// must be rewritten shares its commit with no other such intent (two rewrites of one merged
/// object would each keep the other file's rows); it waits for the next round.
async fn decide_and_commit(
    loaded: &mut Loaded,
    lake: &Location,
    ws: &str,
    table: &str,
    partitions: &[&str],
    waiting: &mut Vec<Waiter>,
) -> Result<(), delta::DeltaError> {
    let any_adds = waiting.iter().any(|(i, _)| !i.adds.is_empty());
    let Loaded {
        table: slot,
        txns: index_slot,
        txns_unreadable,
        behind,
        current_at,
    } = loaded;
    let follow = std::mem::take(behind);
    let Some(t) = latest(
        slot,
        follow,
        index_slot,
        txns_unreadable,
        lake,
        ws,
        table,
        any_adds,
    )
    .await?
    else {
        // No table and nothing to add: nothing to remove either.
        for (_, tx) in waiting.drain(..) {
            let _ = tx.send(Ok(()));
        }
        return Ok(());
    };
    // Only the objects a decision looks at: the waiting files' own and the merged ones (an
    // uncompacted table holds thousands of others; copying them all for every commit made a
    // commit's cost grow with the table).
    let ids: BTreeSet<i64> = waiting.iter().map(|(i, _)| i.file_id).collect();
    let active = delta::active_files_where(t, |name| {
        name.starts_with(compact::MERGED_PREFIX)
            || ids.iter().any(|id| delta::belongs_to(name, *id))
    })?;
    let index = synced(index_slot, txns_unreadable, t).await;
    let mut actions: Vec<Action> = Vec::new();
    let mut txns = Vec::new();
    let mut included: Vec<Waiter> = Vec::new();
    let mut decisions: Vec<handover::FileDecision> = Vec::new();
    let mut later: Vec<Waiter> = Vec::new();
    let mut rewriting = false;
    for (mut intent, tx) in std::mem::take(waiting) {
        let previous = match index {
            Some(ix) => Ok(ix.generation(intent.file_id)),
            None => delta::file_generation(t, intent.file_id).await,
        };
        let previous = match previous {
            Ok(p) => p,
            Err(e) => {
                let _ = tx.send(Err(e.into()));
                continue;
            }
        };
        // The last commit is of another version written at the same instant: their generations
        // are ordered by entity tag, not time. The key's current version is the newer one; when
        // this attempt's is, it commits above the last one (its later attempts then meet a
        // higher generation and are superseded, with its rows already in); when it is not, the
        // current version's own ingest replaces the last commit.
        if let Some(last) = previous.filter(|p| delta::same_instant(*p, intent.generation)) {
            match source_is_current(&intent).await {
                Some(Ok(true)) => intent.generation = intent.generation.max(last + 1),
                Some(Ok(false)) => {
                    let _ = tx.send(Err(IngestError::Superseded(format!(
                        "{ws}/{table}: the key now holds a newer version than this attempt's, written in the same second"
                    ))));
                    continue;
                }
                Some(Err(e)) => {
                    let _ = tx.send(Err(e));
                    continue;
                }
                None => {}
            }
        }
        if let Some(newer) = previous.filter(|g| *g > intent.generation) {
            let _ = tx.send(Err(IngestError::Superseded(format!(
                "{ws}/{table}: generation {newer} (a newer version of the file) committed; this attempt's is {}",
                intent.generation
            ))));
            continue;
        }
        let added: BTreeSet<&str> = intent.adds.iter().map(|a| a.path.as_str()).collect();
        // The file's own active objects (one scan; the decision below reads them four ways).
        let own: Vec<&delta::ActiveFile> = active
            .iter()
            .filter(|f| delta::belongs_to(delta::object_name(&f.path), intent.file_id))
            .collect();
        // This very change is in already (another writer carried it while this one went on to
        // decide again, `handover`): every object it adds is active at its generation, and every
        // commit of the file since would have removed them.
        if previous == Some(intent.generation)
            && !added.is_empty()
            && added
                .iter()
                .all(|p| own.iter().any(|f| f.path.as_str() == *p))
        {
            let _ = tx.send(Ok(()));
            continue;
        }
        let mut removes: Vec<Action> = own
            .iter()
            .filter(|f| !added.contains(f.path.as_str()))
            .map(|f| Action::Remove(delta::remove(f)))
            .collect();
        // An earlier attempt's rows may sit in merged objects (compaction): those are written again
        // without them. Only when another attempt committed to this table before (a first ingest has
        // nothing to take out).
        let mut rewritten: Vec<Add> = Vec::new();
        // A redelivery of the same version (same generation) after compaction merged the first
        // attempt's objects: none of the file's own objects is left, its rows are in merged ones.
        if previous.is_some_and(|g| g != intent.generation || own.is_empty()) {
            let candidates = active
                .iter()
                .any(|f| delta::object_name(&f.path).starts_with(compact::MERGED_PREFIX));
            if candidates && rewriting {
                later.push((intent, tx));
                continue;
            }
            match compact::file_rewrites(lake, ws, table, intent.file_id, &active).await {
                Ok(rw) => {
                    rewriting |= !rw.is_empty();
                    for (old, new) in rw {
                        removes.push(Action::Remove(delta::remove(&old)));
                        rewritten.extend(new);
                    }
                }
                Err(e) => {
                    let _ = tx.send(Err(e.into()));
                    continue;
                }
            }
        }
        if intent.adds.is_empty() && removes.is_empty() {
            let _ = tx.send(Ok(()));
            continue;
        }
        actions.extend(
            intent
                .adds
                .iter()
                .cloned()
                .chain(rewritten)
                .map(Action::Add),
        );
        actions.extend(removes);
        txns.push(delta::file_txn(intent.file_id, intent.generation));
        decisions.push(handover::FileDecision {
            id: intent.file_id,
            generation: intent.generation,
            previous,
            objects: own
                .iter()
                .map(|f| delta::object_name(&f.path).to_string())
                .collect(),
        });
        included.push((intent, tx));
    }
    if !included.is_empty() {
        let generations: Vec<(i64, i64)> = included
            .iter()
            .map(|(i, _)| (i.file_id, i.generation))
            .collect();
        // A commit of other files that lands first does not change this decision: the entry goes
        // to the next version without deciding again (`delta::commit_txns_rebasing`).
        let claims = delta::Claims {
            file_ids: included.iter().map(|(i, _)| i.file_id).collect(),
            removed: actions
                .iter()
                .filter_map(|a| match a {
                    Action::Remove(r) => Some(delta::object_name(&r.path).to_string()),
                    _ => None,
                })
                .collect(),
        };
        // Only its files' own objects in and out: another writer may commit this change
        // (`handover`); a rewrite of merged objects is committed by its own writer.
        let can_hand_over = actions.iter().all(|a| match a {
            Action::Add(a) => decisions
                .iter()
                .any(|d| delta::belongs_to(delta::object_name(&a.path), d.id)),
            Action::Remove(r) => decisions
                .iter()
                .any(|d| d.objects.contains(delta::object_name(&r.path))),
            _ => false,
        });
        let change = handover::Change {
            actions,
            txns,
            files: decisions,
            claims: &claims,
            can_hand_over,
        };
        let put_at = std::time::Instant::now();
        let committed = match handover::commit(t, change, partitions, index, handover::mode()).await
        {
            Ok(c) => c,
            Err(e) => {
                // Decided again (conflict) or answered with the error by the caller.
                *behind = true;
                waiting.extend(included);
                waiting.extend(later);
                return Err(e);
            }
        };
        let written = committed.written;
        REBASED.fetch_add(written.rebased() as usize, Ordering::Relaxed);
        // A commit by another writer may carry other files too: the index reads it.
        if let (Some(ix), Ok(v), false) = (
            index_slot.as_mut(),
            u64::try_from(written.version()),
            committed.by_other,
        ) {
            ix.apply(
                v,
                generations
                    .into_iter()
                    .chain(committed.carried.iter().copied()),
            );
        }
        tracing::debug!(
            ws,
            table,
            files = included.len(),
            carried = committed.carried.len(),
            by_other = committed.by_other,
            version = written.version(),
            rebased = written.rebased(),
            put_ms = put_at.elapsed().as_millis() as u64,
            "batch committed"
        );
        // The commit is in the log: its files go on (their next commit, the FINISHED record)
        // while the table's snapshot is brought to it, under the lock, before the next batch.
        for (_, tx) in included {
            let _ = tx.send(Ok(()));
        }
        if follow_lazily() && PENDING.load(Ordering::Acquire) == 0 && !written.checkpoint_due(t) {
            // No file of this process is on its way to a commit: the snapshot is brought to the
            // commit when the table is next used (the next ingest's `prepare`, or its commit),
            // together with whatever other writers commit meanwhile. A process that ingests one
            // file (a `dials ingest` of it, a Lambda invocation) then lists no log after it.
            *behind = true;
            tracing::debug!(ws, table, "snapshot followed at the table's next use");
            waiting.extend(later);
            return Ok(());
        }
        let finish_at = std::time::Instant::now();
        let finished = written.finish(t).await;
        tracing::debug!(
            ws,
            table,
            finish_ms = finish_at.elapsed().as_millis() as u64,
            "snapshot brought to the commit"
        );
        match finished {
            Ok(()) => *current_at = Some(std::time::Instant::now()),
            Err(e) => {
                tracing::warn!(ws, table, error = %e, "snapshot after a commit not loaded; followed before the next one");
                *behind = true;
            }
        }
    }
    waiting.extend(later);
    Ok(())
}
