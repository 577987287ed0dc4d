//! `dials ingest`: DQMIO files (local or s3://) into a lake (folder or s3://), with the same code the
//! ingest function runs.

use std::io::IsTerminal;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use dials_dqmio::{ByteSource, LocalFile};
use dials_lake::ingest::IngestReport;
use dials_lake::{IngestError, IngestRequest, Location, ObjectSource, Workspaces};
use futures::StreamExt;

use crate::CliError;

/// Options of `dials ingest`.
pub struct Args {
    /// Files, folders (searched for *.root) or s3:// URLs.
    pub inputs: Vec<String>,
    /// Lake location.
    pub lake: String,
    /// Workspaces config (local path or s3:// URL).
    pub workspaces: Option<String>,
    /// Explicit dataset for files whose names are not CMS logical file names.
    pub dataset: Option<String>,
    /// Files ingested at once.
    pub concurrency: usize,
    /// Compact the lake each time this many more files are ingested (0: never).
    pub compact_every: usize,
}

/// Loads the workspaces config; none → the default workspace.
pub async fn load_workspaces(spec: Option<&str>) -> Result<Workspaces, CliError> {
    match spec {
        None => Ok(Workspaces::default()),
        Some(s) => dials_lake::config::load(s)
            .await
            .map_err(|e| CliError::Usage(e.to_string())),
    }
}

/// Every `*.root` file under `dir` (recursively), sorted.
pub fn root_files(dir: &std::path::Path) -> std::io::Result<Vec<PathBuf>> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d)?.flatten() {
            let q = e.path();
            if q.is_dir() {
                stack.push(q);
            } else if q.extension().is_some_and(|x| x == "root") {
                out.push(q);
            }
        }
    }
    out.sort();
    Ok(out)
}

fn expand(inputs: &[String]) -> Result<Vec<String>, CliError> {
    let mut out = Vec::new();
    for i in inputs {
        let p = PathBuf::from(i);
        if !i.starts_with("s3://") && p.is_dir() {
            let files = root_files(&p).map_err(|e| CliError::Usage(format!("{i}: {e}")))?;
            out.extend(files.into_iter().map(|f| f.display().to_string()));
        } else {
            out.push(i.clone());
        }
    }
    out.sort();
    Ok(out)
}

/// Opens an input as a byte source, with a closure reporting (bytes, requests) read.
pub async fn open_input(
    input: &str,
) -> Result<
    (
        Arc<dyn ByteSource>,
        Arc<dyn Fn() -> (u64, u64) + Send + Sync>,
    ),
    IngestError,
> {
    if let Some(rest) = input.strip_prefix("s3://") {
        let (bucket, key) = rest
            .split_once('/')
            .ok_or_else(|| IngestError::NotAvailable(format!("{input}: no key")))?;
        let store = dials_lake::store::s3_store(bucket)
            .map_err(|e| IngestError::NotAvailable(e.to_string()))?;
        let src = Arc::new(
            ObjectSource::open(
                store,
                object_store::path::Path::from(key),
                input.to_string(),
            )
            .await
            .map_err(|e| match e {
                object_store::Error::NotFound { .. } => {
                    IngestError::NotAvailable(format!("{input}: not found"))
                }
                other => IngestError::Store(other),
            })?,
        );
        let s2 = src.clone();
        return Ok((
            src,
            Arc::new(move || (s2.stats().bytes(), s2.stats().requests())),
        ));
    }
    let src = Arc::new(
        LocalFile::open(input).map_err(|e| IngestError::NotAvailable(format!("{input}: {e}")))?,
    );
    let s2 = src.clone();
    Ok((
        src,
        Arc::new(move || (s2.stats().bytes(), s2.stats().requests())),
    ))
}

/// Inputs being ingested, for the terminal progress line: name, size, (bytes, requests) read so far.
#[derive(Clone, Default)]
pub struct InFlight(Arc<Mutex<Vec<(String, u64, Stats)>>>);

type Stats = Arc<dyn Fn() -> (u64, u64) + Send + Sync>;

impl InFlight {
    fn add(&self, name: &str, size: u64, stats: Stats) {
        if let Ok(mut v) = self.0.lock() {
            v.push((name.to_string(), size, stats));
        }
    }

    fn remove(&self, name: &str) {
        if let Ok(mut v) = self.0.lock() {
            v.retain(|(n, _, _)| n != name);
        }
    }

    /// One line: every file in flight with the share of its bytes read so far and the read rate.
    fn line(&self, since: Instant) -> Option<String> {
        let v = self.0.lock().ok()?;
        if v.is_empty() {
            return None;
        }
        let secs = since.elapsed().as_secs_f64().max(1e-3);
        let mut total = 0u64;
        let parts: Vec<String> = v
            .iter()
            .map(|(name, size, stats)| {
                let (read, _) = stats();
                total += read;
                let short = name.rsplit('/').next().unwrap_or(name);
                format!(
                    "{short} {:.0} % of {:.0} MB",
                    100.0 * read as f64 / (*size).max(1) as f64,
                    *size as f64 / 1e6
                )
            })
            .collect();
        Some(format!(
            "  reading: {} ({:.1} MB/s)",
            parts.join(", "),
            total as f64 / 1e6 / secs
        ))
    }
}

/// A failed ingest and what the lake says about it.
#[derive(Debug)]
pub struct Failure {
    /// Why it failed.
    pub error: IngestError,
    /// True when the failure's status is recorded in `file_index` (permanent failures); false for
    /// transient ones (nothing recorded: run again) and when recording itself failed.
    pub recorded: bool,
}

impl Failure {
    /// The file status, as `file_index` would show it.
    pub fn status(&self) -> &'static str {
        self.error.status()
    }

    /// What a person should know about the lake after this failure.
    pub fn outcome(&self) -> &'static str {
        match (self.recorded, self.error.is_transient()) {
            (true, _) => "status recorded in file_index",
            (false, true) => "transient failure, no status recorded: run again",
            (false, false) => "the failure could not be recorded in file_index",
        }
    }
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} ({})", self.error, self.outcome())
    }
}

/// With `DIALS_COMMIT_QUEUE_URL` set, the FIFO queue ingests send their commits to, as the ingest
/// function does (a `dials worker --queue-url` of that queue makes them); `None` otherwise.
async fn commit_queue() -> Option<&'static dyn dials_lake::ingest::CommitQueue> {
    static QUEUE: tokio::sync::OnceCell<Option<dials_lake::ingest::SqsCommitQueue>> =
        tokio::sync::OnceCell::const_new();
    QUEUE
        .get_or_init(|| async {
            let url = std::env::var("DIALS_COMMIT_QUEUE_URL")
                .ok()
                .filter(|u| !u.trim().is_empty())?;
            let conf = aws_config::load_defaults(aws_config::BehaviorVersion::latest()).await;
            Some(dials_lake::ingest::SqsCommitQueue::new(
                aws_sdk_sqs::Client::new(&conf),
                url.trim().to_string(),
            ))
        })
        .await
        .as_ref()
        .map(|q| q as &dyn dials_lake::ingest::CommitQueue)
}

/// Models loaded by this process (each ONNX file is loaded once).
fn ml_models() -> &'static dials_ml::registry::ModelCache {
    static CACHE: std::sync::OnceLock<dials_ml::registry::ModelCache> = std::sync::OnceLock::new();
    CACHE.get_or_init(Default::default)
}

/// Ingests one input, recording a permanent failure in the lake. Returns the report or the failure
/// (with whether it was recorded). `name` is the file's name for identity (its key, or its path
/// relative to an inbox); `progress` (terminal runs) sees the bytes read while the file is decoded.
pub async fn ingest_one(
    lake: &Location,
    ws: &Workspaces,
    input: &str,
    name: &str,
    dataset: Option<String>,
    progress: Option<&InFlight>,
) -> Result<IngestReport, Failure> {
    let lfn = dials_lake::ingest::logical_file_name(name);
    // An explicit dataset applies only to files whose names do not carry one.
    let dataset = if dials_lake::dataset::from_lfn(&lfn).is_some() {
        None
    } else {
        dataset
    };
    let req = IngestRequest {
        logical_file_name: lfn,
        dataset,
        deadline: None,
    };
    let opened = open_input(input).await;
    let mut source = None;
    let result = match opened {
        Ok((src, stats)) => {
            source = Some(src.clone());
            if let Some(p) = progress {
                p.add(input, src.len(), stats.clone());
            }
            let queue = commit_queue().await;
            let r = dials_lake::ingest_queued(lake, ws, &req, src, Some(stats), queue).await;
            if let Some(p) = progress {
                p.remove(input);
            }
            r
        }
        Err(e) => Err(e),
    };
    match result {
        // Committed by the commit queue's consumer, which also runs the models.
        Ok(rep) if rep.commit_queued => Ok(rep),
        Ok(rep) => {
            // Issue 11: active models score the file's lumisections (never fails the ingest).
            let t = Instant::now();
            let scored = dials_ml::hook::after_ingest(lake, &rep, ml_models()).await;
            for (w, model, st) in &scored {
                tracing::info!(workspace = %w, model, run = st.run_number, status = %st.status, scored = st.scored, error = ?st.error, "ML scoring");
            }
            if !scored.is_empty() {
                tracing::info!(input, seconds = t.elapsed().as_secs_f64(), "ML hook done");
            }
            Ok(rep)
        }
        Err(error) if error.is_transient() => Err(Failure {
            error,
            recorded: false,
        }),
        Err(error) => {
            let size = std::fs::metadata(input).map(|m| m.len()).unwrap_or(0);
            let recorded = match dials_lake::record_failure(
                lake,
                ws,
                &req,
                source,
                size,
                error.status(),
                &error.to_string(),
            )
            .await
            {
                Ok(()) => true,
                Err(IngestError::Superseded(why)) => {
                    tracing::info!(input, reason = %why, "a newer version of the file is in the lake: this failure is not recorded over it");
                    false
                }
                Err(e2) => {
                    tracing::error!(input, error = %e2, "could not record the failure");
                    false
                }
            };
            Err(Failure { error, recorded })
        }
    }
}

/// Files in flight per decode slot of `dials ingest --concurrency`: the others wait for their
/// commits (group commit, `dials_lake::committer`).
const COMMITTING_PER_DECODE: usize = 8;

/// Files in flight: [`COMMITTING_PER_DECODE`] per decode slot (`DIALS_INGEST_IN_FLIGHT` overrides;
/// equal to `--concurrency` it is the behaviour before group commit, for comparisons).
fn files_in_flight(concurrency: usize) -> usize {
    std::env::var("DIALS_INGEST_IN_FLIGHT")
        .ok()
        .and_then(|v| v.trim().parse().ok())
        .filter(|n: &usize| *n > 0)
        .unwrap_or(concurrency * COMMITTING_PER_DECODE)
        .max(concurrency)
}

/// One compaction while `dials ingest` goes on, after `done` files: in a `dials compact` child
/// process, so that what it allocates (tables' snapshots, merged row groups) goes back to the
/// system when it exits. Run in this process, it left ~80–90 KB per ingested file in glibc's arenas
/// (4,000 small files: 384–580 MB peak RSS against 220–240 MB without it; docs/benchmarks.md,
/// stop 30). In this process only when the child cannot be started.
async fn compact_along(
    lake: &Location,
    names: &[String],
    lake_arg: &str,
    workspaces: Option<&str>,
    done: usize,
) {
    let t = Instant::now();
    let child = std::env::current_exe().map(|exe| {
        let mut cmd = std::process::Command::new(exe);
        cmd.args(["compact", "--lake", lake_arg]);
        if let Some(w) = workspaces {
            cmd.args(["--workspaces", w]);
        }
        cmd.stdin(std::process::Stdio::null());
        cmd
    });
    let ran = match child {
        Ok(mut cmd) => tokio::task::spawn_blocking(move || cmd.output())
            .await
            .map_err(|e| std::io::Error::other(e.to_string()))
            .and_then(|r| r),
        Err(e) => Err(e),
    };
    let tables: Vec<dials_lake::compact::TableCompaction> = match ran {
        Ok(out) if out.status.success() => String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect(),
        Ok(out) => {
            let err = String::from_utf8_lossy(&out.stderr);
            let tail: Vec<&str> = err.lines().rev().take(3).collect();
            tracing::warn!(status = %out.status, error = ?tail, "compaction while ingesting failed; the ingest goes on (run `dials compact`)");
            return;
        }
        Err(e) => {
            tracing::warn!(error = %e, "no `dials compact` process; compacting in this one");
            let r = crate::compact::compact_all(lake, names, Default::default()).await;
            // What it allocated would otherwise stay in glibc's arenas.
            dials_malloc::release_free();
            match r {
                Ok(t) => t,
                Err(e) => {
                    tracing::warn!(error = %e, "compaction while ingesting failed; the ingest goes on (run `dials compact`)");
                    return;
                }
            }
        }
    };
    tracing::info!(
        after_files = done,
        merged = tables.iter().map(|t| t.inputs).sum::<usize>(),
        into = tables.iter().map(|t| t.merged).sum::<usize>(),
        seconds = t.elapsed().as_secs_f64(),
        "compacted the lake while ingesting"
    );
}

/// Runs `dials ingest`.
pub fn run(args: Args) -> Result<(), CliError> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(CliError::Output)?;
    rt.block_on(async move {
        let lake = Location::parse(&args.lake, true).map_err(|e| CliError::Usage(format!("--lake: {e}")))?;
        let ws = load_workspaces(args.workspaces.as_deref()).await?;
        let inputs = expand(&args.inputs)?;
        dials_lake::ingest::limit_concurrent_decodes(args.concurrency.max(1));
        if inputs.is_empty() {
            return Err(CliError::Usage("no input files".into()));
        }
        let tty = std::io::stderr().is_terminal();
        let t0 = Instant::now();
        // On a terminal: a progress line (share of each file read, MB/s), redrawn twice a second.
        let in_flight = InFlight::default();
        let ticker = tty.then(|| {
            let f = in_flight.clone();
            tokio::spawn(async move {
                loop {
                    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
                    if let Some(line) = f.line(t0) {
                        eprint!("\r\x1b[K{line}");
                    }
                }
            })
        });
        let total = inputs.len();
        let (mut failed, mut recorded) = (0usize, 0usize);
        let (mut hists, mut bytes) = (0u64, 0u64);
        let mut stream = futures::stream::iter(inputs.into_iter().map(|input| {
            let (lake, ws, dataset) = (lake.clone(), ws.clone(), args.dataset.clone());
            let progress = tty.then(|| in_flight.clone());
            async move {
                let name = input.strip_prefix("s3://").map_or(input.as_str(), |r| r.split_once('/').map_or(r, |x| x.1)).to_string();
                let r = ingest_one(&lake, &ws, &input, &name, dataset, progress.as_ref()).await;
                (input, r)
            }
        }))
        // `concurrency` files decode at once; up to COMMITTING_PER_DECODE times as many may be
        // between their last object and their FINISHED record, their commits batched per table.
        .buffer_unordered(files_in_flight(args.concurrency.max(1)));
        let mut done = 0usize;
        // Compactions started along the way (one at a time), so that every table's snapshot, held
        // and followed by this process, stays small: 20,000 files ingested in one run held 1.9 GB
        // uncompacted (docs/benchmarks.md, stop 26).
        let names: Vec<String> = ws.workspaces.iter().map(|w| w.name.clone()).collect();
        let mut compaction: Option<tokio::task::JoinHandle<()>> = None;
        while let Some((input, r)) = stream.next().await {
            done += 1;
            if args.compact_every > 0
                && done.is_multiple_of(args.compact_every)
                && compaction.as_ref().is_none_or(|c| c.is_finished())
            {
                let (lake, names) = (lake.clone(), names.clone());
                let (lake_arg, ws_arg) = (args.lake.clone(), args.workspaces.clone());
                compaction = Some(tokio::spawn(async move {
                    compact_along(&lake, &names, &lake_arg, ws_arg.as_deref(), done).await
                }));
            }
            if tty {
                eprint!("\r\x1b[K");
            }
            match r {
                Ok(rep) => {
                    hists += rep.histograms;
                    bytes += rep.file_size;
                    let rows: u64 = rep.workspaces.iter().flat_map(|w| w.rows.values()).sum();
                    if tty {
                        eprintln!(
                            "[{done}/{total}] FINISHED {input}: {} histograms, {rows} rows in {} workspace(s), runs {:?}, {} lumisections, {:.2} s ({:.0} hist/s, {:.1} MB/s)",
                            rep.histograms,
                            rep.workspaces.len(),
                            rep.runs,
                            rep.lumisections,
                            rep.seconds,
                            rep.histograms as f64 / rep.seconds.max(1e-9),
                            rep.file_size as f64 / 1e6 / rep.seconds.max(1e-9)
                        );
                    } else {
                        tracing::info!(input, status = "FINISHED", histograms = rep.histograms, rows, seconds = rep.seconds, bytes_read = rep.bytes_read, read_requests = rep.read_requests, "ingested");
                    }
                    crate::emit(&format!("{}\n", serde_json::to_string(&rep).map_err(std::io::Error::from)?))?;
                }
                Err(e) => {
                    failed += 1;
                    recorded += usize::from(e.recorded);
                    if tty {
                        eprintln!("[{done}/{total}] {} {input}: {e}", e.status());
                    } else {
                        tracing::error!(input, status = e.status(), error = %e.error, recorded = e.recorded, "ingest failed");
                    }
                }
            }
        }
        if let Some(t) = ticker {
            t.abort();
            eprint!("\r\x1b[K");
        }
        if let Some(c) = compaction {
            // A compaction started along the way ends before the process does.
            let _ = c.await;
        }
        let secs = t0.elapsed().as_secs_f64();
        eprintln!(
            "ingested {} of {total} file(s) into {}: {hists} histograms, {:.1} MB in {secs:.2} s ({:.0} hist/s)",
            total - failed,
            lake.url,
            bytes as f64 / 1e6,
            hists as f64 / secs.max(1e-9)
        );
        if failed > 0 {
            let unrecorded = failed - recorded;
            let what = match (recorded, unrecorded) {
                (_, 0) => "status recorded in file_index".to_string(),
                (0, _) => "no status recorded in file_index: transient failures, run again".to_string(),
                (r, u) => format!("{r} with their status recorded in file_index, {u} not recorded (transient: run again)"),
            };
            return Err(CliError::Usage(format!("{failed} file(s) failed ({what})")));
        }
        Ok(())
    })
}
