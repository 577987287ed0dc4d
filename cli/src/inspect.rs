//! `dials inspect`: a summary a person reads.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::path::Path;

use dials_dqmio::MeKind;
use serde::Serialize;

use crate::CliError;

#[derive(Serialize, Default)]
struct Summary {
    file: String,
    file_size: u64,
    root_version: u32,
    compression: i32,
    layout: usize,
    runs: BTreeMap<u32, RunSummary>,
    /// Elements per kind (all runs and lumisections).
    elements: BTreeMap<&'static str, u64>,
    /// Distinct element names with their kind.
    names: BTreeMap<String, &'static str>,
    /// Top-level keys (name → class), and the contents of subdirectories such as `MetaData/`.
    keys: BTreeMap<String, String>,
    /// Classes recorded in the file's StreamerInfo list, with their versions.
    streamer_infos: BTreeMap<String, i32>,
}

#[derive(Serialize, Default)]
struct RunSummary {
    lumisections: BTreeSet<u32>,
    per_run_elements: u64,
    empty_lumisections: BTreeSet<u32>,
}

/// Runs `dials inspect`.
pub fn run(path: &Path, json: bool) -> Result<(), CliError> {
    let file = crate::open(path)?;
    let header = file.root().header();
    let mut s = Summary {
        file: path.display().to_string(),
        file_size: file.root().source().len(),
        root_version: header.version,
        compression: header.compress,
        layout: file.layout(),
        ..Default::default()
    };
    for row in file.indices() {
        let r = s.runs.entry(row.run).or_default();
        match row.kind {
            None => {
                r.empty_lumisections.insert(row.lumi);
                if row.lumi != 0 {
                    r.lumisections.insert(row.lumi);
                }
            }
            Some(kind) => {
                if row.lumi == 0 {
                    r.per_run_elements += row.count();
                } else {
                    r.lumisections.insert(row.lumi);
                }
                *s.elements.entry(kind.as_str()).or_default() += row.count();
            }
        }
    }
    let read_err = |source| CliError::Read {
        path: path.display().to_string(),
        source,
    };
    for key in file.root().keys() {
        s.keys.insert(key.name.clone(), key.class_name.clone());
        if key.class_name.starts_with("TDirectory") {
            for sub in file.root().dir_keys(key).map_err(read_err)? {
                s.keys
                    .insert(format!("{}/{}", key.name, sub.name), sub.class_name);
            }
        }
    }
    s.streamer_infos = file
        .root()
        .streamer_infos()
        .map_err(read_err)?
        .into_iter()
        .collect();
    // Names come from the FullName branches only; values are not decoded.
    for kind in file.trees().keys() {
        let names = file.names(*kind).map_err(|source| CliError::Read {
            path: s.file.clone(),
            source,
        })?;
        for n in names {
            s.names.insert(n, kind.as_str());
        }
    }
    if json {
        let text = serde_json::to_string_pretty(&s).map_err(std::io::Error::from)?;
        return crate::emit(&(text + "\n"));
    }
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{}  ({} bytes, ROOT {}, compression {}, {}-tree layout)",
        s.file,
        s.file_size,
        fmt_version(s.root_version),
        s.compression,
        s.layout
    );
    let keys: Vec<String> = s.keys.iter().map(|(k, c)| format!("{k} ({c})")).collect();
    let _ = writeln!(out, "keys: {}", keys.join(", "));
    let _ = writeln!(out, "runs: {}", s.runs.len());
    for (run, r) in &s.runs {
        let ls: Vec<u32> = r.lumisections.iter().copied().collect();
        let _ = writeln!(
            out,
            "  run {run}: {} lumisections ({}), {} per-run elements{}",
            ls.len(),
            ranges(&ls),
            r.per_run_elements,
            if r.empty_lumisections.iter().any(|l| *l != 0) {
                format!(", {} recorded without elements", r.empty_lumisections.len())
            } else {
                String::new()
            }
        );
    }
    let _ = writeln!(out, "elements per kind:");
    for kind in MeKind::ALL {
        if let Some(n) = s.elements.get(kind.as_str()) {
            let _ = writeln!(out, "  {:<11} {n}", kind.as_str());
        }
    }
    let _ = writeln!(out, "distinct element names: {}", s.names.len());
    for (name, kind) in &s.names {
        let _ = writeln!(out, "  {kind:<11} {name}");
    }
    crate::emit(&out)
}

fn fmt_version(v: u32) -> String {
    format!("{}.{:02}/{:02}", v / 10000, (v / 100) % 100, v % 100)
}

/// Compresses sorted numbers into `1-5, 7, 9-10`.
fn ranges(v: &[u32]) -> String {
    let mut out: Vec<String> = Vec::new();
    let mut i = 0;
    while i < v.len() {
        let start = v[i];
        let mut end = start;
        while i + 1 < v.len() && v[i + 1] == end + 1 {
            i += 1;
            end = v[i];
        }
        out.push(if start == end {
            start.to_string()
        } else {
            format!("{start}-{end}")
        });
        i += 1;
    }
    out.join(", ")
}
