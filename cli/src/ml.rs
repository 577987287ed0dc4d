//! `dials ml register | update | backfill | list`: the model registry in the lake, locally.

use std::sync::Arc;

use clap::Subcommand;
use dials_api::ml::jobs::{self, Registration};
use dials_api::Engine;
use dials_lake::Location;
use dials_ml::registry::ModelCache;
use dials_ml::Tag;

use crate::CliError;

/// The `dials ml` subcommands.
#[derive(Subcommand)]
pub enum MlCommand {
    /// Register an ONNX model (a new revision when the name exists), validated against the lake.
    Register {
        #[command(flatten)]
        at: At,
        /// Model name ([A-Za-z0-9_.-]+).
        #[arg(long)]
        name: String,
        /// The ONNX file.
        #[arg(long)]
        onnx: std::path::PathBuf,
        /// Input ME paths, one per ONNX input in order (comma-separated).
        #[arg(long, value_delimiter = ',', required = true)]
        input: Vec<String>,
        /// Output giving the per-lumisection score (mode A, with --threshold; mode B: the score stored beside the flag).
        #[arg(long, required_unless_present = "flagging_key")]
        metric_key: Option<String>,
        /// A lumisection is anomalous when the score is above this (mode A).
        #[arg(
            long,
            requires = "metric_key",
            conflicts_with = "flagging_key",
            allow_negative_numbers = true
        )]
        threshold: Option<f64>,
        /// Output that is the model's own flag, non-zero = anomalous (mode B).
        #[arg(long)]
        flagging_key: Option<String>,
        /// Description.
        #[arg(long, default_value = "")]
        description: String,
        /// Tags, `name=value` (repeatable).
        #[arg(long = "tag")]
        tags: Vec<String>,
        /// Register inactive (no scoring on ingest).
        #[arg(long)]
        inactive: bool,
    },
    /// Change the threshold or the active flag of a model's latest revision (no re-run needed).
    Update {
        #[command(flatten)]
        at: At,
        /// Model name.
        #[arg(long)]
        model: String,
        /// New threshold (mode A models).
        #[arg(long, allow_negative_numbers = true)]
        threshold: Option<f64>,
        /// Activate.
        #[arg(long, conflicts_with = "inactive")]
        active: bool,
        /// Deactivate.
        #[arg(long)]
        inactive: bool,
    },
    /// Score the data already in the lake with a model, a whole run per batch (idempotent).
    Backfill {
        #[command(flatten)]
        at: At,
        /// Model name (its latest revision).
        #[arg(long)]
        model: String,
        /// Only this dataset.
        #[arg(long)]
        dataset: Option<String>,
        /// Only these runs (comma-separated).
        #[arg(long, value_delimiter = ',')]
        runs: Option<Vec<i64>>,
        /// Runs scored at once (default: the cores).
        #[arg(long)]
        threads: Option<usize>,
    },
    /// Time inference of an ONNX file on synthetic batches, one thread (docs/benchmarks.md).
    #[command(hide = true)]
    Bench {
        /// The ONNX file (one input).
        #[arg(long)]
        onnx: std::path::PathBuf,
        /// Per-lumisection shape, e.g. `100` or `7,12`.
        #[arg(long, value_delimiter = ',')]
        shape: Vec<usize>,
        /// Lumisections per batch.
        #[arg(long, default_value_t = 1000)]
        n_ls: usize,
        /// Timed batches.
        #[arg(long, default_value_t = 20)]
        reps: usize,
        /// Prepare the model for exactly --n-ls lumisections instead of a symbolic batch.
        #[arg(long)]
        fixed: bool,
    },
    /// List the models of a workspace (every revision) as JSON lines.
    List {
        #[command(flatten)]
        at: At,
    },
}

/// Which lake and workspace.
#[derive(clap::Args)]
pub struct At {
    /// Lake root: a folder or s3://bucket/prefix.
    #[arg(long, env = "DIALS_LAKE", default_value = "lake")]
    lake: String,
    /// Workspaces config (JSON; local path or s3:// URL).
    #[arg(long, env = "DIALS_WORKSPACES")]
    workspaces: Option<String>,
    /// Workspace (default: the config's default).
    #[arg(long)]
    workspace: Option<String>,
}

fn user() -> String {
    std::env::var("USER").unwrap_or_else(|_| "dials".into())
}

async fn open(at: &At) -> Result<(Engine, String), CliError> {
    let lake =
        Location::parse(&at.lake, false).map_err(|e| CliError::Usage(format!("--lake: {e}")))?;
    let ws = crate::ingest::load_workspaces(at.workspaces.as_deref()).await?;
    let name = match &at.workspace {
        None => ws.default.clone(),
        Some(w) => ws.get(w).map(|x| x.name.clone()).ok_or_else(|| {
            CliError::Usage(format!("--workspace {w}: not in the workspaces config"))
        })?,
    };
    let engine = Engine::new(&lake, ws)
        .await
        .map_err(|e| CliError::Usage(format!("lake {}: {e}", lake.url)))?;
    Ok((engine, name))
}

fn job(e: jobs::JobError) -> CliError {
    CliError::Usage(e.to_string())
}

fn print_json(v: &impl serde::Serialize) -> Result<(), CliError> {
    let s = serde_json::to_string(v).map_err(|e| CliError::Usage(e.to_string()))?;
    crate::emit(&format!("{s}\n"))
}

/// Runs a `dials ml` subcommand.
pub fn run(cmd: MlCommand) -> Result<(), CliError> {
    if let MlCommand::Bench {
        onnx,
        shape,
        n_ls,
        reps,
        fixed,
    } = &cmd
    {
        let bytes = std::fs::read(onnx)
            .map_err(|e| CliError::Usage(format!("--onnx {}: {e}", onnx.display())))?;
        let r = dials_ml::bench::run(&bytes, shape, *n_ls, (*reps).max(1), *fixed)
            .map_err(|e| CliError::Usage(e.to_string()))?;
        return print_json(&r);
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(CliError::Output)?;
    rt.block_on(async move {
        match cmd {
            MlCommand::Register {
                at,
                name,
                onnx,
                input,
                metric_key,
                threshold,
                flagging_key,
                description,
                tags,
                inactive,
            } => {
                if flagging_key.is_none() && threshold.is_none() {
                    return Err(CliError::Usage(
                        "--metric-key needs --threshold (mode A), or give --flagging-key (mode B)"
                            .into(),
                    ));
                }
                let bytes = std::fs::read(&onnx)
                    .map_err(|e| CliError::Usage(format!("--onnx {}: {e}", onnx.display())))?;
                let tags = tags
                    .iter()
                    .map(|t| {
                        t.split_once('=')
                            .map(|(n, v)| Tag {
                                name: n.to_string(),
                                value: v.to_string(),
                            })
                            .ok_or_else(|| {
                                CliError::Usage(format!("--tag {t}: expected name=value"))
                            })
                    })
                    .collect::<Result<Vec<_>, _>>()?;
                let (engine, ws) = open(&at).await?;
                let filename = onnx
                    .file_name()
                    .map(|f| f.to_string_lossy().to_string())
                    .unwrap_or_else(|| "model.onnx".into());
                let doc = jobs::register(
                    &engine,
                    Registration {
                        workspace: ws,
                        name,
                        onnx: bytes,
                        filename,
                        inputs: input,
                        metric_key,
                        threshold,
                        flagging_key,
                        description,
                        tags,
                        active: !inactive,
                        user: user(),
                    },
                )
                .await
                .map_err(job)?;
                print_json(&doc)?;
                if !doc.ready {
                    eprintln!(
                        "dials: model {} registered but not ready: {}",
                        doc.label(),
                        doc.reason.clone().unwrap_or_default()
                    );
                }
                Ok(())
            }
            MlCommand::Update {
                at,
                model,
                threshold,
                active,
                inactive,
            } => {
                let (engine, ws) = open(&at).await?;
                let flag = if active {
                    Some(true)
                } else if inactive {
                    Some(false)
                } else {
                    None
                };
                let doc = jobs::update(&engine.lake, &ws, &model, threshold, flag, &user())
                    .await
                    .map_err(job)?;
                print_json(&doc)
            }
            MlCommand::Backfill {
                at,
                model,
                dataset,
                runs,
                threads,
            } => {
                let (engine, ws) = open(&at).await?;
                let threads = threads
                    .unwrap_or_else(|| std::thread::available_parallelism().map_or(2, |n| n.get()));
                let cache = Arc::new(ModelCache::default());
                let statuses = jobs::backfill(
                    &engine,
                    &cache,
                    &ws,
                    &model,
                    dataset.as_deref(),
                    runs.as_deref(),
                    threads,
                )
                .await
                .map_err(job)?;
                for s in &statuses {
                    print_json(s)?;
                }
                let failed: Vec<String> = statuses
                    .iter()
                    .filter(|s| s.status != "OK")
                    .map(|s| {
                        format!(
                            "run {}: {}",
                            s.run_number,
                            s.error.clone().unwrap_or_default()
                        )
                    })
                    .collect();
                if failed.is_empty() {
                    Ok(())
                } else {
                    Err(CliError::Usage(format!(
                        "model {model} failed on {} run(s): {}",
                        failed.len(),
                        failed.join("; ")
                    )))
                }
            }
            MlCommand::Bench { .. } => Ok(()),
            MlCommand::List { at } => {
                let (engine, ws) = open(&at).await?;
                let docs = dials_ml::registry::list(&engine.lake, &ws)
                    .await
                    .map_err(|e| CliError::Usage(e.to_string()))?;
                for d in &docs {
                    print_json(d)?;
                }
                Ok(())
            }
        }
    })
}
