//! `dials scan`: decode everything, print one summary line per file.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::Instant;

use dials_dqmio::{MeKind, Selection};
use rayon::prelude::*;

use crate::CliError;

/// Runs `dials scan` over `files`; fails (after scanning all) if any file failed.
pub fn run(files: &[PathBuf], threads: Option<usize>) -> Result<(), CliError> {
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(threads.unwrap_or(0))
        .build()
        .map_err(|e| CliError::Usage(format!("--threads: {e}")))?;
    let mut failed = Vec::new();
    for path in files {
        match pool.install(|| scan_one(path)) {
            Ok(line) => crate::emit(&format!("{line}\n"))?,
            Err(e) => {
                eprintln!("dials: {e}");
                failed.push(path.display().to_string());
            }
        }
    }
    if failed.is_empty() {
        Ok(())
    } else {
        Err(CliError::Usage(format!(
            "{} of {} file(s) failed: {}",
            failed.len(),
            files.len(),
            failed.join(", ")
        )))
    }
}

fn scan_one(path: &Path) -> Result<String, CliError> {
    let start = Instant::now();
    let file = crate::open(path)?;
    let counts: Mutex<BTreeMap<MeKind, u64>> = Mutex::new(BTreeMap::new());
    let kinds: Vec<MeKind> = file.trees().keys().copied().collect();
    let sel = Selection::default();
    kinds
        .par_iter()
        .map(|kind| {
            let mut n = 0u64;
            file.for_each_of_kind(*kind, &sel, |_me| {
                n += 1;
                Ok(())
            })?;
            if let Ok(mut c) = counts.lock() {
                c.insert(*kind, n);
            }
            Ok(())
        })
        .collect::<Result<Vec<()>, dials_dqmio::Error>>()
        .map_err(|source| CliError::Read {
            path: path.display().to_string(),
            source,
        })?;
    let secs = start.elapsed().as_secs_f64();
    let counts = counts.into_inner().unwrap_or_default();
    let total: u64 = counts.values().sum();
    let per_kind: Vec<String> = counts
        .iter()
        .filter(|(_, n)| **n > 0)
        .map(|(k, n)| format!("{k}={n}"))
        .collect();
    Ok(format!(
        "{}: ok, {total} elements decoded ({}) in {secs:.3} s ({:.0} elements/s)",
        path.display(),
        per_kind.join(" "),
        total as f64 / secs.max(1e-9)
    ))
}
