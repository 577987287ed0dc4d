//! Ingest into a lake folder: values equal what ROOT reports, re-ingest is idempotent, concurrent
//! ingests lose nothing, bad files leave a status and no rows.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use arrow::array::{Array, AsArray, RecordBatch};
use arrow::datatypes::{Float64Type, Int32Type, Int64Type};
use dials_dqmio::LocalFile;
use dials_lake::{ingest, record_failure, IngestRequest, Location, Workspaces};
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use serde_json::Value;

fn fixtures() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures/data")
}

fn scratch(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("dials-lake-test-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).expect("tmp");
    d
}

fn lfn(i: usize) -> String {
    format!("/store/data/Run2024C/ZeroBias/DQMIO/PromptReco-v1/000/380/310/00000/file-{i:03}.root")
}

async fn ingest_fixture(lake: &Location, ws: &Workspaces, fixture: &str, lfn: &str) -> dials_lake::IngestReport {
    let src = Arc::new(LocalFile::open(fixtures().join(fixture)).expect("fixture"));
    let req = IngestRequest { logical_file_name: lfn.to_string(), dataset: None };
    ingest(lake, ws, &req, src, None).await.expect("ingest")
}

/// All rows of a table folder, with `run_number` taken from the Hive path.
fn read_table(dir: &Path) -> Vec<(i64, RecordBatch)> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(rd) = std::fs::read_dir(&d) else { continue };
        for e in rd.flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else if p.extension().is_some_and(|x| x == "parquet") {
                let run = p
                    .parent()
                    .and_then(|q| q.file_name())
                    .and_then(|n| n.to_str())
                    .and_then(|n| n.strip_prefix("run_number="))
                    .map_or(-1, |r| r.parse().expect("run"));
                let f = std::fs::File::open(&p).expect("open");
                for b in ParquetRecordBatchReaderBuilder::try_new(f).expect("parquet").build().expect("reader") {
                    out.push((run, b.expect("batch")));
                }
            }
        }
    }
    out
}

/// (run, ls, me) → JSON-like values of a row.
fn rows(dir: &Path, dim: u8) -> BTreeMap<(i64, i64, String), Value> {
    let mut m = BTreeMap::new();
    for (run, b) in read_table(dir) {
        let ls = b.column_by_name("ls_number").expect("ls").as_primitive::<Int64Type>().clone();
        let me = b.column_by_name("me").expect("me").as_string::<i32>().clone();
        let entries = b.column_by_name("entries").expect("entries").as_primitive::<Int64Type>().clone();
        let x_min = b.column_by_name("x_min").expect("x").as_primitive::<Float64Type>().clone();
        let x_max = b.column_by_name("x_max").expect("x").as_primitive::<Float64Type>().clone();
        let x_bin = b.column_by_name("x_bin").expect("x").as_primitive::<Int32Type>().clone();
        let data = b.column_by_name("data").expect("data").as_list::<i32>().clone();
        for i in 0..b.num_rows() {
            let d = data.value(i);
            let data_json: Value = if dim == 1 {
                d.as_primitive::<Float64Type>().values().iter().map(|v| serde_json::json!(v)).collect()
            } else {
                let rows = d.as_list::<i32>();
                (0..rows.len())
                    .map(|r| rows.value(r).as_primitive::<Float64Type>().values().iter().map(|v| serde_json::json!(v)).collect::<Value>())
                    .collect()
            };
            let mut v = serde_json::json!({
                "x_min": x_min.value(i), "x_max": x_max.value(i), "x_bin": x_bin.value(i),
                "entries": entries.value(i), "data": data_json,
            });
            if dim == 2 {
                for k in ["y_min", "y_max"] {
                    v[k] = serde_json::json!(b.column_by_name(k).expect("y").as_primitive::<Float64Type>().value(i));
                }
                v["y_bin"] = serde_json::json!(b.column_by_name("y_bin").expect("y").as_primitive::<Int32Type>().value(i));
            }
            let key = (run, ls.value(i), me.value(i).to_string());
            assert!(m.insert(key.clone(), v).is_none(), "duplicate row {key:?}");
        }
    }
    m
}

fn expected(dim: u8) -> BTreeMap<(i64, i64, String), Value> {
    let text = std::fs::read_to_string(fixtures().join("small_zlib.expected.jsonl")).expect("expected");
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
        m.insert((v["run_number"].as_i64().expect("run"), v["ls_number"].as_i64().expect("ls"), v["me"].as_str().expect("me").to_string()), row);
    }
    m
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lake_rows_equal_what_root_reports() {
    let dir = scratch("values");
    let lake = Location::parse(dir.to_str().expect("utf8"), true).expect("lake");
    let rep = ingest_fixture(&lake, &Workspaces::default(), "small_zlib.root", &lfn(0)).await;
    assert_eq!(rep.dataset, "/ZeroBias/Run2024C-PromptReco-v1/DQMIO");
    for dim in [1u8, 2] {
        let table = if dim == 1 { "th1" } else { "th2" };
        let got = rows(&dir.join("default").join(table), dim);
        let want = expected(dim);
        assert_eq!(got.keys().collect::<Vec<_>>(), want.keys().collect::<Vec<_>>(), "{table} keys");
        for (k, w) in &want {
            assert_eq!(&got[k], w, "{table} {k:?}");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reingest_is_idempotent_and_concurrent_files_all_land() {
    let dir = scratch("idem");
    let lake = Location::parse(dir.to_str().expect("utf8"), true).expect("lake");
    let ws = Workspaces::default();
    for _ in 0..3 {
        ingest_fixture(&lake, &ws, "small_zlib.root", &lfn(0)).await;
    }
    let once = rows(&dir.join("default/th1"), 1);
    assert_eq!(once.len(), expected(1).len(), "3 re-ingests = 1 ingest");
    // 20 more files at once (same content, different names): exact counts, nothing lost.
    let mut tasks = Vec::new();
    for i in 1..=20 {
        let lake = lake.clone();
        let ws = ws.clone();
        tasks.push(tokio::spawn(async move { ingest_fixture(&lake, &ws, "small_lz4.root", &lfn(i)).await }));
    }
    for t in tasks {
        t.await.expect("task");
    }
    let th1: usize = read_table(&dir.join("default/th1")).iter().map(|(_, b)| b.num_rows()).sum();
    assert_eq!(th1, 21 * expected(1).len());
    let files = read_table(&dir.join("default/file_index"));
    assert_eq!(files.len(), 21);
    for (_, b) in &files {
        assert_eq!(b.column_by_name("status").expect("status").as_string::<i32>().value(0), "FINISHED");
    }
    let lumis: usize = read_table(&dir.join("default/lumisection_index")).iter().map(|(_, b)| b.num_rows()).sum();
    assert_eq!(lumis, 21 * 6);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_file_gets_a_status_and_no_rows_even_after_a_good_version() {
    let dir = scratch("bad");
    let lake = Location::parse(dir.to_str().expect("utf8"), true).expect("lake");
    let ws = Workspaces::default();
    ingest_fixture(&lake, &ws, "small_zlib.root", &lfn(7)).await;
    assert!(!read_table(&dir.join("default/th1")).is_empty());
    // The same logical file is re-uploaded truncated: its old rows must go, the error must show.
    let full = std::fs::read(fixtures().join("small_zlib.root")).expect("fixture");
    let bad_path = dir.join("bad.root");
    std::fs::write(&bad_path, &full[..full.len() / 3]).expect("write");
    let req = IngestRequest { logical_file_name: lfn(7), dataset: None };
    let err = ingest(&lake, &ws, &req, Arc::new(LocalFile::open(&bad_path).expect("open")), None)
        .await
        .expect_err("truncated file");
    assert_eq!(err.status(), "ROOTFILE_ERROR");
    assert!(!err.is_transient());
    record_failure(&lake, &ws, &req, 1, err.status(), &err.to_string()).await.expect("record");
    let th1: usize = read_table(&dir.join("default/th1")).iter().map(|(_, b)| b.num_rows()).sum();
    assert_eq!(th1, 0, "rows of the failed file are gone");
    let files = read_table(&dir.join("default/file_index"));
    let b = &files[0].1;
    assert_eq!(b.column_by_name("status").expect("s").as_string::<i32>().value(0), "ROOTFILE_ERROR");
    assert!(b.column_by_name("err_trace").expect("e").as_string::<i32>().value(0).contains("truncated"));
    // A file without a CMS name and without a dataset: PARSING_ERROR, never a guessed dataset.
    let req = IngestRequest { logical_file_name: "inbox/x.root".into(), dataset: None };
    let src = Arc::new(LocalFile::open(fixtures().join("small_zlib.root")).expect("open"));
    let err = ingest(&lake, &ws, &req, src, None).await.expect_err("no dataset");
    assert_eq!(err.status(), "PARSING_ERROR");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn workspaces_route_by_dataset_and_me_prefix() {
    let dir = scratch("ws");
    let lake = Location::parse(dir.to_str().expect("utf8"), true).expect("lake");
    let ws = Workspaces::from_json(
        r#"{"default":"tracker","workspaces":[
          {"name":"tracker","datasets":["/ZeroBias/*Run202*/DQMIO"],"me_prefixes":["PixelPhase1/"]},
          {"name":"hcal","datasets":["/ZeroBias/*Run202*/DQMIO"],"me_prefixes":["Hcal/"]},
          {"name":"jetmet","datasets":["/JetMET0/*Run202*/DQMIO"],"me_prefixes":["JetMET/"]}]}"#,
    )
    .expect("config");
    let rep = ingest_fixture(&lake, &ws, "small_zlib.root", &lfn(1)).await;
    let names: Vec<&str> = rep.workspaces.iter().map(|w| w.workspace.as_str()).collect();
    assert_eq!(names, ["tracker", "hcal"]);
    for (w, prefix) in [("tracker", "PixelPhase1/"), ("hcal", "Hcal/")] {
        let got = rows(&dir.join(w).join("th2"), 2);
        assert!(!got.is_empty(), "{w}");
        assert!(got.keys().all(|(_, _, me)| me.starts_with(prefix)), "{w}");
        let want: Vec<_> = expected(2).into_keys().filter(|(_, _, me)| me.starts_with(prefix)).collect();
        assert_eq!(got.into_keys().collect::<Vec<_>>(), want);
    }
    assert!(!dir.join("jetmet").exists());
}

/// The layout docs/lake.md promises, read back from a written file: zstd and dictionary pages,
/// page statistics and a page index on the key columns, no statistics on the bin lists.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn written_files_have_the_documented_layout() {
    use parquet::basic::{Compression, Encoding};
    use parquet::file::reader::{FileReader, SerializedFileReader};

    let dir = scratch("layout");
    let lake = Location::parse(dir.to_str().expect("utf8"), true).expect("lake");
    ingest_fixture(&lake, &Workspaces::default(), "small_zlib.root", &lfn(0)).await;
    for table in ["th1", "th2"] {
        let run_dir = std::fs::read_dir(dir.join("default").join(table)).expect("table").flatten().next().expect("run dir").path();
        let file = std::fs::read_dir(&run_dir).expect("run").flatten().next().expect("part").path();
        let opts = parquet::file::serialized_reader::ReadOptionsBuilder::new().with_page_index().build();
        let r = SerializedFileReader::new_with_options(std::fs::File::open(&file).expect("open"), opts).expect("parquet");
        let meta = r.metadata();
        assert!(meta.column_index().is_some() && meta.offset_index().is_some(), "{table}: page index");
        let rg = meta.row_group(0);
        for c in rg.columns() {
            let path = c.column_path().string();
            assert!(matches!(c.compression(), Compression::ZSTD(_)), "{table} {path}: {:?}", c.compression());
            let bins = path.contains(".list.");
            assert_eq!(c.statistics().is_some(), !bins, "{table} {path}: statistics only on scalar columns");
            if ["ls_number", "me_id", "me", "data.list.item", "data.list.item.list.item"].contains(&path.as_str()) {
                assert!(c.encodings().any(|e| e == Encoding::RLE_DICTIONARY), "{table} {path}: dictionary");
            }
        }
    }
}
