//! `dials`: the local command line of the DIALS functions.

mod compact;
mod dump;
mod ingest;
mod inspect;
mod migrate;
mod ml;
mod scan;
mod serve;
mod worker;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// DIALS on your machine: read DQMIO files, build and serve the lake.
#[derive(Parser)]
#[command(name = "dials", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Summarise a DQMIO file: runs, lumisections, elements per kind, element names.
    Inspect {
        /// DQMIO file.
        file: PathBuf,
        /// Print the summary as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Print every element as JSON Lines (one line per element per run and lumisection).
    Dump {
        /// DQMIO file.
        file: PathBuf,
        /// Only elements whose name matches this regular expression (unanchored).
        #[arg(long)]
        me_regex: Option<String>,
    },
    /// Ingest DQMIO files (paths, folders, s3:// URLs) into a lake (folder or s3://bucket/prefix).
    Ingest {
        /// Files, folders (searched for *.root) or s3://bucket/key URLs.
        #[arg(required = true)]
        inputs: Vec<String>,
        /// Lake root: a folder or s3://bucket/prefix.
        #[arg(long, env = "DIALS_LAKE", default_value = "lake")]
        lake: String,
        /// Workspaces config (JSON; local path or s3:// URL). Default: one workspace keeping everything.
        #[arg(long, env = "DIALS_WORKSPACES")]
        workspaces: Option<String>,
        /// Dataset of files whose names are not CMS logical file names (/store/...).
        #[arg(long)]
        dataset: Option<String>,
        /// Files read and decoded at once (more wait for their commits, which are batched per table).
        #[arg(long, default_value_t = 2)]
        concurrency: usize,
        /// Compact the lake (in the background, while ingesting goes on) each time this many more
        /// files are ingested: a table's snapshot, which the ingest holds and follows, grows with its
        /// uncompacted objects (memory and time per commit). 0: never.
        #[arg(long, env = "DIALS_INGEST_COMPACT_EVERY", default_value_t = 1000)]
        compact_every: usize,
    },
    /// Serve the DIALS REST API (/api/v1, as cmsdials expects) over a lake.
    Serve {
        /// Lake root: a folder or s3://bucket/prefix.
        #[arg(long, env = "DIALS_LAKE", default_value = "lake")]
        lake: String,
        /// Workspaces config (JSON; local path or s3:// URL).
        #[arg(long, env = "DIALS_WORKSPACES")]
        workspaces: Option<String>,
        /// Address to listen on.
        #[arg(long, env = "DIALS_LISTEN", default_value = "127.0.0.1:8080")]
        listen: String,
        #[command(flatten)]
        auth: serve::AuthArgs,
    },
    /// The embedded default: ingest every DQMIO file dropped into an inbox folder and serve the API.
    Up {
        /// Folder watched for *.root files (the "bucket").
        #[arg(long, default_value = "inbox")]
        inbox: String,
        /// Lake folder (Parquet output).
        #[arg(long, env = "DIALS_LAKE", default_value = "lake")]
        lake: String,
        /// Workspaces config (JSON).
        #[arg(long, env = "DIALS_WORKSPACES")]
        workspaces: Option<String>,
        /// Dataset of files whose paths are not CMS logical file names (store/data/<era>/<primary>/DQMIO/...).
        #[arg(long)]
        dataset: Option<String>,
        /// Address to listen on.
        #[arg(long, env = "DIALS_LISTEN", default_value = "127.0.0.1:8080")]
        listen: String,
        #[command(flatten)]
        auth: serve::AuthArgs,
    },
    /// Poll an SQS queue of S3 notifications and ingest what it announces (the function's path, locally).
    Worker {
        /// Queue URL.
        #[arg(long, env = "DIALS_QUEUE_URL")]
        queue_url: String,
        /// Lake root: a folder or s3://bucket/prefix.
        #[arg(long, env = "DIALS_LAKE")]
        lake: String,
        /// Workspaces config (JSON; local path or s3:// URL).
        #[arg(long, env = "DIALS_WORKSPACES")]
        workspaces: Option<String>,
        /// Dataset of objects whose keys are not CMS logical file names.
        #[arg(long, env = "DIALS_DEFAULT_DATASET")]
        default_dataset: Option<String>,
        /// Invoke the function through a Lambda runtime API endpoint (e.g. cargo lambda watch) instead of in-process.
        #[arg(long)]
        invoke_url: Option<String>,
        /// Exit after this many seconds without messages (0: run until stopped).
        #[arg(long, default_value_t = 0)]
        idle_exit: u64,
        /// The queue's maxReceiveCount (after it, a failing message goes to the DLQ). Read from the
        /// queue's redrive policy; if given, it must match it (a queue without one needs it).
        #[arg(long, env = "DIALS_MAX_RECEIVES")]
        max_receives: Option<u32>,
        /// Messages per batch at most, as Lambda's BatchSize: beyond 10 only while the queue is
        /// full (a burst); the batch's files share their commits to each table.
        #[arg(long, env = "DIALS_WORKER_BATCH", default_value_t = 10, value_parser = clap::value_parser!(u16).range(1..=10000))]
        batch_size: u16,
        /// A FIFO queue the ingests send their commits to instead of making them (as the function
        /// with DIALS_COMMIT_QUEUE_URL); a second `dials worker --queue-url` of that queue makes them.
        #[arg(long, env = "DIALS_COMMIT_QUEUE_URL")]
        commit_queue_url: Option<String>,
    },
    /// Convert a lake written before the Delta format (plain Parquet folders) into Delta tables, in
    /// place (no object is copied or rewritten); safe to run again.
    Migrate {
        /// Lake root: a folder or s3://bucket/prefix.
        #[arg(long, env = "DIALS_LAKE", default_value = "lake")]
        lake: String,
        /// Workspaces config (JSON); default: every folder of the lake with a file_index/.
        #[arg(long, env = "DIALS_WORKSPACES")]
        workspaces: Option<String>,
    },
    /// Merge the small objects of every table partition that has at least --min-objects of them
    /// (one Delta OPTIMIZE commit each; queries keep running). One JSON line per table.
    Compact {
        /// Lake root: a folder or s3://bucket/prefix.
        #[arg(long, env = "DIALS_LAKE", default_value = "lake")]
        lake: String,
        /// Workspaces config (JSON); default: every folder of the lake with a file_index/.
        #[arg(long, env = "DIALS_WORKSPACES")]
        workspaces: Option<String>,
        /// Merge a partition once it has this many small objects.
        #[arg(long, default_value_t = 8)]
        min_objects: usize,
        /// Objects of this many MiB or more count as big and stay as they are.
        #[arg(long, default_value_t = 64)]
        small_mib: u64,
    },
    /// Delete objects that no snapshot younger than the retention needs (removed by compaction or
    /// re-ingest, or never committed by a failed attempt). One JSON line per table.
    Vacuum {
        /// Lake root: a folder or s3://bucket/prefix.
        #[arg(long, env = "DIALS_LAKE", default_value = "lake")]
        lake: String,
        /// Workspaces config (JSON); default: every folder of the lake with a file_index/.
        #[arg(long, env = "DIALS_WORKSPACES")]
        workspaces: Option<String>,
        /// Keep what a snapshot of the last this many hours needs: longer than any query or ingest.
        #[arg(long, default_value_t = 24.0)]
        retention_hours: f64,
    },
    /// Models: register ONNX models, update thresholds, backfill scores (docs/ml.md).
    Ml {
        #[command(subcommand)]
        command: ml::MlCommand,
    },
    /// Decode every element without printing it: an integrity and speed check.
    Scan {
        /// DQMIO files.
        #[arg(required = true)]
        files: Vec<PathBuf>,
        /// Decoding threads (default: all cores).
        #[arg(long)]
        threads: Option<usize>,
    },
}

/// Exit code for unreadable input or a failed operation.
const EXIT_BAD_INPUT: u8 = 2;
fn main() -> ExitCode {
    // A bug must still end as a clear message and exit code 2, never as 101 or a signal.
    std::panic::set_hook(Box::new(|info| {
        // A model's panic inside tract is caught and becomes that model's error (dials-ml).
        if dials_ml::onnx::in_model() {
            tracing::debug!(%info, "model panicked (caught)");
            return;
        }
        eprintln!("dials: internal error: {info}");
        std::process::exit(i32::from(EXIT_BAD_INPUT));
    }));
    tracing_subscriber::fmt()
        // delta-rs logs every lost commit race as an error; the group committer expects them and
        // decides again (a commit that really fails comes back as our own error).
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("DIALS_LOG").unwrap_or_else(|_| {
                tracing_subscriber::EnvFilter::new("error,deltalake_core::kernel::transaction=off")
            }),
        )
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    if matches!(cli.command, Command::Serve { .. } | Command::Up { .. }) {
        dials_malloc::tune_for_serving();
    } else {
        dials_malloc::tune_for_ingest();
    }
    let result = match cli.command {
        Command::Inspect { file, json } => inspect::run(&file, json),
        Command::Dump { file, me_regex } => dump::run(&file, me_regex.as_deref()),
        Command::Scan { files, threads } => scan::run(&files, threads),
        Command::Ml { command } => ml::run(command),
        Command::Migrate { lake, workspaces } => migrate::run(&lake, workspaces.as_deref()),
        Command::Compact {
            lake,
            workspaces,
            min_objects,
            small_mib,
        } => {
            let opts = dials_lake::compact::CompactOptions {
                min_objects,
                small_bytes: small_mib << 20,
                ..Default::default()
            };
            compact::compact(&lake, workspaces.as_deref(), opts)
        }
        Command::Vacuum {
            lake,
            workspaces,
            retention_hours,
        } => {
            if !(retention_hours >= 0.0 && retention_hours.is_finite()) {
                Err(CliError::Usage(format!(
                    "--retention-hours {retention_hours}: must be a number of hours >= 0"
                )))
            } else {
                compact::vacuum(
                    &lake,
                    workspaces.as_deref(),
                    std::time::Duration::from_secs_f64(retention_hours * 3600.0),
                )
            }
        }
        Command::Serve {
            lake,
            workspaces,
            listen,
            auth,
        } => serve::serve(&lake, workspaces.as_deref(), &listen, &auth),
        Command::Up {
            inbox,
            lake,
            workspaces,
            dataset,
            listen,
            auth,
        } => serve::up(
            &inbox,
            &lake,
            workspaces.as_deref(),
            dataset,
            &listen,
            &auth,
        ),
        Command::Worker {
            queue_url,
            lake,
            workspaces,
            default_dataset,
            invoke_url,
            idle_exit,
            max_receives,
            batch_size,
            commit_queue_url,
        } => worker::run(worker::Args {
            queue_url,
            lake,
            workspaces,
            default_dataset,
            invoke_url,
            idle_exit,
            max_receives,
            batch_size: usize::from(batch_size),
            commit_queue_url: commit_queue_url.filter(|u| !u.trim().is_empty()),
        }),
        Command::Ingest {
            inputs,
            lake,
            workspaces,
            dataset,
            concurrency,
            compact_every,
        } => ingest::run(ingest::Args {
            inputs,
            lake,
            workspaces,
            dataset,
            concurrency,
            compact_every,
        }),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("dials: {e}");
            ExitCode::from(EXIT_BAD_INPUT)
        }
    }
}

/// Errors of the command line, each naming the file involved.
#[derive(Debug, thiserror::Error)]
pub enum CliError {
    /// The file could not be read or decoded.
    #[error("{path}: {source}")]
    Read {
        /// File.
        path: String,
        /// Cause.
        #[source]
        source: dials_dqmio::Error,
    },
    /// Writing the output failed (e.g. a closed pipe).
    #[error("writing output: {0}")]
    Output(#[from] std::io::Error),
    /// A bad command-line argument.
    #[error("{0}")]
    Usage(String),
}

/// Opens a DQMIO file, attaching the path to any error.
pub fn open(path: &std::path::Path) -> Result<dials_dqmio::DqmioFile, CliError> {
    dials_dqmio::DqmioFile::open_path(path).map_err(|source| CliError::Read {
        path: path.display().to_string(),
        source,
    })
}

/// Writes `text` to stdout; a reader that went away (`| head`) is not an error.
pub fn emit(text: &str) -> Result<(), CliError> {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    match out.write_all(text.as_bytes()).and_then(|()| out.flush()) {
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
        other => other.map_err(CliError::Output),
    }
}
