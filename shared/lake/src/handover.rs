//! Commits handed over between processes: a writer that loses the race for a table's next log
//! version leaves its decided change beside the log, and whoever commits next carries it.
//!
//! Each commit to a Delta table takes one log version, one conditional put at a time: N writers
//! (Lambda instances, `dials ingest` processes) finishing together wait for N − 1 versions, each
//! a round trip to the store plus a read of the commit that took the version (docs/scale.md,
//! "where it breaks" 5). Here a writer whose version was taken by other files' commits writes its
//! change (the actions it decided and, per DQMIO file, what the decision read: the file's last
//! generation and its objects) as an object under `_dials_intents/` in the table's folder, lists
//! the others' changes waiting there, and puts one log entry with all of them; whoever wins the
//! next version commits everyone it carried, each under its own application transaction. A
//! writer that finds its own transactions in the commit that took its version is done.
//!
//! Exactly-once: a change is carried only when the carrier's view of the table (its snapshot and
//! every commit it read since) gives each of the change's files the generation and the objects
//! that its owner decided on, and no commit it read touches them. Once a change is committed its
//! file's objects are the change's own, so the same change (or any stale copy of it) never passes
//! that check again; a change that went stale (its owner decided again) does not pass it either.
//! Readers of the table never see `_dials_intents/` (not in the log; vacuum skips folders whose
//! name starts with `_`).

use std::collections::{BTreeSet, HashMap, HashSet};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, LazyLock};
use std::time::Duration;

use deltalake_core::kernel::transaction::{CommitData, PROTOCOL};
use deltalake_core::kernel::{Action, Transaction};
use deltalake_core::logstore::CommitOrBytes;
use deltalake_core::DeltaTable;
use futures::{StreamExt, TryStreamExt};
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt, PutPayload};
use serde::{Deserialize, Serialize};

use crate::delta::{self, Claims, DeltaError, Written};
use crate::txns::TxnIndex;

/// Folder (in the table's folder) of the changes waiting to be carried.
pub const INTENTS_DIR: &str = "_dials_intents";

/// A waiting change older than this is not carried (its owner has long decided again or failed).
const CARRY_WITHIN: Duration = Duration::from_secs(120);

/// A waiting change older than this is deleted by whoever lists it (its owner died).
const DELETE_AFTER: Duration = Duration::from_secs(3600);

/// DQMIO files in one log entry at most (own and carried).
const MAX_FILES: usize = 128;

/// Versions taken by other commits that a writer goes past at most before deciding again.
const MAX_VERSIONS: u64 = 64;

/// Changes read at once.
const CONCURRENT_READS: usize = 16;

static CARRIED: AtomicUsize = AtomicUsize::new(0);
static HANDED: AtomicUsize = AtomicUsize::new(0);

/// Other writers' changes this process committed with its own (since start).
pub fn carried_total() -> usize {
    CARRIED.load(Ordering::Relaxed)
}

/// This process's changes committed by another writer (since start).
pub fn handed_total() -> usize {
    HANDED.load(Ordering::Relaxed)
}

/// When a writer hands over ([`mode`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Never (`DIALS_COMMIT_HANDOVER` unset or `0`: a local lake's few writers, `dials up`).
    Off,
    /// After every lost version (`DIALS_COMMIT_HANDOVER=lost`).
    AfterLoss,
    /// Only where writers crowd a workspace's tables (`DIALS_COMMIT_HANDOVER=1`, set by
    /// `sam-template.yaml` for the ingest function, whose instances are many): once the versions
    /// one commit lost were taken by commits of at least [`CROWDED`] other processes
    /// (`commitInfo."dials.writer"`, [`delta::writer`]; a commit naming no writer counts as one
    /// more), and then for 30 s from a commit's first attempt on, on every table of the workspace. Two writers (a burst's two workers) never turn crowded however
    /// many commits each makes: nobody would carry for them and each hand-over costs requests
    /// (stop 28 counted commits, and two workers did turn crowded on `file_index`).
    Crowded,
}

/// Other processes whose commits took the versions one commit lost that make a process hand over
/// ([`Mode::Crowded`]).
pub const CROWDED: usize = 2;

/// When the group committer hands over and carries changes, as `DIALS_COMMIT_HANDOVER` says.
/// Measured (docs/benchmarks.md, stops 27–28): with each request to the store 30 ms away, 20 and
/// 50 writers at once spent 7–9 % of their ingest committing with it and 11–14 % without; on a
/// saturated LocalStack, where the request rate and not the latency is the cost, it made no
/// difference for 10 writers, and with two workers every hand-over was overhead (a 1,000-file burst
/// finished in 524–591 s with it off, and did not finish in 600 s with it on): off unless set, and
/// then [`Mode::Crowded`]. A writer alone never hands over (nothing is listed or written before a
/// lost race).
pub fn mode() -> Mode {
    static MODE: LazyLock<Mode> = LazyLock::new(|| {
        match std::env::var("DIALS_COMMIT_HANDOVER")
            .as_deref()
            .map(str::trim)
        {
            Err(_) | Ok("" | "0" | "off") => Mode::Off,
            Ok("lost") => Mode::AfterLoss,
            Ok(_) => Mode::Crowded,
        }
    });
    *MODE
}

/// What a change's decision read of one DQMIO file.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct FileDecision {
    /// DQMIO file id.
    pub id: i64,
    /// The generation committed (its application transaction's version).
    pub generation: i64,
    /// The file's last generation in the table when decided (none: never committed).
    pub previous: Option<i64>,
    /// The file's active objects in the table when decided (names); the change removes them all.
    pub objects: BTreeSet<String>,
}

/// A decided change, as stored under [`INTENTS_DIR`].
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Stored {
    files: Vec<FileDecision>,
    actions: Vec<Action>,
    txns: Vec<Transaction>,
}

/// One writer's change to commit.
pub struct Change<'a> {
    /// Its adds and removes.
    pub actions: Vec<Action>,
    /// One application transaction per file.
    pub txns: Vec<Transaction>,
    /// What the decision read, per file.
    pub files: Vec<FileDecision>,
    /// What the decision depends on (`delta::commit_txns_rebasing`).
    pub claims: &'a Claims,
    /// Whether another writer may commit this change (every object it adds or removes is one of
    /// its files' own, none a merged object rewritten).
    pub can_hand_over: bool,
}

/// A change committed.
#[derive(Debug)]
pub struct Committed {
    /// The commit (by this writer, or by the one that carried the change).
    pub written: Written,
    /// (file id, generation) of every file the commit carried for other writers.
    pub carried: Vec<(i64, i64)>,
    /// True when another writer committed this change.
    pub by_other: bool,
}

/// A commit read after losing a version to it.
#[derive(Debug, Default)]
struct Landed {
    /// File id → generation, of its application transactions.
    txns: HashMap<i64, i64>,
    /// Files whose objects it adds or removes.
    objects_of: HashSet<i64>,
    /// Objects it removes (names).
    removed: HashSet<String>,
    /// Objects it adds (names).
    added: HashSet<String>,
    /// A protocol, metadata or unknown action, or an application transaction not of a file.
    other: bool,
    /// The process that wrote it (`commitInfo."dials.writer"`), when named.
    writer: Option<String>,
}

fn file_of_app(app: &str) -> Option<i64> {
    app.strip_prefix("dials.file.")?.parse().ok()
}

fn parse_landed(json: &[u8]) -> Option<Landed> {
    let text = std::str::from_utf8(json).ok()?;
    let mut out = Landed::default();
    for line in text.lines().filter(|l| !l.trim().is_empty()) {
        let action: serde_json::Value = serde_json::from_str(line).ok()?;
        for (kind, body) in action.as_object()? {
            match kind.as_str() {
                "commitInfo" => {
                    out.writer = body
                        .get(delta::WRITER_KEY)
                        .and_then(|w| w.as_str())
                        .map(str::to_string);
                }
                "add" | "remove" => {
                    let name = delta::object_name(body.get("path")?.as_str()?).to_string();
                    if let Some(id) = delta::file_of(&name) {
                        out.objects_of.insert(id);
                    }
                    if kind == "remove" {
                        out.removed.insert(name);
                    } else {
                        out.added.insert(name);
                    }
                }
                "txn" => {
                    let app = body.get("appId")?.as_str()?;
                    match (
                        file_of_app(app),
                        body.get("version").and_then(|v| v.as_i64()),
                    ) {
                        (Some(id), Some(v)) => {
                            out.txns.insert(id, v);
                        }
                        _ => out.other = true,
                    }
                }
                _ => out.other = true,
            }
        }
    }
    Some(out)
}

impl Landed {
    /// True when this commit changes what any of `files`' decisions read.
    fn touches_files(&self, files: &[FileDecision]) -> bool {
        self.other
            || files.iter().any(|f| {
                self.txns.contains_key(&f.id)
                    || self.objects_of.contains(&f.id)
                    || f.objects.iter().any(|o| self.removed.contains(o))
            })
    }

    /// True when this commit is the one carrying a change of `files` made of `actions`: each file's
    /// transaction at its generation, and every object the change adds and removes (their names
    /// are the attempt's own: another commit of the same files at the same generation, e.g. a
    /// failed redelivery's removals, is not this change).
    fn carries(&self, files: &[FileDecision], actions: &[Action]) -> bool {
        !files.is_empty()
            && !actions.is_empty()
            && files
                .iter()
                .all(|f| self.txns.get(&f.id) == Some(&f.generation))
            && actions.iter().all(|a| match a {
                Action::Add(a) => self.added.contains(delta::object_name(&a.path)),
                Action::Remove(r) => self.removed.contains(delta::object_name(&r.path)),
                _ => false,
            })
    }
}

/// A change waiting under [`INTENTS_DIR`], read and checked against the carrier's view.
struct Waiting {
    path: Path,
    stored: Stored,
}

/// Commits `change` to `t` at the version after `t`'s. A version taken by a commit that touches
/// none of the change's claims is gone past (as `delta::commit_txns_rebasing`); from the first
/// such loss on (`mode` [`Mode::AfterLoss`]; [`Mode::Crowded`]: once writers crowd the table),
/// the change is handed over (written under [`INTENTS_DIR`]) and every change waiting there that
/// still holds on this writer's view is carried. `index` gives files' generations at `t`'s version
/// (none: nothing is carried). [`Mode::Off`]: nothing is handed over or carried (every lost
/// version is gone past or decided again, as `delta::commit_txns_rebasing`).
/// A conflict (`is_conflict`): decide again on a followed table.
pub async fn commit(
    t: &DeltaTable,
    change: Change<'_>,
    partitions: &[&str],
    index: Option<&TxnIndex>,
    mode: Mode,
) -> Result<Committed, DeltaError> {
    let url = t.table_url().clone();
    let snapshot = t.snapshot().map_err(|e| DeltaError::delta(&url, e))?;
    let store = t.log_store().object_store(None);
    let first = snapshot.version() + 1;
    let mut version = first;
    // Changes carried, the names of those seen (carried or not to be), commits read since `t`.
    let mut carrying: Vec<Waiting> = Vec::new();
    let mut seen: HashSet<String> = HashSet::new();
    let mut landed: Vec<Landed> = Vec::new();
    let mut mine: Option<Path> = None;
    // Other processes whose commits took this commit's versions (named, and not named).
    let mut rivals: HashSet<String> = HashSet::new();
    let mut unnamed = 0usize;
    let own_ids: HashSet<i64> = change.files.iter().map(|f| f.id).collect();
    let share = mode != Mode::Off && index.is_some();
    // Writers were racing for this process's tables a moment ago: hand over and carry from the
    // first attempt on (the first writer to put then carries everyone who was there before it).
    let mut crowded = share && mode == Mode::Crowded && contended(&url);
    if crowded {
        let found = exchange(
            &store,
            &change,
            share,
            &mut mine,
            &mut seen,
            MAX_FILES.saturating_sub(change.files.len()),
        )
        .await;
        if let Some(index) = index {
            carrying = holding(t, index, &landed, own_ids.clone(), found);
        }
    }
    let outcome = loop {
        let mut actions = change.actions.clone();
        let mut txns = change.txns.clone();
        for w in &carrying {
            actions.extend(w.stored.actions.iter().cloned());
            txns.extend(w.stored.txns.iter().cloned());
        }
        let data = CommitData::new(
            actions,
            write_op(partitions),
            delta::written_by(delta::writer()),
            txns,
        );
        let bytes = match PROTOCOL
            .can_commit(snapshot, &data.actions, &data.operation)
            .map_err(|e| DeltaError::delta(&url, e.into()))
            .and_then(|()| {
                data.get_bytes()
                    .map_err(|e| DeltaError::delta(&url, e.into()))
            }) {
            Ok(b) => b,
            Err(e) => break Err(e),
        };
        let put = t
            .log_store()
            .write_commit_entry(
                version,
                CommitOrBytes::LogBytes(bytes),
                uuid::Uuid::new_v4(),
            )
            .await
            .map_err(|e| DeltaError::delta(&url, e.into()));
        match put {
            Ok(()) => {
                let carried: Vec<(i64, i64)> = carrying
                    .iter()
                    .flat_map(|w| w.stored.files.iter().map(|f| (f.id, f.generation)))
                    .collect();
                CARRIED.fetch_add(carrying.len(), Ordering::Relaxed);
                let done: Vec<Path> = carrying.into_iter().map(|w| w.path).collect();
                forget(&store, done);
                break Ok(Committed {
                    written: Written::at(version, url.clone(), version - first),
                    carried,
                    by_other: false,
                });
            }
            Err(e) if e.is_conflict() && version - first < MAX_VERSIONS => {
                // Every commit that landed from this version on, read at once (one listing and
                // parallel reads instead of a failed put and a read per version), while this change
                // is handed over and the waiting ones listed (where writers crowd the table).
                let room = room_left(&change, &carrying);
                let hand = share && (crowded || mode == Mode::AfterLoss);
                let (winners, found) = tokio::join!(
                    landed_from(&store, version),
                    exchange(&store, &change, hand, &mut mine, &mut seen, room)
                );
                for w in winners.iter().filter_map(|(_, w)| w.as_ref()) {
                    match &w.writer {
                        Some(id) if id == delta::writer() => {}
                        Some(id) => {
                            rivals.insert(id.clone());
                        }
                        None => unnamed += 1,
                    }
                }
                if rivals.len() + unnamed >= CROWDED {
                    mark_contended(&url);
                    crowded = share && mode == Mode::Crowded;
                }
                let mut step = None;
                for (v, winner) in winners {
                    let Some(winner) = winner else {
                        step = Some(Err(e));
                        break;
                    };
                    if winner.carries(&change.files, &change.actions) {
                        HANDED.fetch_add(1, Ordering::Relaxed);
                        step = Some(Ok(Committed {
                            written: Written::at(v, url.clone(), v - first),
                            carried: Vec::new(),
                            by_other: true,
                        }));
                        break;
                    }
                    if winner.other
                        || winner.touches_files(&change.files)
                        || claims_hit(&winner, change.claims)
                    {
                        step = Some(Err(e));
                        break;
                    }
                    // Carried changes the winner touched (it carried them, or changed their files)
                    // drop out; their owners see to them.
                    carrying.retain(|w| !winner.touches_files(&w.stored.files));
                    landed.push(winner);
                    version = v + 1;
                }
                if let Some(step) = step {
                    break step;
                }
                if let Some(index) = index {
                    let taken = taken_ids(&own_ids, &carrying);
                    carrying.extend(holding(t, index, &landed, taken, found));
                }
            }
            Err(e) => break Err(e),
        }
    };
    if let Some(p) = mine {
        if outcome.is_ok() {
            forget(&store, vec![p]);
        } else if let Err(e) = store.delete(&p).await {
            // The writer decides again (or fails): its change must not be carried from now on.
            // A writer that read it already may still carry it; that commit is then recognised by
            // the next decision (its objects active at its generation: nothing more to do).
            tracing::warn!(table = %url, path = %p, error = %e, "handed-over change not withdrawn");
        }
    }
    outcome
}

/// The commits at `from` and after, in order, each read (`None`: unreadable or missing, treated as
/// a conflict): the log listed from `from` on, then every later entry fetched at once. At least
/// `from` itself (the version just lost), even when the listing does not show it yet. That entry
/// exists (the put at `from` failed because of it), so it is read while the log is listed: a lost
/// version costs one round trip after the failed put instead of two, when no other commit landed
/// after it.
async fn landed_from(store: &Arc<dyn ObjectStore>, from: u64) -> Vec<(u64, Option<Landed>)> {
    let read = |v: u64| {
        let store = store.clone();
        async move {
            let path = Path::from(format!("_delta_log/{v:020}.json"));
            let landed = match store.get(&path).await {
                Ok(got) => got.bytes().await.ok().and_then(|b| parse_landed(&b)),
                Err(_) => None,
            };
            (v, landed)
        }
    };
    let offset = Path::from(format!("_delta_log/{:020}.json", from.saturating_sub(1)));
    let listing = store
        .list_with_offset(Some(&Path::from("_delta_log")), &offset)
        .try_collect::<Vec<object_store::ObjectMeta>>();
    let (listed, first) = tokio::join!(listing, read(from));
    let last = listed
        .unwrap_or_default()
        .iter()
        .filter_map(|m| {
            let name = m.location.filename()?;
            let digits = name.strip_suffix(".json")?;
            (digits.len() == 20).then(|| digits.parse::<u64>().ok())?
        })
        .filter(|v| *v >= from)
        .max()
        .unwrap_or(from)
        .min(from + MAX_VERSIONS);
    let mut all = vec![first];
    all.extend(
        futures::stream::iter(from + 1..=last)
            .map(read)
            .buffered(CONCURRENT_READS)
            .collect::<Vec<_>>()
            .await,
    );
    all
}

/// Per workspace (the folder of its tables): when one of this process's commits last lost
/// versions to [`CROWDED`] other processes (ms since the epoch).
static CONTENDED_AT: LazyLock<std::sync::Mutex<HashMap<String, i64>>> =
    LazyLock::new(Default::default);

/// How long after a crowded lost version a process's commits to the workspace's tables hand over
/// from their first attempt.
const CONTENDED_FOR_MS: i64 = 30_000;

/// The workspace of `table`: writers that crowded one of its tables (an ingest's STARTED records
/// in `file_index`, first of all) finish together and crowd the others next, so a crowd seen on
/// one table makes the commits to all of them hand over from their first attempt. Measured with
/// writers that commit at one instant (`bench/concurrent_ingest.py --barrier`, docs/benchmarks.md
/// stop 31): per table, a crowd was only seen after its second lost version.
fn workspace_of(table: &url::Url) -> String {
    let s = table.as_str().trim_end_matches('/');
    s.rsplit_once('/').map_or(s, |(ws, _)| ws).to_string()
}

fn contended(table: &url::Url) -> bool {
    CONTENDED_AT
        .lock()
        .ok()
        .and_then(|m| m.get(&workspace_of(table)).copied())
        .is_some_and(|at| delta::now_ms() - at < CONTENDED_FOR_MS)
}

/// True when, within the last 30 s, one of this process's commits lost versions to [`CROWDED`]
/// other processes, on any table: the process is one of many writers that finish together (an
/// ingest then queues its commits, `ingest::ingest_queued`).
pub fn crowd_seen_recently() -> bool {
    let now = delta::now_ms();
    CONTENDED_AT
        .lock()
        .map(|m| m.values().any(|at| now - at < CONTENDED_FOR_MS))
        .unwrap_or(false)
}

fn mark_contended(table: &url::Url) {
    if let Ok(mut m) = CONTENDED_AT.lock() {
        m.insert(workspace_of(table), delta::now_ms());
    }
}

fn room_left(change: &Change<'_>, carrying: &[Waiting]) -> usize {
    MAX_FILES.saturating_sub(
        change.files.len() + carrying.iter().map(|w| w.stored.files.len()).sum::<usize>(),
    )
}

fn taken_ids(own: &HashSet<i64>, carrying: &[Waiting]) -> HashSet<i64> {
    own.iter()
        .copied()
        .chain(
            carrying
                .iter()
                .flat_map(|w| w.stored.files.iter().map(|f| f.id)),
        )
        .collect()
}

/// Hands `change` over (once, when it can be) while listing and reading the changes waiting;
/// nothing when sharing is off.
async fn exchange(
    store: &Arc<dyn ObjectStore>,
    change: &Change<'_>,
    share: bool,
    mine: &mut Option<Path>,
    seen: &mut HashSet<String>,
    room: usize,
) -> Vec<Waiting> {
    if !share {
        return Vec::new();
    }
    let need = change.can_hand_over && mine.is_none();
    let put = async {
        if need {
            Some(hand_over(store, change).await)
        } else {
            None
        }
    };
    let (put, found) = tokio::join!(put, waiting(store, seen, room));
    match put {
        Some(Ok(p)) => {
            seen.insert(p.to_string());
            *mine = Some(p);
        }
        Some(Err(err)) => {
            tracing::debug!(error = %err, "change not handed over; committing it alone")
        }
        None => {}
    }
    found.unwrap_or_else(|err| {
        tracing::debug!(error = %err, "waiting changes not listed");
        Vec::new()
    })
}

/// True when commit entry `json` changes what a decision with `claims` read (`delta::touches`):
/// unreadable, a protocol/metadata/unknown action, or a transaction or object of a claimed file,
/// or a claimed object added or removed.
pub(crate) fn touches_claims(json: &[u8], claims: &Claims) -> bool {
    parse_landed(json).is_none_or(|l| l.other || claims_hit(&l, claims))
}

fn claims_hit(winner: &Landed, claims: &Claims) -> bool {
    winner.txns.keys().any(|id| claims.file_ids.contains(id))
        || winner
            .objects_of
            .iter()
            .any(|id| claims.file_ids.contains(id))
        || winner
            .removed
            .iter()
            .chain(&winner.added)
            .any(|n| claims.removed.contains(n))
}

fn write_op(partitions: &[&str]) -> deltalake_core::protocol::DeltaOperation {
    delta::write_op(partitions)
}

/// Leaves `change` under `t`'s [`INTENTS_DIR`] for the next writer to carry (what [`commit`]
/// does after losing a version); returns its path in the table's folder.
pub async fn leave(t: &DeltaTable, change: &Change<'_>) -> Result<Path, DeltaError> {
    let store = t.log_store().object_store(None);
    hand_over(&store, change)
        .await
        .map_err(|message| DeltaError::Log {
            table: t.table_url().to_string(),
            message: format!("change not left for another writer: {message}"),
        })
}

/// Writes `change` under [`INTENTS_DIR`]; returns its path.
async fn hand_over(store: &Arc<dyn ObjectStore>, change: &Change<'_>) -> Result<Path, String> {
    let stored = Stored {
        files: change.files.clone(),
        actions: change.actions.clone(),
        txns: change.txns.clone(),
    };
    let body = serde_json::to_vec(&stored).map_err(|e| e.to_string())?;
    let path = Path::from(format!("{INTENTS_DIR}/{}.json", uuid::Uuid::new_v4()));
    store
        .put(&path, PutPayload::from(body))
        .await
        .map_err(|e| e.to_string())?;
    Ok(path)
}

/// Deletes changes committed (or no longer to be carried), in the background.
fn forget(store: &Arc<dyn ObjectStore>, paths: Vec<Path>) {
    if paths.is_empty() {
        return;
    }
    let store = store.clone();
    tokio::spawn(async move {
        for p in paths {
            if let Err(e) = store.delete(&p).await {
                tracing::debug!(path = %p, error = %e, "committed change not deleted (ignored by later writers)");
            }
        }
    });
}

/// The changes waiting under [`INTENTS_DIR`] not seen before, at most `room` files' worth, read.
/// Changes too old to carry are marked seen; those older than [`DELETE_AFTER`] deleted.
async fn waiting(
    store: &Arc<dyn ObjectStore>,
    seen: &mut HashSet<String>,
    room: usize,
) -> Result<Vec<Waiting>, object_store::Error> {
    if room == 0 {
        return Ok(Vec::new());
    }
    let now = delta::now_ms();
    let listed: Vec<_> = store
        .list(Some(&Path::from(INTENTS_DIR)))
        .try_collect()
        .await?;
    let mut fresh = Vec::new();
    let mut dead = Vec::new();
    for meta in listed {
        let name = meta.location.to_string();
        if !seen.insert(name) {
            continue;
        }
        let age = Duration::from_millis(
            u64::try_from(now - meta.last_modified.timestamp_millis()).unwrap_or(0),
        );
        if age > DELETE_AFTER {
            dead.push(meta.location);
        } else if age <= CARRY_WITHIN {
            fresh.push(meta.location);
        }
    }
    forget(store, dead);
    let read: Vec<Option<Waiting>> = futures::stream::iter(fresh)
        .map(|path| {
            let store = store.clone();
            async move {
                let bytes = store.get(&path).await.ok()?.bytes().await.ok()?;
                let stored: Stored = serde_json::from_slice(&bytes).ok()?;
                Some(Waiting { path, stored })
            }
        })
        .buffer_unordered(CONCURRENT_READS)
        .collect()
        .await;
    let mut out = Vec::new();
    let mut files = 0;
    for w in read.into_iter().flatten() {
        if files + w.stored.files.len() > room {
            break;
        }
        files += w.stored.files.len();
        out.push(w);
    }
    Ok(out)
}

/// The `found` changes that still hold on this writer's view: `t` at `index`'s version plus the
/// commits `landed` after it; each file's generation and objects as its owner decided, no file
/// already `taken` by this commit, every object the change adds or removes one of its files' own,
/// and the change's transactions exactly its files'.
fn holding(
    t: &DeltaTable,
    index: &TxnIndex,
    landed: &[Landed],
    mut taken: HashSet<i64>,
    found: Vec<Waiting>,
) -> Vec<Waiting> {
    if found.is_empty() || t.version().is_none_or(|v| v != index.version()) {
        return Vec::new();
    }
    let ids: HashSet<i64> = found
        .iter()
        .flat_map(|w| w.stored.files.iter().map(|f| f.id))
        .collect();
    let Ok(active) = delta::active_files_where(t, |name| {
        delta::file_of(name).is_some_and(|id| ids.contains(&id))
    }) else {
        return Vec::new();
    };
    let mut objects: HashMap<i64, BTreeSet<String>> = HashMap::new();
    for f in &active {
        let name = delta::object_name(&f.path);
        if let Some(id) = delta::file_of(name) {
            objects.entry(id).or_default().insert(name.to_string());
        }
    }
    let none = BTreeSet::new();
    let mut out = Vec::new();
    for w in found {
        let files = &w.stored.files;
        let own: HashSet<i64> = files.iter().map(|f| f.id).collect();
        let well_formed = !files.is_empty()
            && own.len() == files.len()
            && w.stored.txns.len() == files.len()
            && w.stored
                .txns
                .iter()
                .filter_map(|x| file_of_app(&x.app_id))
                .collect::<HashSet<i64>>()
                == own
            && w.stored.txns.iter().all(|x| {
                file_of_app(&x.app_id).is_some_and(|id| {
                    files
                        .iter()
                        .any(|f| f.id == id && f.generation == x.version)
                })
            })
            && w.stored.actions.iter().all(|a| match a {
                Action::Add(a) => {
                    delta::file_of(delta::object_name(&a.path)).is_some_and(|id| own.contains(&id))
                }
                Action::Remove(r) => {
                    let name = delta::object_name(&r.path);
                    delta::file_of(name).is_some_and(|id| {
                        files.iter().any(|f| f.id == id && f.objects.contains(name))
                    })
                }
                _ => false,
            });
        let holds = well_formed
            && files.iter().all(|f| {
                !taken.contains(&f.id)
                    && index.generation(f.id) == f.previous
                    && objects.get(&f.id).unwrap_or(&none) == &f.objects
                    && !landed
                        .iter()
                        .any(|l| l.touches_files(std::slice::from_ref(f)))
            });
        if holds {
            taken.extend(own);
            out.push(w);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn object_names_give_their_file() {
        assert_eq!(delta::file_of("part-42-abc-th1.parquet"), Some(42));
        assert_eq!(delta::file_of("part--7-x.parquet"), Some(-7));
        assert_eq!(delta::file_of("part-42.parquet"), Some(42));
        assert_eq!(delta::file_of("merged-0001.parquet"), None);
        assert_eq!(delta::file_of("part-.parquet"), None);
    }

    #[test]
    fn a_commit_carrying_a_change_is_recognised_by_its_owner() {
        let entry = br#"{"commitInfo":{"operation":"WRITE","dials.writer":"w1"}}
{"txn":{"appId":"dials.file.5","version":77}}
{"txn":{"appId":"dials.file.6","version":80}}
{"add":{"path":"run_number=1/part-5-a.parquet","size":1,"partitionValues":{},"modificationTime":0,"dataChange":true}}
"#;
        let landed = parse_landed(entry).expect("parsed");
        let file = |id, generation| FileDecision {
            id,
            generation,
            previous: None,
            objects: BTreeSet::new(),
        };
        let adds = |names: &[&str]| -> Vec<Action> {
            names
                .iter()
                .map(|n| Action::Add(delta::add(format!("run_number=1/{n}"), 1, &[], None)))
                .collect()
        };
        let mine = adds(&["part-5-a.parquet"]);
        assert!(landed.carries(&[file(5, 77)], &mine));
        assert!(landed.carries(&[file(5, 77), file(6, 80)], &mine));
        assert!(
            !landed.carries(&[file(5, 78)], &mine),
            "another generation of the file"
        );
        assert!(
            !landed.carries(&[file(5, 77), file(7, 1)], &mine),
            "not every file"
        );
        assert!(
            !landed.carries(&[file(5, 77)], &adds(&["part-5-b.parquet"])),
            "another attempt's objects at the same generation"
        );
        assert!(landed.touches_files(&[file(5, 1)]));
        assert!(!landed.touches_files(&[file(8, 1)]));
        assert!(!landed.other);
        assert_eq!(landed.writer.as_deref(), Some("w1"));
    }
}
