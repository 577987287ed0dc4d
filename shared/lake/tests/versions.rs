//! Two versions of the same logical file ingested at once (an S3 key overwritten while its first
//! ingest runs: two events, two functions). Whatever the interleaving, every table ends holding
//! exactly one version, whole — never rows of both, never a table left with the older one — and
//! the file's one record says FINISHED. (On the lake format before Delta, 12 of 40 trials mixed
//! versions or listed deleted objects.)

mod common;

use std::collections::BTreeMap;
use std::sync::Arc;

use arrow::array::AsArray;
use arrow::datatypes::Int64Type;
use common::{committed, fixtures, read_table, scratch};
use dials_dqmio::LocalFile;
use dials_lake::{ingest, IngestError, IngestRequest, Location, Workspaces};

const LFN: &str = "/store/data/Run2024C/ZeroBias/DQMIO/PromptReco-v1/000/380/310/00000/overwritten.root";

/// Rows per table and the set of (run, ls) of the lumisection index: what distinguishes versions.
fn signature(dir: &std::path::Path) -> BTreeMap<&'static str, String> {
    let mut sig = BTreeMap::new();
    for table in ["th1", "th2", "me_index"] {
        let n: usize = read_table(&dir.join("default").join(table)).iter().map(|(_, b)| b.num_rows()).sum();
        sig.insert(table, n.to_string());
    }
    let mut lumis: Vec<(i64, i64)> = Vec::new();
    for (_, b) in read_table(&dir.join("default/lumisection_index")) {
        let run = b.column_by_name("run_number").expect("run").as_primitive::<Int64Type>();
        let ls = b.column_by_name("ls_number").expect("ls").as_primitive::<Int64Type>();
        lumis.extend((0..b.num_rows()).map(|i| (run.value(i), ls.value(i))));
    }
    lumis.sort_unstable();
    sig.insert("lumisection_index", format!("{lumis:?}"));
    sig
}

async fn ingest_version(lake: &Location, fixture: &str) -> Result<(), IngestError> {
    // A redelivered message is a new attempt (and a newer generation): retry transient failures
    // as SQS would.
    for _ in 0..5 {
        let src = Arc::new(LocalFile::open(fixtures().join(fixture)).expect("fixture"));
        let req = IngestRequest { logical_file_name: LFN.to_string(), dataset: None, deadline: None };
        match ingest(lake, &Workspaces::default(), &req, src, None).await {
            Ok(_) => return Ok(()),
            Err(IngestError::Superseded(_)) => return Ok(()),
            Err(e) if e.is_transient() => continue,
            Err(e) => return Err(e),
        }
    }
    Err(IngestError::Task("still failing after 5 deliveries".into()))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_versions_of_one_file_at_once_leave_exactly_one_whole() {
    // The two versions alone, for reference.
    let mut alone = Vec::new();
    for fx in ["small_zlib.root", "tiny_none.root"] {
        let dir = scratch(&format!("version-{fx}"));
        let lake = Location::parse(dir.to_str().expect("utf8"), true).expect("lake");
        ingest_version(&lake, fx).await.expect("ingest");
        alone.push(signature(&dir));
    }
    assert_ne!(alone[0], alone[1], "the two versions differ in every table");
    let mut winners = BTreeMap::new();
    for trial in 0..40 {
        let dir = scratch(&format!("versions-{trial}"));
        let lake = Location::parse(dir.to_str().expect("utf8"), true).expect("lake");
        let (a, b) = (lake.clone(), lake.clone());
        let ta = tokio::spawn(async move { ingest_version(&a, "small_zlib.root").await });
        let tb = tokio::spawn(async move { ingest_version(&b, "tiny_none.root").await });
        ta.await.expect("task").expect("version A");
        tb.await.expect("task").expect("version B");
        let sig = signature(&dir);
        let which = alone.iter().position(|s| *s == sig);
        assert!(which.is_some(), "trial {trial}: tables hold a mix of versions: {sig:?}");
        *winners.entry(which).or_insert(0) += 1;
        let records = read_table(&dir.join("default/file_index"));
        assert_eq!(records.len(), 1, "trial {trial}: one record for the file");
        let status = records[0].1.column_by_name("status").expect("status").as_string::<i32>().value(0).to_string();
        assert_eq!(status, "FINISHED", "trial {trial}");
        // Every committed object exists (nothing the log names was deleted).
        for table in ["th1", "th2", "lumisection_index", "me_index", "file_index", "dataset_index"] {
            for f in committed(&dir.join("default").join(table)) {
                assert!(f.exists(), "trial {trial}: {} is committed but missing", f.display());
            }
        }
    }
    eprintln!("winners (0 = small_zlib, 1 = tiny_none): {winners:?}");
}
