//! Ingest into a lake folder: values equal what ROOT reports, re-ingest is idempotent, concurrent
//! ingests lose nothing, bad files leave a status and no rows.

mod common;

use std::sync::Arc;

use arrow::array::AsArray;
use common::{expected, fixtures, ingest_fixture, lfn, read_table, rows, scratch};
use dials_dqmio::LocalFile;
use dials_lake::{ingest, record_failure, IngestRequest, Location, Workspaces};

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
    let req = IngestRequest { logical_file_name: lfn(7), dataset: None, deadline: None };
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
    let req = IngestRequest { logical_file_name: "inbox/x.root".into(), dataset: None, deadline: None };
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

/// The layout docs/lake.md promises, read back from a written file: zstd bin lists, Snappy
/// elsewhere, dictionary pages,
/// page statistics and a page index on the key columns, no statistics on the bin lists.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn written_files_have_the_documented_layout() {
    use parquet::basic::{Compression, Encoding};
    use parquet::file::reader::{FileReader, SerializedFileReader};

    let dir = scratch("layout");
    let lake = Location::parse(dir.to_str().expect("utf8"), true).expect("lake");
    ingest_fixture(&lake, &Workspaces::default(), "small_zlib.root", &lfn(0)).await;
    for table in ["th1", "th2"] {
        let file = common::committed(&dir.join("default").join(table)).into_iter().next().expect("part");
        let opts = parquet::file::serialized_reader::ReadOptionsBuilder::new().with_page_index().build();
        let r = SerializedFileReader::new_with_options(std::fs::File::open(&file).expect("open"), opts).expect("parquet");
        let meta = r.metadata();
        assert!(meta.column_index().is_some() && meta.offset_index().is_some(), "{table}: page index");
        let rg = meta.row_group(0);
        for c in rg.columns() {
            let path = c.column_path().string();
            let bins = path.contains(".list.");
            if bins {
                assert!(matches!(c.compression(), Compression::ZSTD(_)), "{table} {path}: {:?}", c.compression());
            } else {
                assert_eq!(c.compression(), Compression::SNAPPY, "{table} {path}");
            }
            assert_eq!(c.statistics().is_some(), !bins, "{table} {path}: statistics only on scalar columns");
            if ["ls_number", "me_id", "me", "data.list.item", "data.list.item.list.item"].contains(&path.as_str()) {
                assert!(c.encodings().any(|e| e == Encoding::RLE_DICTIONARY), "{table} {path}: dictionary");
            }
        }
    }
}
