//! Crafted files (tests/fixtures/craft.py) through the ingest: an error status with the reason in
//! `file_index`, no rows — never a process abort that leaves the record STARTED and hides the
//! file's previous good version.

mod common;

use std::sync::Arc;

use arrow::array::AsArray;
use dials_dqmio::LocalFile;
use dials_lake::{ingest, record_failure, IngestRequest, Location, Workspaces};

fn status(lake: &std::path::Path) -> (String, String) {
    let rows = common::read_table(&lake.join("default/file_index"));
    assert_eq!(rows.len(), 1, "one file_index record");
    let b = &rows[0].1;
    let col = |n: &str| {
        b.column_by_name(n)
            .expect(n)
            .as_string::<i32>()
            .value(0)
            .to_string()
    };
    (col("status"), col("err_trace"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_forged_file_ends_as_a_recorded_status_not_started() {
    for (name, want_status, says) in [
        (
            "forged_tree_entries.root",
            "PARSING_ERROR",
            "declares 4611686018427387904 entries",
        ),
        (
            "forged_entries.root",
            "PARSING_ERROR",
            "claims entries 0..4611686018427387904",
        ),
        (
            "bomb.root",
            "ROOTFILE_ERROR",
            "claims 1610612640 bytes decompressed",
        ),
        (
            "bomb_declared.root",
            "ROOTFILE_ERROR",
            "limit for one object",
        ),
    ] {
        let dir = common::scratch(&format!("forged-{name}"));
        let lake = Location::parse(dir.to_str().expect("utf8"), true).expect("lake");
        let ws = Workspaces::default();
        let lfn = common::lfn(7);
        // A good version of the file first.
        let good =
            Arc::new(LocalFile::open(common::fixtures().join("tiny_none.root")).expect("fixture"));
        let req = IngestRequest {
            logical_file_name: lfn.clone(),
            dataset: None,
            deadline: None,
        };
        let rep = ingest(&lake, &ws, &req, good, None)
            .await
            .expect("good version");
        assert!(rep.histograms > 0);
        assert_eq!(status(&dir).0, "FINISHED");
        // Then the forged one under the same name, as `dials ingest` / the function handle it.
        let path = common::fixtures().join("crafted").join(name);
        let src = Arc::new(LocalFile::open(&path).expect("fixture"));
        let e = ingest(&lake, &ws, &req, src, None).await.expect_err(name);
        assert!(!e.is_transient(), "{name}: {e}");
        assert_eq!(e.status(), want_status, "{name}: {e}");
        assert!(e.to_string().contains(says), "{name}: {e}");
        record_failure(&lake, &ws, &req, None, 0, e.status(), &e.to_string())
            .await
            .expect("record");
        let (st, trace) = status(&dir);
        assert_eq!(st, want_status, "{name}");
        assert!(trace.contains(says), "{name}: {trace}");
        // No rows: neither the forged file's nor (removed, per docs/lake.md) the earlier version's.
        assert!(
            common::read_table(&dir.join("default/th1")).is_empty(),
            "{name}: th1 rows left"
        );
    }
}
