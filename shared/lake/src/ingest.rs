//! Ingest one DQMIO file into the lake: decode once, route rows to every workspace that wants them,
//! stream Parquet to the object store, then publish the index records.
//!
//! Exactly once, without locks: every object a file produces is named by the file's id
//! (`part-<file_id>.parquet`), so a re-upload, an SQS redelivery or a concurrent duplicate writes the
//! same keys with the same rows instead of adding rows. Each object appears atomically (single PUT or
//! completed multipart upload). Per-file index objects mean concurrent files never read-modify-write a
//! shared object. The `file_index` record is written last: FINISHED means every object is in place.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Instant;

use arrow::array::{ArrayRef, Int64Array, RecordBatch, StringArray};
use arrow::datatypes::SchemaRef;
use deltalake_core::kernel::{Action, Add};
use dials_dqmio::{ByteSource, DqmioFile, MeKind, Order, Selection, SourceVersion};
use futures::TryStreamExt;
use object_store::buffered::BufWriter;
use object_store::{ObjectStore, ObjectStoreExt, PutPayload};
use parquet::arrow::async_writer::AsyncArrowWriter;
use parquet::arrow::ArrowWriter;
use parquet::basic::{Compression, ZstdLevel};
use parquet::file::metadata::ParquetMetaData;
use parquet::file::properties::{EnabledStatistics, WriterProperties};
use parquet::schema::types::ColumnPath;
use tokio::sync::mpsc;

use crate::committer;
use crate::config::{Workspace, Workspaces};
use crate::dataset::{self, DatasetInfo};
use crate::delta;
use crate::handover;
use crate::ids;
use crate::store::Location;
use crate::tables::{self, DataTable, FileRecord, MeRow};

/// Row group byte budget: a writer flushes when its in-progress row group passes this.
const ROW_GROUP_BYTES: usize = 16 << 20;
/// Upload buffer per data object: one multipart part (S3's minimum part is 5 MiB).
const UPLOAD_PART_BYTES: usize = 6 << 20;
/// Parts of one object uploading at once.
const UPLOAD_CONCURRENCY: usize = 2;
/// How long a failed attempt waits for its decoder to stop before leaving it behind.
const DECODER_GRACE: std::time::Duration = std::time::Duration::from_secs(2);

/// Errors of ingestion.
#[derive(Debug, thiserror::Error)]
pub enum IngestError {
    /// The file could not be read as ROOT/DQMIO.
    #[error("{0}")]
    Read(#[from] dials_dqmio::Error),
    /// No dataset could be derived and none was given.
    #[error("no dataset for '{0}': not a CMS logical file name (/store/...) and none given")]
    NoDataset(String),
    /// The input object is missing or unreadable.
    #[error("file not available: {0}")]
    NotAvailable(String),
    /// The object store failed (after its own retries).
    #[error("object store: {0}")]
    Store(#[from] object_store::Error),
    /// Encoding Parquet failed.
    #[error("parquet: {0}")]
    Parquet(#[from] parquet::errors::ParquetError),
    /// Building Arrow arrays failed.
    #[error("arrow: {0}")]
    Arrow(#[from] arrow::error::ArrowError),
    /// The Delta log refused or failed (a conflict with a concurrent ingest of the same file is
    /// transient: the attempt is retried).
    #[error("{0}")]
    Delta(#[from] crate::delta::DeltaError),
    /// A newer ingest attempt of the same file committed first: this one stops, changing nothing
    /// (the newer one's rows stand; nothing is recorded).
    #[error("superseded by a newer ingest of the same file: {0}")]
    Superseded(String),
    /// The decoding task died.
    #[error("decoder task: {0}")]
    Task(String),
    /// The attempt ran out of the time its invocation has (the rest is kept for recording the outcome).
    #[error("ingest did not finish within the invocation's time ({0:.0} s)")]
    OutOfTime(f64),
    /// Writing a merged object again without an earlier attempt's rows failed.
    #[error("rewriting a compacted object: {0}")]
    Rewrite(#[from] crate::compact::CompactError),
    /// A queued commit could not be sent, or a queue message is not a commit this code reads.
    #[error("commit queue: {0}")]
    Queue(String),
}

impl IngestError {
    /// DIALS file status for this error.
    pub fn status(&self) -> &'static str {
        use dials_dqmio::Error as E;
        match self {
            IngestError::Read(
                E::NotRoot(_)
                | E::Truncated { .. }
                | E::Decompress { .. }
                | E::Checksum { .. }
                | E::TooLarge { .. },
            ) => "ROOTFILE_ERROR",
            IngestError::Read(E::Io { .. } | E::Open(_)) | IngestError::NotAvailable(_) => {
                "FILE_NOT_AVAILABLE"
            }
            IngestError::Read(_) | IngestError::NoDataset(_) => "PARSING_ERROR",
            _ => "FILE_NOT_AVAILABLE",
        }
    }

    /// Transient errors are worth retrying (store throttling, 5xx, timeouts); bad files are not.
    pub fn is_transient(&self) -> bool {
        match self {
            IngestError::Store(e) => !matches!(e, object_store::Error::NotFound { .. }),
            // The async Parquet writer reports the object store's errors as `External`.
            IngestError::Parquet(parquet::errors::ParquetError::External(_)) => true,
            IngestError::Read(dials_dqmio::Error::Io { .. }) => true,
            IngestError::Task(_) | IngestError::OutOfTime(_) => true,
            IngestError::Delta(_) | IngestError::Rewrite(_) | IngestError::Queue(_) => true,
            _ => false,
        }
    }
}

/// One file to ingest.
#[derive(Debug, Clone)]
pub struct IngestRequest {
    /// Logical file name: the object key or path (`/store/...` names give the dataset).
    pub logical_file_name: String,
    /// Explicit dataset (object metadata or CLI flag); wins over the logical file name.
    pub dataset: Option<String>,
    /// When reading, decoding and encoding must have ended (the Lambda's invocation deadline, less
    /// the time kept for finishing and recording the outcome). Past it the attempt fails with
    /// [`IngestError::OutOfTime`] through the usual failure path, before committing anything; the
    /// commit itself is never cut short, so an attempt never leaves part of its objects behind.
    /// `None`: no limit.
    pub deadline: Option<std::time::Instant>,
}

/// Per-workspace outcome.
#[derive(Debug, Clone, Default, serde::Serialize, serde::Deserialize)]
pub struct WorkspaceReport {
    /// Workspace.
    pub workspace: String,
    /// `th1` rows.
    pub th1_rows: u64,
    /// `th2` rows.
    pub th2_rows: u64,
    /// Rows per data table (every table this ingest wrote rows to, `th1` and `th2` included).
    pub rows: BTreeMap<String, u64>,
    /// Objects written.
    pub objects: Vec<String>,
}

/// Summary of one ingested file.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct IngestReport {
    /// Logical file name.
    pub logical_file_name: String,
    /// Dataset.
    pub dataset: String,
    /// File id.
    pub file_id: i64,
    /// File size in bytes.
    pub file_size: u64,
    /// Runs present.
    pub runs: Vec<u32>,
    /// Lumisections present.
    pub lumisections: usize,
    /// Monitoring elements decoded (kept by at least one workspace): histograms of every kind and,
    /// unless `DIALS_INGEST_KINDS=dials`, scalars.
    pub histograms: u64,
    /// Per workspace.
    pub workspaces: Vec<WorkspaceReport>,
    /// Input bytes fetched and requests made (object stores; local files count reads).
    pub bytes_read: u64,
    /// Requests made to read the input.
    pub read_requests: u64,
    /// Wall time.
    pub seconds: f64,
    /// Of which committing: from every object written to the FINISHED record committed (the
    /// Delta commits of every table, waiting for group commits included); for a queued commit
    /// ([`Self::commit_queued`]), to its message sent.
    pub commit_seconds: f64,
    /// True when the commits were queued ([`ingest_queued`]) instead of made: the rows become
    /// visible once the commit queue's consumer has made them ([`commit_queued`]).
    #[serde(default)]
    pub commit_queued: bool,
    /// Commits this process decided again during the ingest because another writer had moved
    /// their table first (other ingests running in the same process count too).
    pub commit_retries: u64,
    /// Commits of other writers (of other files) that this process's commits went past without
    /// deciding again, during the ingest.
    pub commit_rebases: u64,
    /// Other writers' changes this process's commits carried with their own (`handover`), during
    /// the ingest.
    pub commits_carried: u64,
    /// Changes of this process committed by another writer that carried them, during the ingest.
    pub commits_handed: u64,
    /// Requests to the lake during the ingest, by kind, and of them those made while committing
    /// (other ingests running in the same process count too). Only with `DIALS_STORE_COUNT=1`
    /// (`store::instrumented`): absent otherwise.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lake_requests: Option<crate::store::Requests>,
    /// Of [`Self::lake_requests`], those made while committing.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lake_requests_committing: Option<crate::store::Requests>,
}

/// The logical file name of a path or key: from `/store/` on when present (so the same file gets
/// the same id whether it comes from a folder or a bucket), else the name as given.
pub fn logical_file_name(name: &str) -> String {
    match name.find("/store/") {
        Some(i) => name[i..].to_string(),
        None if name.starts_with("store/") => format!("/{name}"),
        None => name.to_string(),
    }
}

/// Resolves the dataset: explicit, or from the logical file name; never guessed.
pub fn resolve_dataset(req: &IngestRequest) -> Result<DatasetInfo, IngestError> {
    match &req.dataset {
        Some(d) => dataset::from_name(d).ok_or_else(|| IngestError::NoDataset(d.clone())),
        None => dataset::from_lfn(&req.logical_file_name)
            .ok_or_else(|| IngestError::NoDataset(req.logical_file_name.clone())),
    }
}

/// Writer settings for every lake table (one place). The bin lists (`data`, `sumw2`, edges: nearly
/// all the bytes) are zstd-compressed; every other column is Snappy: a reader creates one codec per
/// column chunk it opens, and parquet's zstd codec builds a compression context each time (4 % of a
/// one-lumisection query's CPU, `perf`), while the scalar columns gain little from zstd (th1: 1.6 %
/// larger files). Dictionaries on (bin contents of filled histograms repeat a lot: dictionary pages
/// halve the files), page statistics and page index on every scalar column for pruning (ls_number,
/// me_id, ...), none on the bin lists (no query prunes on a bin value; skipping them saves encoding
/// time).
pub fn writer_props() -> WriterProperties {
    let zstd = Compression::ZSTD(ZstdLevel::try_new(ZSTD_LEVEL).unwrap_or_default());
    let mut b = WriterProperties::builder()
        .set_compression(Compression::SNAPPY)
        .set_dictionary_enabled(true)
        .set_statistics_enabled(EnabledStatistics::Page)
        .set_max_row_group_row_count(Some(row_group_rows()))
        .set_data_page_row_count_limit(1024);
    for col in BIN_LIST_COLUMNS {
        b = b
            .set_column_statistics_enabled(col_path(col), EnabledStatistics::None)
            .set_column_compression(col_path(col), zstd);
    }
    b.build()
}

/// Leaf columns holding bins (and bin edges, bin labels): zstd, no statistics.
const BIN_LIST_COLUMNS: [&str; 12] = [
    "data.list.item",
    "data.list.item.list.item",
    "data.list.item.list.item.list.item",
    "sumw2.list.item",
    "bin_entries.list.item",
    "bin_sums.list.item",
    "x_edges.list.item",
    "y_edges.list.item",
    "z_edges.list.item",
    "x_labels.list.item",
    "y_labels.list.item",
    "z_labels.list.item",
];

/// Rows per row group at most (`DIALS_ROW_GROUP_ROWS` overrides). The ingest closes a row group
/// early rather than split a batch (one lumisection's rows of a table, in `Indices` order) across
/// two, so a one-lumisection query opens one row group.
const ROW_GROUP_ROWS: usize = 16 * 1024;

fn row_group_rows() -> usize {
    std::env::var("DIALS_ROW_GROUP_ROWS")
        .ok()
        .and_then(|v| v.parse().ok())
        .map_or(ROW_GROUP_ROWS, |n: usize| n.clamp(1, 1 << 20))
}

/// zstd level of the lake files: level 1 costs 10 % less ingest time than 3 for 1 % more bytes
/// (49 MB bench file, docs/benchmarks.md).
const ZSTD_LEVEL: i32 = 1;

/// A batch on its way from the decoder to the writers.
struct Routed {
    workspace: usize,
    table: DataTable,
    /// The per-run twin of `table` (lumisection 0 rows).
    per_run: bool,
    run: u32,
    batch: RecordBatch,
}

/// What the ingest loop tells a writer task.
enum WriterMsg {
    /// Rows to encode.
    Batch(RecordBatch),
    /// Close the open row group (its run is done).
    Flush,
}

/// A data object's Parquet writer, encoding on a task of its own. Its object completes only when
/// the caller closes the writer that [`WriterTask::finish_all`] hands back.
struct WriterTask {
    tx: mpsc::Sender<WriterMsg>,
    task: tokio::task::JoinHandle<Result<AsyncArrowWriter<BufWriter>, IngestError>>,
}

impl WriterTask {
    fn spawn(mut w: AsyncArrowWriter<BufWriter>) -> Self {
        let (tx, mut rx) = mpsc::channel::<WriterMsg>(2);
        let max_rows = row_group_rows();
        let task = tokio::spawn(async move {
            while let Some(m) = rx.recv().await {
                match m {
                    WriterMsg::Batch(b) => {
                        if w.in_progress_rows() > 0
                            && w.in_progress_rows() + b.num_rows() > max_rows
                        {
                            w.flush().await?;
                        }
                        w.write(&b).await?;
                        if w.in_progress_size() > ROW_GROUP_BYTES {
                            w.flush().await?;
                        }
                    }
                    WriterMsg::Flush if w.in_progress_rows() > 0 => w.flush().await?,
                    WriterMsg::Flush => {}
                }
            }
            // The last row group is encoded here, beside the other writers; closing only writes
            // the footer and completes the upload.
            if w.in_progress_rows() > 0 {
                w.flush().await?;
            }
            Ok(w)
        });
        WriterTask { tx, task }
    }

    async fn send(&self, m: WriterMsg) -> Result<(), IngestError> {
        self.tx
            .send(m)
            .await
            .map_err(|_| IngestError::Task("a lake writer stopped".into()))
    }

    /// Ends every task and returns their writers, still open; the first error if any failed.
    /// `aborted`: the caller stopped the tasks because the ingest failed elsewhere, so a stopped
    /// task is expected and not itself an error (the caller returns its own).
    async fn finish_all(
        tasks: BTreeMap<(usize, DataTable, bool, u32), WriterTask>,
        aborted: bool,
    ) -> Result<Vec<AsyncArrowWriter<BufWriter>>, IngestError> {
        let handles: Vec<_> = tasks.into_values().map(|t| t.task).collect();
        let mut out = Vec::with_capacity(handles.len());
        let mut first_err = None;
        for h in handles {
            match h.await {
                Ok(Ok(w)) => out.push(w),
                Ok(Err(e)) => {
                    first_err.get_or_insert(e);
                }
                Err(e) if aborted && e.is_cancelled() => {}
                Err(e) => {
                    first_err.get_or_insert(IngestError::Task(e.to_string()));
                }
            }
        }
        first_err.map_or(Ok(out), Err)
    }
}

/// Bounds how many ingests of this process read, decode and write at once (see
/// [`limit_concurrent_decodes`]).
static DECODE_SLOTS: std::sync::OnceLock<Arc<tokio::sync::Semaphore>> = std::sync::OnceLock::new();

/// At most `n` ingests of this process read, decode and encode at once (memory); the rest wait for
/// a slot. An ingest gives its slot back before its commits, which then wait for the tables'
/// group commits (`committer.rs`) holding almost no memory: with many small files, many commits
/// gather into few Delta transactions while the next files decode. Set once per process (later
/// calls change nothing); never set: no bound.
pub fn limit_concurrent_decodes(n: usize) {
    let _ = DECODE_SLOTS.set(Arc::new(tokio::sync::Semaphore::new(n.max(1))));
}

/// Ingests one file into `lake` for every workspace of `config` fed by its dataset.
/// `source` gives the bytes; `stats` (if any) are read for the report at the end.
/// Returns once every commit it made has finished its post-commit work too
/// (`committer::settled`), whether it succeeded or not.
pub async fn ingest(
    lake: &Location,
    config: &Workspaces,
    req: &IngestRequest,
    source: Arc<dyn ByteSource>,
    io_stats: Option<Arc<dyn Fn() -> (u64, u64) + Send + Sync>>,
) -> Result<IngestReport, IngestError> {
    ingest_queued(lake, config, req, source, io_stats, None).await
}

/// As [`ingest`]; with `queue` (and when its [`QueueWhen`] says so), the file's commits are not
/// made here but sent to `queue` as one [`QueuedCommit`] once every object is written (the STARTED
/// record and a new dataset's record are still committed here), and the report says
/// [`IngestReport::commit_queued`]. A commit too large for a queue message ([`QUEUED_BODY_MAX`])
/// is made here as without a queue.
pub async fn ingest_queued(
    lake: &Location,
    config: &Workspaces,
    req: &IngestRequest,
    source: Arc<dyn ByteSource>,
    io_stats: Option<Arc<dyn Fn() -> (u64, u64) + Send + Sync>>,
    queue: Option<&dyn CommitQueue>,
) -> Result<IngestReport, IngestError> {
    committer::settled(ingest_attempt(lake, config, req, source, io_stats, queue)).await
}

async fn ingest_attempt(
    lake: &Location,
    config: &Workspaces,
    req: &IngestRequest,
    source: Arc<dyn ByteSource>,
    io_stats: Option<Arc<dyn Fn() -> (u64, u64) + Send + Sync>>,
    queue: Option<&dyn CommitQueue>,
) -> Result<IngestReport, IngestError> {
    let t0 = Instant::now();
    let requests_before = crate::store::requests();
    let (retries_before, rebases_before) =
        (committer::races_lost_total(), committer::rebased_total());
    let (carried_before, handed_before) = (handover::carried_total(), handover::handed_total());
    let ds = resolve_dataset(req)?;
    // Until this file's changes wait for the data tables' commits, those commits hold back for it
    // (a burst's files share them instead of each making its own; see `committer::Pending`).
    let pending = committer::Pending::new();
    let dataset_id = ids::dataset_id(&ds.dataset);
    let file_id = ids::file_id(&req.logical_file_name);
    let file_size = source.len();
    let workspaces: Vec<Workspace> = config
        .for_dataset(&ds.dataset)
        .into_iter()
        .cloned()
        .collect();
    // Every object of this attempt has a name of its own: nothing an earlier ingest committed is
    // overwritten (a reader pinned to an older snapshot still reads it), and a failed attempt's
    // objects are never in any table (vacuum deletes them).
    let attempt = attempt_id();
    let part = format!("part-{file_id}-{attempt}.parquet");
    // Fenced by the source's version: of two versions of the file, the newer one's rows win, in
    // whatever order their attempts run or commit.
    let generation = attempt_generation(source.version().as_ref());
    // Two versions written in the same second tie on time: the store says which is current.
    let fence = &Fence {
        generation,
        source: Some(source.clone()),
    };
    let read_version = source.version().map(|v| QueuedSource {
        name: source.name(),
        modified_ms: v.modified_ms,
        etag: v.etag,
    });
    // The tables this file commits to are read (or followed) while it decodes, not when its
    // commits are due (`committer::prepare`).
    for ws in &workspaces {
        for table in data_and_index_tables() {
            committer::prepare(lake, &ws.name, table);
        }
        prepare_dataset(lake, &ws.name, dataset_id);
    }
    let record = FileRecord {
        dataset_id,
        dataset: &ds.dataset,
        file_id,
        file_size,
        logical_file_name: &req.logical_file_name,
        status: "STARTED",
        err_trace: None,
        objects: &[],
    };
    // The STARTED record replaces the file's earlier record (its rows stop being served until this
    // attempt ends). Committed while the file is already being read and decoded.
    let started = async {
        for ws in &workspaces {
            write_file_record(lake, &ws.name, &attempt, fence, &record).await?;
        }
        Ok::<_, IngestError>(())
    };

    // Decode on a blocking thread; batches flow to the async writers through a bounded channel, so
    // memory holds at most a few lumisections' rows plus each writer's open row group.
    let (tx, mut rx) = mpsc::channel::<Routed>(4);
    let ws_for_decoder = workspaces.clone();
    let ds_name = ds.dataset.clone();
    // Set by the write loop once it holds a decode slot.
    let mut slot: Option<tokio::sync::OwnedSemaphorePermit> = None;
    let mut decoder: Option<tokio::task::JoinHandle<Result<DecodeSummary, IngestError>>> = None;

    // One writer task per data object, so that th1 and th2 (and several runs) encode in parallel.
    let mut writers: BTreeMap<(usize, DataTable, bool, u32), WriterTask> = BTreeMap::new();
    let mut reports: Vec<WorkspaceReport> = workspaces
        .iter()
        .map(|w| WorkspaceReport {
            workspace: w.name.clone(),
            ..Default::default()
        })
        .collect();
    let write_loop = async {
        // The decode slot is waited for while the STARTED record commits: the STARTED records of
        // files queued for a slot share commits.
        if let Some(s) = DECODE_SLOTS.get() {
            slot = Some(
                s.clone()
                    .acquire_owned()
                    .await
                    .map_err(|e| IngestError::Task(e.to_string()))?,
            );
        }
        decoder = Some(tokio::task::spawn_blocking(move || {
            decode(source, &ws_for_decoder, &ds_name, dataset_id, file_id, tx)
        }));
        let mut last_run = None;
        while let Some(r) = rx.recv().await {
            // A new run: the previous runs' open row groups are complete, so hand them to the upload
            // instead of holding them to the end (memory stays flat for files with many runs).
            if last_run.is_some_and(|l| l != r.run) {
                for ((_, _, _, run), w) in writers.iter() {
                    if *run != r.run {
                        w.send(WriterMsg::Flush).await?;
                    }
                }
            }
            last_run = Some(r.run);
            let key = (r.workspace, r.table, r.per_run, r.run);
            let w = match writers.entry(key) {
                std::collections::btree_map::Entry::Occupied(e) => e.into_mut(),
                std::collections::btree_map::Entry::Vacant(v) => {
                    let table = r.table.name_for(r.per_run);
                    let path = lake.child(&[
                        &workspaces[r.workspace].name,
                        table,
                        &format!("run_number={}", r.run),
                        &part,
                    ]);
                    reports[r.workspace].objects.push(path.to_string());
                    let w = BufWriter::with_capacity(lake.store.clone(), path, UPLOAD_PART_BYTES)
                        .with_max_concurrency(UPLOAD_CONCURRENCY);
                    v.insert(WriterTask::spawn(AsyncArrowWriter::try_new(
                        w,
                        r.batch.schema(),
                        Some(writer_props()),
                    )?))
                }
            };
            let n = r.batch.num_rows() as u64;
            match (r.table, r.per_run) {
                (DataTable::Th1, false) => reports[r.workspace].th1_rows += n,
                (DataTable::Th2, false) => reports[r.workspace].th2_rows += n,
                _ => {}
            }
            *reports[r.workspace]
                .rows
                .entry(r.table.name_for(r.per_run).to_string())
                .or_default() += n;
            w.send(WriterMsg::Batch(r.batch)).await?;
        }
        Ok(())
    };
    // On an error of either, the other stops. The receiver is dropped before waiting for the
    // decoder: a decoder blocked on a full channel then gets an error instead of waiting forever.
    // The deadline bounds this loop (reading, decoding, encoding); the close and commit after it are
    // never cut short.
    let joined = async { tokio::try_join!(started, write_loop) };
    let joined = match req.deadline {
        None => joined.await,
        // The deadline first: past it, the loop does not get another poll.
        Some(deadline) => tokio::select! {
            biased;
            () = tokio::time::sleep_until(deadline.into()) => Err(IngestError::OutOfTime(t0.elapsed().as_secs_f64())),
            r = joined => r,
        },
    };
    drop(rx);
    let decoded = match decoder.take() {
        Some(decoder) if joined.is_err() => {
            // The attempt already failed (deadline, writer, STARTED record). The closed channel stops
            // the decoder at its next batch, but a read it is blocked in ends only when the read does
            // (an `ObjectSource` opened with the deadline abandons it then): wait a bounded time, then
            // leave the blocking thread behind rather than the whole attempt.
            match tokio::time::timeout(DECODER_GRACE, decoder).await {
                Ok(r) => r
                    .map_err(|e| IngestError::Task(e.to_string()))
                    .and_then(|r| r),
                Err(_) => {
                    tracing::warn!(file = %req.logical_file_name, "decoder still blocked in a read after the attempt failed; left behind");
                    Err(IngestError::Task("decoder blocked in a read".into()))
                }
            }
        }
        Some(decoder) => decoder
            .await
            .map_err(|e| IngestError::Task(e.to_string()))
            .and_then(|r| r),
        // The attempt failed before it had a decode slot (`joined` has why).
        None => Err(IngestError::Task("not decoded".into())),
    };
    // Nothing of a failed attempt is committed: its writers are stopped instead of encoding and
    // uploading their open row groups.
    let failed = joined.is_err() || decoded.is_err();
    if failed {
        writers.values().for_each(|w| w.task.abort());
    }
    // A writer's own error comes first: it is why the loop above could not hand it more rows.
    let keys: Vec<(usize, DataTable, bool, u32)> = writers.keys().copied().collect();
    let done = WriterTask::finish_all(std::mem::take(&mut writers), failed).await?;
    let ((), ()) = joined?;
    let summary = decoded?;
    // Every data object completes only now, after the whole file decoded cleanly; none is part of
    // a table before the commits below.
    let mut index_objects: Vec<(usize, &str, RecordBatch)> = Vec::new();
    for i in 0..workspaces.len() {
        index_objects.push((
            i,
            "lumisection_index",
            lumisection_batch(dataset_id, file_id, &summary.lumis[i])?,
        ));
        index_objects.push((i, "me_index", me_batch(file_id, &summary.mes[i])?));
    }
    let closes = async {
        futures::future::try_join_all(done.into_iter().map(|mut w| async move {
            let meta = w.finish().await?;
            Ok::<_, IngestError>((meta, w.bytes_written() as u64))
        }))
        .await
    };
    let wss = &workspaces;
    let part_ref = &part;
    let puts =
        futures::future::try_join_all(index_objects.iter().map(|(i, table, batch)| async move {
            put_batch(lake, &[&wss[*i].name, table, part_ref], batch).await
        }));
    let queue = queue.filter(|q| q.when() == QueueWhen::Always || handover::crowd_seen_recently());
    // Queued commits: each workspace's FINISHED record object (it names every object, the index
    // objects' names are known before they are written) and a new dataset's record are written
    // with the other objects, so that committing is one message sent.
    let finished_objects: Vec<Vec<String>> = workspaces
        .iter()
        .enumerate()
        .filter(|_| queue.is_some())
        .map(|(i, ws)| {
            let mut objects = reports[i].objects.clone();
            objects.extend(
                index_objects
                    .iter()
                    .filter(|(j, _, _)| *j == i)
                    .map(|(_, table, _)| lake.child(&[&ws.name, table, &part]).to_string()),
            );
            objects
        })
        .collect();
    let finished_puts = async {
        if queue.is_none() {
            return Ok(Vec::new());
        }
        futures::future::try_join_all(wss.iter().zip(&finished_objects).map(|(ws, objects)| {
            let (ds, attempt) = (&ds, &attempt);
            async move {
                let finished = FileRecord {
                    status: "FINISHED",
                    objects,
                    ..record
                };
                let ((), put) = tokio::try_join!(
                    ensure_dataset(lake, &ws.name, dataset_id, ds, attempt),
                    put_file_record(lake, &ws.name, attempt, &finished)
                )?;
                Ok::<_, IngestError>(put)
            }
        }))
        .await
    };
    let (closed, put, finished_records) = tokio::try_join!(closes, puts, finished_puts)?;
    // Per workspace and table: the Adds of this attempt.
    let mut adds: BTreeMap<(usize, &str), Vec<Add>> = BTreeMap::new();
    for ((ws, table, per_run, run), (meta, size)) in keys.into_iter().zip(closed) {
        let table = table.name_for(per_run);
        let rel = format!("run_number={run}/{part}");
        adds.entry((ws, table)).or_default().push(delta::add(
            rel,
            size,
            &[("run_number", run.to_string())],
            Some(&meta),
        ));
    }
    for ((i, table, _), (path, size, meta)) in index_objects.iter().zip(put) {
        reports[*i].objects.push(path);
        adds.entry((*i, table))
            .or_default()
            .push(delta::add(part.clone(), size, &[], Some(&meta)));
    }
    // Every object is written: the next file may decode while this one commits.
    drop(slot);
    drop(pending);
    commit_barrier().await;
    let t_commit = Instant::now();
    let requests_at_commit = crate::store::requests();
    let make_report = |workspaces: Vec<WorkspaceReport>, commit_queued: bool| {
        let (bytes_read, read_requests) = io_stats.as_ref().map(|f| f()).unwrap_or((0, 0));
        IngestReport {
            logical_file_name: req.logical_file_name.clone(),
            dataset: ds.dataset.clone(),
            file_id,
            file_size,
            runs: summary.runs.iter().copied().collect(),
            lumisections: summary.lumi_count,
            histograms: summary.histograms,
            workspaces,
            bytes_read,
            read_requests,
            seconds: t0.elapsed().as_secs_f64(),
            commit_seconds: t_commit.elapsed().as_secs_f64(),
            commit_queued,
            commit_retries: committer::races_lost_total().saturating_sub(retries_before) as u64,
            commit_rebases: committer::rebased_total().saturating_sub(rebases_before) as u64,
            commits_carried: handover::carried_total().saturating_sub(carried_before) as u64,
            commits_handed: handover::handed_total().saturating_sub(handed_before) as u64,
            lake_requests: counted(requests_before),
            lake_requests_committing: counted(requests_at_commit),
        }
    };
    // Queued: the file's FINISHED record objects are written (and its dataset recorded), then one
    // message carries every commit this attempt would make; the queue's consumer makes them.
    if let Some(queue) = queue {
        if reports
            .iter()
            .map(|r| &r.objects)
            .ne(finished_objects.iter())
        {
            return Err(IngestError::Queue(
                "the FINISHED record names other objects than were written".into(),
            ));
        }
        let mut queued = Vec::new();
        for (i, (ws, (name, size, meta))) in workspaces.iter().zip(finished_records).enumerate() {
            queued.push(QueuedWorkspace {
                name: ws.name.clone(),
                tables: data_and_index_tables()
                    .filter_map(|t| adds.get(&(i, t)).map(|a| (t.to_string(), a.clone())))
                    .collect(),
                finished: delta::add(name, size, &[], Some(&meta)),
            });
        }
        let message = QueuedCommit {
            dials: QUEUED_KIND.to_string(),
            file_id,
            generation,
            attempt: attempt.clone(),
            source: read_version,
            workspaces: queued,
            report: make_report(reports.clone(), true),
        };
        let body =
            serde_json::to_string(&message).map_err(|e| IngestError::Queue(e.to_string()))?;
        if body.len() <= QUEUED_BODY_MAX {
            queue
                .send(body, format!("{file_id}-{generation}-{attempt}"))
                .await
                .map_err(IngestError::Queue)?;
            return Ok(make_report(reports, true));
        }
        tracing::info!(file = %req.logical_file_name, bytes = body.len(), "commit too large for a queue message; made here");
    }
    // One Delta commit per table of each workspace (workspaces in parallel): this attempt's objects
    // in, the file's earlier objects out, under the file's transaction id; `file_index` last, so
    // FINISHED means every table has this attempt's rows.
    let commits = workspaces.iter().enumerate().map(|(i, ws)| {
        let mine: Vec<(&str, Vec<Add>)> = data_and_index_tables()
            .map(|t| (t, adds.remove(&(i, t)).unwrap_or_default()))
            .collect();
        let objects = reports[i].objects.clone();
        let ds = &ds;
        let attempt = &attempt;
        let record = &record;
        async move {
            // The tables are independent: their commits run at once (on S3 each is a few
            // requests; one after the other they were most of a small file's time to visibility).
            let tables = futures::future::try_join_all(mine.into_iter().map(|(table, a)| {
                replace_file_objects(lake, &ws.name, table, file_id, fence, a, true)
            }));
            // The FINISHED record's object is written meanwhile; it is committed last.
            let finished = FileRecord {
                status: "FINISHED",
                objects: &objects,
                ..*record
            };
            let (_, (), object) = tokio::try_join!(
                tables,
                ensure_dataset(lake, &ws.name, dataset_id, ds, attempt),
                put_file_record(lake, &ws.name, attempt, &finished)
            )?;
            commit_file_record(lake, &ws.name, fence, file_id, object).await
        }
    });
    futures::future::try_join_all(commits).await?;
    Ok(make_report(reports, false))
}

/// Benchmarks only (`bench/concurrent_ingest.py --barrier`): with `DIALS_BENCH_COMMIT_BARRIER=P`
/// set, an ingest whose objects are all written creates `P.<pid>` and waits until `P` exists
/// before it commits (at most 10 minutes). N writers then commit at the same instant with their
/// CPU idle, as N Lambda instances finishing together would, which 2 shared cores cannot show
/// otherwise (their decoding staggers them and stretches every ingest). Unset: nothing happens.
async fn commit_barrier() {
    let Some(path) = std::env::var_os("DIALS_BENCH_COMMIT_BARRIER") else {
        return;
    };
    let gate = std::path::PathBuf::from(path);
    let mut marker = gate.clone().into_os_string();
    marker.push(format!(".{}", std::process::id()));
    if let Err(e) = std::fs::write(&marker, b"") {
        tracing::warn!(error = %e, "commit barrier: marker not written; committing now");
        return;
    }
    let until = Instant::now() + std::time::Duration::from_secs(600);
    while !gate.exists() && Instant::now() < until {
        tokio::time::sleep(std::time::Duration::from_millis(2)).await;
    }
}

/// Lake requests made since `before`, when they are counted (`DIALS_STORE_COUNT`).
fn counted(before: crate::store::Requests) -> Option<crate::store::Requests> {
    let now = crate::store::requests();
    (now != crate::store::Requests::default()).then(|| now.since(before))
}

/// Records a failed file: status + error text in `file_index` of every workspace its dataset feeds
/// (the default workspace if the dataset is unknown), and no data rows (earlier rows are removed).
/// `source`: what the failed attempt opened, if it got that far. Its version fences the record (a
/// failure of an older version never replaces a newer version's rows: it ends as
/// [`IngestError::Superseded`]); on a tie with a version written in the same second the source is
/// asked whether it is still the key's current version, as an ingest's commit does.
pub async fn record_failure(
    lake: &Location,
    config: &Workspaces,
    req: &IngestRequest,
    source: Option<Arc<dyn ByteSource>>,
    file_size: u64,
    status: &str,
    message: &str,
) -> Result<(), IngestError> {
    committer::settled(record_failure_commits(
        lake, config, req, source, file_size, status, message,
    ))
    .await
}

async fn record_failure_commits(
    lake: &Location,
    config: &Workspaces,
    req: &IngestRequest,
    source: Option<Arc<dyn ByteSource>>,
    file_size: u64,
    status: &str,
    message: &str,
) -> Result<(), IngestError> {
    let (dataset, dataset_id, names) = match resolve_dataset(req) {
        Ok(ds) => {
            let id = ids::dataset_id(&ds.dataset);
            let names: Vec<String> = config
                .for_dataset(&ds.dataset)
                .iter()
                .map(|w| w.name.clone())
                .collect();
            (ds.dataset, id, names)
        }
        Err(_) => (String::new(), 0, vec![config.default.clone()]),
    };
    let file_id = ids::file_id(&req.logical_file_name);
    let attempt = attempt_id();
    let version = source.as_ref().and_then(|s| s.version());
    for name in &names {
        // Without the version (the object could not be opened), the failure takes the generation of
        // the file's last record: it replaces that record (an earlier attempt's STARTED, say)
        // instead of being superseded by it.
        let generation = match &version {
            Some(v) => delta::version_generation(v),
            None => match delta::open(lake, name, "file_index").await? {
                Some(t) => delta::file_generation(&t, file_id)
                    .await?
                    .unwrap_or_else(delta::new_generation),
                None => delta::new_generation(),
            },
        };
        // A tie with a version written in the same second: the source says whether the failed
        // version is still the key's (a source that cannot tell leaves it to the generations).
        let fence = &Fence {
            generation,
            source: version.as_ref().and(source.clone()),
        };
        // The record first: from the moment it is committed the file is no longer FINISHED, so
        // queries stop serving its rows. Then its rows leave every table; a table the store cannot
        // update now keeps them (unserved) until the file's next ingest or failure replaces them.
        let record = FileRecord {
            dataset_id,
            dataset: &dataset,
            file_id,
            file_size,
            logical_file_name: &req.logical_file_name,
            status,
            err_trace: Some(message),
            objects: &[],
        };
        write_file_record(lake, name, &attempt, fence, &record).await?;
        let removals = data_and_index_tables().map(|table| async move {
            if let Err(e) = replace_file_objects(lake, name, table, file_id, fence, Vec::new(), false).await {
                tracing::warn!(workspace = %name, table, file_id, error = %e, "rows of a failed file could not be removed now; they stay unserved (status is not FINISHED)");
            }
        });
        futures::future::join_all(removals).await;
    }
    Ok(())
}

/// The `dials` field of a [`QueuedCommit`] message.
pub const QUEUED_KIND: &str = "commit";

/// The largest queued commit sent (bytes of JSON): an SQS message holds 256 KiB.
pub const QUEUED_BODY_MAX: usize = 240 * 1024;

/// When an ingest given a [`CommitQueue`] sends its commits there (`DIALS_COMMIT_QUEUE_WHEN`).
/// Measured on LocalStack (docs/benchmarks.md, stop 31): `Always` made 10 writers that finish at
/// one instant all visible 0.39–0.41 s later, against 0.93 s with `Crowded` (the writers that had
/// seen no crowd committed themselves, racing the queue's consumer); a file alone was visible
/// 0.87 s after its upload with `Always` and ~0.54 s with `Crowded` (one queue hop less).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum QueueWhen {
    /// Every time (the default).
    Always,
    /// Only while this process has seen a crowd of writers in the last 30 s
    /// ([`handover::crowd_seen_recently`]: its STARTED record's commit, say, lost versions to at
    /// least two other processes); a file that arrives alone commits itself.
    Crowded,
}

impl QueueWhen {
    /// `DIALS_COMMIT_QUEUE_WHEN`: `crowded`, else [`QueueWhen::Always`].
    pub fn from_env() -> Self {
        match std::env::var("DIALS_COMMIT_QUEUE_WHEN")
            .as_deref()
            .map(str::trim)
        {
            Ok("crowded") => QueueWhen::Crowded,
            _ => QueueWhen::Always,
        }
    }
}

/// Where [`ingest_queued`] sends a file's commits (an SQS FIFO queue in the deployment: one
/// message group, so one consumer at a time commits, and never against another).
pub trait CommitQueue: Send + Sync + std::fmt::Debug {
    /// When ingests use this queue.
    fn when(&self) -> QueueWhen {
        QueueWhen::Always
    }
    /// Sends one message; `dedup` is the same for the same attempt's message (a FIFO queue drops
    /// a second copy sent within its deduplication interval).
    fn send<'a>(
        &'a self,
        body: String,
        dedup: String,
    ) -> futures::future::BoxFuture<'a, Result<(), String>>;
}

/// The version of the source a queued commit's ingest read (`ByteSource::version`), so that its
/// committer can ask whether it is still current (`store::KeyVersion`).
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct QueuedSource {
    /// The source's name (`s3://bucket/key`).
    pub name: String,
    /// Its modification time, ms since the epoch.
    pub modified_ms: i64,
    /// Its entity tag.
    pub etag: String,
}

impl QueuedSource {
    /// The version as a source its committer can ask whether it is still current (`None` for a
    /// name that is no `s3://` object).
    pub fn key_version(&self) -> Option<Arc<dyn ByteSource>> {
        crate::store::KeyVersion::from_name(
            &self.name,
            SourceVersion {
                modified_ms: self.modified_ms,
                etag: self.etag.clone(),
            },
        )
        .map(|k| Arc::new(k) as Arc<dyn ByteSource>)
    }
}

/// One workspace's part of a [`QueuedCommit`].
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct QueuedWorkspace {
    /// Workspace name.
    pub name: String,
    /// The attempt's objects, by table (tables without any are absent: the file's earlier objects
    /// still leave them).
    pub tables: BTreeMap<String, Vec<Add>>,
    /// The attempt's FINISHED record object in `file_index`.
    pub finished: Add,
}

/// Every commit one ingest attempt would make, as a message ([`ingest_queued`], [`commit_queued`]):
/// its objects are written, none is in any table until the message is committed.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct QueuedCommit {
    /// Always [`QUEUED_KIND`].
    pub dials: String,
    /// DQMIO file id.
    pub file_id: i64,
    /// The attempt's generation (its fence).
    pub generation: i64,
    /// The attempt's id (its objects' names).
    pub attempt: String,
    /// The source version read, when it has one.
    pub source: Option<QueuedSource>,
    /// Per workspace fed by the file.
    pub workspaces: Vec<QueuedWorkspace>,
    /// The ingest's report (for the after-ingest hook and the log, once committed).
    pub report: IngestReport,
}

/// Makes the commits of a [`QueuedCommit`] exactly as its ingest would have: in each workspace
/// every table's (the file's earlier objects out, the attempt's in, fenced by its generation), then
/// the FINISHED record last. Idempotent: a message committed again finds its objects in at its
/// generation and changes nothing; an attempt superseded by a newer version of the file ends as
/// [`IngestError::Superseded`], as its ingest would have. Commits of several messages (a queue
/// batch run at once, each with a [`committer::Pending`] guard made before any starts) share one
/// Delta transaction per table.
pub async fn commit_queued(
    lake: &Location,
    message: &QueuedCommit,
    pending: Option<committer::Pending>,
) -> Result<(), IngestError> {
    committer::settled(commit_queued_inner(lake, message, pending)).await
}

async fn commit_queued_inner(
    lake: &Location,
    message: &QueuedCommit,
    pending: Option<committer::Pending>,
) -> Result<(), IngestError> {
    if message.dials != QUEUED_KIND {
        return Err(IngestError::Queue(format!(
            "not a queued commit: {}",
            message.dials
        )));
    }
    let source = message.source.as_ref().and_then(QueuedSource::key_version);
    let fence = &Fence {
        generation: message.generation,
        source,
    };
    let file_id = message.file_id;
    let commits: Vec<_> = message
        .workspaces
        .iter()
        .map(|ws| async move {
            let tables = futures::future::try_join_all(data_and_index_tables().map(|table| {
                let adds = ws.tables.get(table).cloned().unwrap_or_default();
                replace_file_objects(lake, &ws.name, table, file_id, fence, adds, true)
            }));
            tables.await?;
            replace_file_objects(
                lake,
                &ws.name,
                "file_index",
                file_id,
                fence,
                vec![ws.finished.clone()],
                false,
            )
            .await
        })
        .collect();
    // Every table's change of this message is queued at the first poll below: the batch's data
    // commits may go once no other message of it is pending.
    let all = futures::future::try_join_all(commits);
    futures::pin_mut!(all);
    let first = futures::poll!(all.as_mut());
    drop(pending);
    match first {
        std::task::Poll::Ready(r) => r.map(|_| ()),
        std::task::Poll::Pending => all.await.map(|_| ()),
    }
}

/// The tables an ingest replaces a file's objects in, before `dataset_index` and `file_index`:
/// every data table, then the per-file indexes.
fn data_and_index_tables() -> impl Iterator<Item = &'static str> {
    DataTable::all_names().chain(["lumisection_index", "me_index"])
}

/// Rows per data table ([`DataTable::index`] order).
type Counts = [i64; DataTable::ALL.len()];

/// What an ingest keeps: every kind, per lumisection and per run (the default), or only what DIALS
/// kept (`DIALS_INGEST_KINDS=dials`: TH1x/TH2x per lumisection; for comparisons, docs/benchmarks.md).
fn kept_kinds() -> (Vec<MeKind>, bool) {
    match std::env::var("DIALS_INGEST_KINDS").as_deref() {
        Ok("dials") => (MeKind::DIALS_HISTOGRAMS.to_vec(), true),
        _ => (MeKind::ALL.to_vec(), false),
    }
}

struct DecodeSummary {
    runs: BTreeSet<u32>,
    lumi_count: usize,
    histograms: u64,
    /// Per workspace: (run, ls) → rows per data table (per-lumisection rows only).
    lumis: Vec<BTreeMap<(u32, u32), Counts>>,
    /// Per workspace: me → (dim, kind, count).
    mes: Vec<BTreeMap<String, (u8, MeKind, i64)>>,
}

fn decode(
    source: Arc<dyn ByteSource>,
    workspaces: &[Workspace],
    dataset: &str,
    dataset_id: i64,
    file_id: i64,
    tx: mpsc::Sender<Routed>,
) -> Result<DecodeSummary, IngestError> {
    let dq = DqmioFile::open(source)?;
    let (kinds, skip_per_run) = kept_kinds();
    // Union of what the workspaces keep: names no workspace wants are never decoded or fetched.
    // Indices order (reads close together: fewer, larger requests) while baskets are small; from a
    // kind's first multi-MB basket on, tree by tree (one kind's large basket in memory at a time).
    // `DIALS_READ_ORDER` (index | tree | auto) overrides the choice.
    let order = match std::env::var("DIALS_READ_ORDER").as_deref() {
        Ok("index") => Order::Index,
        Ok("tree") => Order::Tree,
        _ => Order::Auto,
    };
    let sel = Selection {
        kinds: Some(kinds),
        skip_per_run,
        order,
        ..Default::default()
    };
    let mut summary = DecodeSummary {
        runs: BTreeSet::new(),
        lumi_count: 0,
        histograms: 0,
        lumis: vec![BTreeMap::new(); workspaces.len()],
        mes: vec![BTreeMap::new(); workspaces.len()],
    };
    let mut all_lumis = BTreeSet::new();
    for row in dq.indices() {
        if row.lumi != 0 {
            all_lumis.insert((row.run, row.lumi));
            for l in summary.lumis.iter_mut() {
                l.entry((row.run, row.lumi)).or_default();
            }
        }
    }
    summary.runs = all_lumis.iter().map(|(r, _)| *r).collect();
    summary.lumi_count = all_lumis.len();

    // Per (run, lumisection, family): rows kept so far, which numbers the next one (`seq`, the key's
    // tie-breaker). th1 and th2 share one counter (as before the other tables existed); every other
    // table has its own. A few bytes per lumisection of the file.
    let mut seqs: BTreeMap<(u32, u32, usize), i64> = BTreeMap::new();
    // Rows of the current lumisection, per (workspace, table); flushed sorted by ME name.
    let mut pending: BTreeMap<(usize, DataTable), Vec<MeRow>> = BTreeMap::new();
    let mut current: Option<(u32, u32)> = None;
    let flush = |pending: &mut BTreeMap<(usize, DataTable), Vec<MeRow>>,
                 run: u32|
     -> Result<(), IngestError> {
        for ((wi, table), mut rows) in std::mem::take(pending) {
            rows.sort_by(|a, b| a.me.cmp(&b.me));
            let batch = tables::rows_batch(table, dataset, &rows)?;
            let per_run = rows.first().is_some_and(|r| r.ls_number == 0);
            tx.blocking_send(Routed {
                workspace: wi,
                table,
                per_run,
                run,
                batch,
            })
            .map_err(|_| IngestError::Task("writer stopped".into()))?;
        }
        Ok(())
    };
    let wants_any = |name: &str| workspaces.iter().any(|w| w.wants_me(name));
    // No name filter at all (e.g. only the default workspace): skip the names-only pass.
    let keeps_all = workspaces
        .iter()
        .any(|w| w.me_prefixes.is_empty() && w.me_names.is_empty());
    let keep: Option<&dyn Fn(&str) -> bool> = if keeps_all { None } else { Some(&wants_any) };
    let mut err = None;
    let res = dq.for_each_filtered(&sel, keep, |me| {
        if current != Some((me.run, me.lumi)) {
            // The ingest failed on the writing side: stop reading now, not at the next send.
            if tx.is_closed() {
                err = Some(IngestError::Task("writer stopped".into()));
                return Err(dials_dqmio::Error::Unsupported("stopped".into()));
            }
            if let Some((run, _)) = current {
                if let Err(e) = flush(&mut pending, run) {
                    err = Some(e);
                    return Err(dials_dqmio::Error::Unsupported("stopped".into()));
                }
            }
            current = Some((me.run, me.lumi));
        }
        let table = DataTable::of(me.kind);
        let dim = me.kind.dim();
        summary.histograms += 1;
        let me_id = ids::me_id(&me.name);
        let family = match table {
            DataTable::Th1 | DataTable::Th2 => 0,
            t => t.index(),
        };
        let next = seqs.entry((me.run, me.lumi, family)).or_insert(0);
        let seq = *next;
        *next += 1;
        let mut value = Some(me.value);
        // Each workspace's filter is tested once; peeking ahead tells which one is the last taker.
        let mut wanting = workspaces
            .iter()
            .enumerate()
            .filter(|(_, w)| w.wants_me(&me.name))
            .map(|(i, _)| i)
            .peekable();
        while let Some(wi) = wanting.next() {
            if me.lumi != 0 {
                summary.lumis[wi].entry((me.run, me.lumi)).or_default()[table.index()] += 1;
            }
            match summary.mes[wi].get_mut(&me.name) {
                Some(m) => m.2 += 1,
                None => {
                    summary.mes[wi].insert(me.name.clone(), (dim, me.kind, 1));
                }
            }
            // The last workspace takes the value; earlier ones get copies.
            let v = if wanting.peek().is_none() {
                value.take()
            } else {
                value.clone()
            };
            let Some(v) = v else { continue };
            pending.entry((wi, table)).or_default().push(MeRow {
                dataset_id,
                file_id,
                ls_number: i64::from(me.lumi),
                me_id,
                seq,
                me: me.name.clone(),
                kind: me.kind,
                flags: me.flags,
                value: v,
            });
        }
        Ok(())
    });
    if let Some(e) = err {
        return Err(e);
    }
    res?;
    if let Some((run, _)) = current {
        flush(&mut pending, run)?;
    }
    Ok(summary)
}

/// What an attempt's commits are fenced by: its generation, and its source (which tells, when
/// asked, whether its version is still the key's current one).
struct Fence {
    generation: i64,
    source: Option<Arc<dyn ByteSource>>,
}

/// An attempt's generation: its source version's ([`delta::version_generation`]) when known, else
/// its start time ([`delta::new_generation`]).
fn attempt_generation(version: Option<&SourceVersion>) -> i64 {
    version.map_or_else(delta::new_generation, delta::version_generation)
}

/// A fresh attempt id: 16 hex digits.
fn attempt_id() -> String {
    format!("{:016x}", uuid::Uuid::new_v4().as_u128() as u64)
}

/// Writes one small Parquet object; returns its key, size and footer.
async fn put_batch(
    lake: &Location,
    parts: &[&str],
    batch: &RecordBatch,
) -> Result<(String, u64, ParquetMetaData), IngestError> {
    let mut buf = Vec::new();
    let mut w = ArrowWriter::try_new(&mut buf, batch.schema(), Some(writer_props()))?;
    w.write(batch)?;
    let meta = w.close()?;
    let size = buf.len() as u64;
    let path = lake.child(parts);
    lake.store.put(&path, PutPayload::from(buf)).await?;
    Ok((path.to_string(), size, meta))
}

/// `ws`'s `table` gets `adds` and loses every other object of DQMIO file `file_id`, under the
/// file's application transaction id with this attempt's `generation` (through the table's group
/// committer: concurrent ingests' changes to one table share one Delta commit, `committer.rs`).
/// Nothing is committed when there is nothing to add or remove. An attempt older than the file's
/// last commit to the table is superseded (its rows never replace a newer version's).
/// `with_pending`: the commit waits for this process's pending files (`committer::Pending`).
async fn replace_file_objects(
    lake: &Location,
    ws: &str,
    table: &str,
    file_id: i64,
    fence: &Fence,
    adds: Vec<Add>,
    with_pending: bool,
) -> Result<(), IngestError> {
    let intent = committer::Intent {
        file_id,
        generation: fence.generation,
        adds,
        source: fence.source.clone(),
    };
    if with_pending {
        committer::submit_with_pending(lake, ws, table, intent).await
    } else {
        committer::submit(lake, ws, table, intent).await
    }
}

/// Datasets known to be recorded in a workspace's `dataset_index` (a dataset once recorded stays
/// recorded: a process asks the log once per dataset).
static KNOWN_DATASETS: std::sync::LazyLock<std::sync::Mutex<std::collections::HashSet<String>>> =
    std::sync::LazyLock::new(Default::default);

fn dataset_key(lake: &Location, ws: &str, dataset_id: i64) -> String {
    format!("{}\u{0}{ws}\u{0}{dataset_id}", lake.url)
}

fn dataset_known(key: &str) -> bool {
    KNOWN_DATASETS.lock().is_ok_and(|k| k.contains(key))
}

fn dataset_recorded(key: String) {
    if let Ok(mut k) = KNOWN_DATASETS.lock() {
        k.insert(key);
    }
}

/// Looks in the background, while the file decodes, whether `ws`'s `dataset_index` already has the
/// dataset (then [`ensure_dataset`] has nothing left to ask at commit time).
fn prepare_dataset(lake: &Location, ws: &str, dataset_id: i64) {
    let key = dataset_key(lake, ws, dataset_id);
    if dataset_known(&key) {
        return;
    }
    let (lake, ws) = (lake.clone(), ws.to_string());
    committer::spawn_settled(async move {
        match delta::open(&lake, &ws, "dataset_index").await {
            Ok(Some(t)) => {
                if has_dataset(&t, dataset_id).unwrap_or(false) {
                    dataset_recorded(key);
                }
            }
            Ok(None) => {}
            Err(e) => tracing::debug!(ws, error = %e, "dataset_index not read ahead"),
        }
    });
}

/// Whether `dataset_index` table `t` has the dataset's row.
fn has_dataset(t: &deltalake_core::DeltaTable, dataset_id: i64) -> Result<bool, IngestError> {
    Ok(delta::active_files(t)?
        .iter()
        .any(|f| delta::belongs_to(delta::object_name(&f.path), dataset_id)))
}

/// The dataset's row in `ws`'s `dataset_index`, added by the first file of the dataset.
async fn ensure_dataset(
    lake: &Location,
    ws: &str,
    dataset_id: i64,
    ds: &DatasetInfo,
    attempt: &str,
) -> Result<(), IngestError> {
    let key = dataset_key(lake, ws, dataset_id);
    if dataset_known(&key) {
        return Ok(());
    }
    ensure_dataset_in_log(lake, ws, dataset_id, ds, attempt).await?;
    dataset_recorded(key);
    Ok(())
}

async fn ensure_dataset_in_log(
    lake: &Location,
    ws: &str,
    dataset_id: i64,
    ds: &DatasetInfo,
    attempt: &str,
) -> Result<(), IngestError> {
    let mut written = None;
    let mut tries = 0;
    loop {
        tries += 1;
        let mut t = delta::open_or_create(lake, ws, "dataset_index").await?;
        if has_dataset(&t, dataset_id)? {
            return Ok(());
        }
        let (name, size, meta) = match written.take() {
            Some(w) => w,
            None => {
                let name = format!("part-{dataset_id}-{attempt}.parquet");
                let (_, size, meta) = put_batch(
                    lake,
                    &[ws, "dataset_index", &name],
                    &dataset_batch(dataset_id, ds)?,
                )
                .await?;
                (name, size, meta)
            }
        };
        let txn = deltalake_core::kernel::Transaction::new_with_last_update(
            format!("dials.dataset.{dataset_id}"),
            1,
            Some(delta::now_ms()),
        );
        match delta::commit(
            &mut t,
            vec![Action::Add(delta::add(
                name.clone(),
                size,
                &[],
                Some(&meta),
            ))],
            Some(txn),
            &[],
        )
        .await
        {
            Ok(_) => return Ok(()),
            // A concurrent commit got in the way (the table's creation by another first file, say,
            // or the same dataset added by it): look again.
            Err(e) if e.is_conflict() && tries < 10 => written = Some((name, size, meta)),
            Err(e) => return Err(e.into()),
        }
    }
}

/// Commits `r` as the file's only record in `workspace`'s `file_index`.
async fn write_file_record(
    lake: &Location,
    workspace: &str,
    attempt: &str,
    fence: &Fence,
    r: &FileRecord<'_>,
) -> Result<(), IngestError> {
    let object = put_file_record(lake, workspace, attempt, r).await?;
    commit_file_record(lake, workspace, fence, r.file_id, object).await
}

/// Writes `r`'s object into `workspace`'s `file_index` folder (not yet part of the table):
/// returns its name, size and footer.
async fn put_file_record(
    lake: &Location,
    workspace: &str,
    attempt: &str,
    r: &FileRecord<'_>,
) -> Result<(String, u64, ParquetMetaData), IngestError> {
    let suffix = if r.status == "STARTED" {
        "-started"
    } else {
        ""
    };
    let name = format!("part-{}-{attempt}{suffix}.parquet", r.file_id);
    let (_, size, meta) = put_batch(
        lake,
        &[workspace, "file_index", &name],
        &tables::file_batch(r)?,
    )
    .await?;
    Ok((name, size, meta))
}

/// Commits a record object of [`put_file_record`] as file `file_id`'s only record.
async fn commit_file_record(
    lake: &Location,
    workspace: &str,
    fence: &Fence,
    file_id: i64,
    (name, size, meta): (String, u64, ParquetMetaData),
) -> Result<(), IngestError> {
    replace_file_objects(
        lake,
        workspace,
        "file_index",
        file_id,
        fence,
        vec![delta::add(name, size, &[], Some(&meta))],
        // Never held back for pending files: a pending file's own STARTED record is one.
        false,
    )
    .await
}

fn lumisection_batch(
    dataset_id: i64,
    file_id: i64,
    lumis: &BTreeMap<(u32, u32), Counts>,
) -> Result<RecordBatch, IngestError> {
    let col = |f: &dyn Fn(&(u32, u32), &Counts) -> i64| -> ArrayRef {
        Arc::new(Int64Array::from(
            lumis.iter().map(|(k, v)| f(k, v)).collect::<Vec<_>>(),
        ))
    };
    Ok(RecordBatch::try_new(
        tables::lumisection_schema(),
        vec![
            col(&|_, _| dataset_id),
            col(&|_, _| file_id),
            col(&|k, _| i64::from(k.0)),
            col(&|k, _| i64::from(k.1)),
            col(&|_, v| v[DataTable::Th1.index()]),
            col(&|_, v| v[DataTable::Th2.index()]),
            col(&|_, v| v[DataTable::Th3.index()]),
            col(&|_, v| v[DataTable::Profile1d.index()]),
            col(&|_, v| v[DataTable::Profile2d.index()]),
            col(&|_, v| v[DataTable::Scalar.index()]),
        ],
    )?)
}

fn me_batch(
    file_id: i64,
    mes: &BTreeMap<String, (u8, MeKind, i64)>,
) -> Result<RecordBatch, IngestError> {
    let schema: SchemaRef = tables::me_schema();
    Ok(RecordBatch::try_new(
        schema,
        vec![
            Arc::new(Int64Array::from(
                mes.keys().map(|m| ids::me_id(m)).collect::<Vec<_>>(),
            )),
            Arc::new(StringArray::from(mes.keys().cloned().collect::<Vec<_>>())),
            Arc::new(Int64Array::from(
                mes.values().map(|v| i64::from(v.0)).collect::<Vec<_>>(),
            )),
            Arc::new(StringArray::from(
                mes.values().map(|v| v.1.as_str()).collect::<Vec<_>>(),
            )),
            Arc::new(Int64Array::from(
                mes.values().map(|v| v.2).collect::<Vec<_>>(),
            )),
            Arc::new(Int64Array::from(vec![file_id; mes.len()])),
        ],
    )?)
}

fn dataset_batch(dataset_id: i64, ds: &DatasetInfo) -> Result<RecordBatch, IngestError> {
    let s = |v: &str| Arc::new(StringArray::from(vec![v.to_string()])) as ArrayRef;
    let i = |v: i64| Arc::new(Int64Array::from(vec![v])) as ArrayRef;
    Ok(RecordBatch::try_new(
        tables::dataset_schema(),
        vec![
            i(dataset_id),
            s(&ds.dataset),
            s(&ds.era),
            s(&ds.data_tier),
            s(&ds.primary_ds_name),
            s(&ds.processed_ds_name),
            i(ds.processing_version),
            s(&tables::now_rfc3339()),
        ],
    )?)
}

/// Lists the objects under a location (used by tests and `dials` to show the lake).
pub async fn list(lake: &Location, prefix: &[&str]) -> Result<Vec<String>, IngestError> {
    let p = lake.child(prefix);
    let items: Vec<_> = lake.store.list(Some(&p)).try_collect().await?;
    Ok(items.into_iter().map(|m| m.location.to_string()).collect())
}

/// The store of a location, for callers that need raw access.
pub fn store(lake: &Location) -> Arc<dyn ObjectStore> {
    lake.store.clone()
}

/// A dotted column path as parquet wants it (one part per level: `ColumnPath::from("a.b")` is a
/// single part named "a.b" and silently matches nothing).
fn col_path(dotted: &str) -> ColumnPath {
    ColumnPath::new(dotted.split('.').map(str::to_string).collect())
}

/// The deployment's commit queue: an SQS FIFO queue with one message group, so that one consumer
/// at a time makes the commits (`DIALS_COMMIT_QUEUE_URL`, sam-template.yaml; `dials worker
/// --commit-queue-url` locally).
#[derive(Debug, Clone)]
pub struct SqsCommitQueue {
    client: aws_sdk_sqs::Client,
    url: String,
    when: QueueWhen,
}

/// The one message group of a commit queue: every commit of the lake goes through one consumer.
pub const COMMIT_GROUP: &str = "dials-commits";

impl SqsCommitQueue {
    /// Sends to the FIFO queue at `url`, when `DIALS_COMMIT_QUEUE_WHEN` says ([`QueueWhen`]).
    pub fn new(client: aws_sdk_sqs::Client, url: String) -> Self {
        SqsCommitQueue {
            client,
            url,
            when: QueueWhen::from_env(),
        }
    }
}

impl CommitQueue for SqsCommitQueue {
    fn when(&self) -> QueueWhen {
        self.when
    }

    fn send<'a>(
        &'a self,
        body: String,
        dedup: String,
    ) -> futures::future::BoxFuture<'a, Result<(), String>> {
        Box::pin(async move {
            self.client
                .send_message()
                .queue_url(&self.url)
                .message_body(body)
                .message_group_id(COMMIT_GROUP)
                .message_deduplication_id(dedup)
                .send()
                .await
                .map(|_| ())
                .map_err(|e| {
                    format!(
                        "send to {}: {}",
                        self.url,
                        aws_sdk_sqs::error::DisplayErrorContext(&e)
                    )
                })
        })
    }
}
