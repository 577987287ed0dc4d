//! Helpers shared by the lake integration tests.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use arrow::array::{Array, AsArray, RecordBatch};
use arrow::datatypes::{Float64Type, Int32Type, Int64Type};
use dials_dqmio::LocalFile;
use dials_lake::{ingest, IngestRequest, Location, Workspaces};
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use serde_json::Value;

pub fn fixtures() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures/data")
}

pub fn scratch(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("dials-lake-test-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).expect("tmp");
    d
}

pub fn lfn(i: usize) -> String {
    format!("/store/data/Run2024C/ZeroBias/DQMIO/PromptReco-v1/000/380/310/00000/file-{i:03}.root")
}

pub async fn ingest_fixture(
    lake: &Location,
    ws: &Workspaces,
    fixture: &str,
    lfn: &str,
) -> dials_lake::IngestReport {
    let src = Arc::new(LocalFile::open(fixtures().join(fixture)).expect("fixture"));
    let req = IngestRequest {
        logical_file_name: lfn.to_string(),
        dataset: None,
        deadline: None,
    };
    ingest(lake, ws, &req, src, None).await.expect("ingest")
}

/// The objects of a Delta table folder at its latest version, by replaying its JSON commits
/// (an independent reading of the log: `add` puts a path in, `remove` takes it out).
pub fn committed(dir: &Path) -> Vec<PathBuf> {
    let mut commits: Vec<PathBuf> = std::fs::read_dir(dir.join("_delta_log"))
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.path())
        .filter(|p| {
            p.extension().is_some_and(|x| x == "json")
                && !p
                    .file_name()
                    .is_some_and(|n| n.to_string_lossy().starts_with('_'))
        })
        .collect();
    commits.sort();
    let mut live = std::collections::BTreeSet::new();
    for c in commits {
        for line in std::fs::read_to_string(&c).expect("commit").lines() {
            let v: Value = serde_json::from_str(line).expect("commit line");
            if let Some(p) = v.pointer("/add/path").and_then(Value::as_str) {
                live.insert(p.to_string());
            }
            if let Some(p) = v.pointer("/remove/path").and_then(Value::as_str) {
                live.remove(p);
            }
        }
    }
    live.into_iter().map(|p| dir.join(p)).collect()
}

/// All rows of a table folder (its committed objects), with `run_number` taken from the Hive path.
pub fn read_table(dir: &Path) -> Vec<(i64, RecordBatch)> {
    let mut out = Vec::new();
    {
        for p in committed(dir) {
            {
                let run = p
                    .parent()
                    .and_then(|q| q.file_name())
                    .and_then(|n| n.to_str())
                    .and_then(|n| n.strip_prefix("run_number="))
                    .map_or(-1, |r| r.parse().expect("run"));
                let f = std::fs::File::open(&p).expect("open");
                for b in ParquetRecordBatchReaderBuilder::try_new(f)
                    .expect("parquet")
                    .build()
                    .expect("reader")
                {
                    out.push((run, b.expect("batch")));
                }
            }
        }
    }
    out
}

/// (run, ls, me) → JSON-like values of a row.
pub fn rows(dir: &Path, dim: u8) -> BTreeMap<(i64, i64, String), Value> {
    let mut m = BTreeMap::new();
    for (run, b) in read_table(dir) {
        let ls = b
            .column_by_name("ls_number")
            .expect("ls")
            .as_primitive::<Int64Type>()
            .clone();
        let me = b
            .column_by_name("me")
            .expect("me")
            .as_string::<i32>()
            .clone();
        let entries = b
            .column_by_name("entries")
            .expect("entries")
            .as_primitive::<Int64Type>()
            .clone();
        let x_min = b
            .column_by_name("x_min")
            .expect("x")
            .as_primitive::<Float64Type>()
            .clone();
        let x_max = b
            .column_by_name("x_max")
            .expect("x")
            .as_primitive::<Float64Type>()
            .clone();
        let x_bin = b
            .column_by_name("x_bin")
            .expect("x")
            .as_primitive::<Int32Type>()
            .clone();
        let data = b
            .column_by_name("data")
            .expect("data")
            .as_list::<i32>()
            .clone();
        for i in 0..b.num_rows() {
            let d = data.value(i);
            let data_json: Value = if dim == 1 {
                d.as_primitive::<Float64Type>()
                    .values()
                    .iter()
                    .map(|v| serde_json::json!(v))
                    .collect()
            } else {
                let rows = d.as_list::<i32>();
                (0..rows.len())
                    .map(|r| {
                        rows.value(r)
                            .as_primitive::<Float64Type>()
                            .values()
                            .iter()
                            .map(|v| serde_json::json!(v))
                            .collect::<Value>()
                    })
                    .collect()
            };
            let mut v = serde_json::json!({
                "x_min": x_min.value(i), "x_max": x_max.value(i), "x_bin": x_bin.value(i),
                "entries": entries.value(i), "data": data_json,
            });
            if dim == 2 {
                for k in ["y_min", "y_max"] {
                    v[k] = serde_json::json!(b
                        .column_by_name(k)
                        .expect("y")
                        .as_primitive::<Float64Type>()
                        .value(i));
                }
                v["y_bin"] = serde_json::json!(b
                    .column_by_name("y_bin")
                    .expect("y")
                    .as_primitive::<Int32Type>()
                    .value(i));
            }
            let key = (run, ls.value(i), me.value(i).to_string());
            assert!(m.insert(key.clone(), v).is_none(), "duplicate row {key:?}");
        }
    }
    m
}

pub fn expected(dim: u8) -> BTreeMap<(i64, i64, String), Value> {
    let text =
        std::fs::read_to_string(fixtures().join("small_zlib.expected.jsonl")).expect("expected");
    let mut m = BTreeMap::new();
    for line in text.lines() {
        let v: Value = serde_json::from_str(line).expect("json");
        let kind = v["kind"].as_str().expect("kind");
        let is = |p: &str| kind.starts_with(p) && kind.len() == 4;
        if v["ls_number"] == 0 || !(if dim == 1 { is("TH1") } else { is("TH2") }) {
            continue; // DIALS keeps TH1x/TH2x per lumisection only
        }
        let mut row = serde_json::json!({});
        for k in ["x_min", "x_max", "x_bin", "entries", "data"] {
            row[k] = v[k].clone();
        }
        if dim == 2 {
            for k in ["y_min", "y_max", "y_bin"] {
                row[k] = v[k].clone();
            }
        }
        m.insert(
            (
                v["run_number"].as_i64().expect("run"),
                v["ls_number"].as_i64().expect("ls"),
                v["me"].as_str().expect("me").to_string(),
            ),
            row,
        );
    }
    m
}

/// Ingests `small_zlib.root` into a fresh lake folder named after `name`, on a runtime of its own
/// (for single-test binaries that set the environment first), and returns the folder.
pub fn ingest_small_fixture_blocking(name: &str) -> PathBuf {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let dir = scratch(name);
    let lake = Location::parse(dir.to_str().expect("utf8"), true).expect("lake");
    rt.block_on(ingest_fixture(
        &lake,
        &Workspaces::default(),
        "small_zlib.root",
        &lfn(0),
    ));
    dir
}
