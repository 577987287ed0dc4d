//! Helpers shared by the CLI tests.
#![allow(dead_code)]

use std::path::{Path, PathBuf};

/// The objects of a Delta table folder at its latest version (relative paths), by replaying its
/// JSON commits: an independent reading of the log.
pub fn committed(dir: &Path) -> Vec<String> {
    committed_rows(dir).into_keys().collect()
}

/// [`committed`], each object with its row count (the `numRecords` of its Add's statistics; 0
/// without statistics).
pub fn committed_rows(dir: &Path) -> std::collections::BTreeMap<String, u64> {
    let mut commits: Vec<PathBuf> = std::fs::read_dir(dir.join("_delta_log"))
        .expect("_delta_log")
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "json"))
        .collect();
    commits.sort();
    let mut live = std::collections::BTreeMap::new();
    for c in commits {
        for line in std::fs::read_to_string(&c).expect("commit").lines() {
            let v: serde_json::Value = serde_json::from_str(line).expect("json");
            if let Some(p) = v.pointer("/add/path").and_then(|p| p.as_str()) {
                let rows = v
                    .pointer("/add/stats")
                    .and_then(|s| s.as_str())
                    .and_then(|s| serde_json::from_str::<serde_json::Value>(s).ok())
                    .and_then(|s| s["numRecords"].as_u64())
                    .unwrap_or(0);
                live.insert(p.to_string(), rows);
            }
            if let Some(p) = v.pointer("/remove/path").and_then(|p| p.as_str()) {
                live.remove(p);
            }
        }
    }
    live
}
