//! The query engine follows a table's Delta log only when a query reads the table and a
//! `file_index` moved since it last did: a new file costs a query the logs of the tables it reads,
//! and what it reads is never older than the `file_index` it checked FINISHED records in.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use dials_api::delta_files::DeltaFiles;
use dials_api::guard::GuardedStore;
use dials_dqmio::LocalFile;
use dials_lake::{delta, ingest, IngestRequest, Location, Workspaces};
use object_store::path::Path;

fn fixtures() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures/data")
}

async fn ingest_one(lake: &Location, i: usize) {
    let req = IngestRequest {
        logical_file_name: format!(
            "/store/data/Run2024C/ZeroBias/DQMIO/PromptReco-v1/000/380/310/00000/f{i}.root"
        ),
        dataset: None,
        deadline: None,
    };
    ingest(
        lake,
        &Workspaces::default(),
        &req,
        Arc::new(LocalFile::open(fixtures().join("small_zlib.root")).expect("fixture")),
        None,
    )
    .await
    .expect("ingest");
}

fn objects(files: &DeltaFiles, key: &Path) -> usize {
    files.files(key).map_or(0, |f| f.len())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_table_is_followed_when_a_query_reads_it_after_its_file_index_moved() {
    let dir = std::env::temp_dir().join(format!("dials-api-follow-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let lake = Location::parse(dir.to_str().expect("utf8"), true).expect("lake");
    ingest_one(&lake, 0).await;
    let ws = "default";
    let key = |t: &str| Path::from(format!("k/{t}"));
    let tables = ["file_index", "th1", "th2"]
        .iter()
        .map(|t| {
            let log = delta::log_store(&lake, &[ws, t], None).expect("log store");
            (key(t), log, *t == "file_index")
        })
        .collect();
    let guard = Arc::new(GuardedStore::new(Arc::new(
        object_store::local::LocalFileSystem::new(),
    )));
    // No interval: every call reads the `file_index` log.
    let files = DeltaFiles::new(tables, Duration::ZERO, guard);

    files.follow_tables(&[key("th1")]).await.expect("follow");
    let th1 = objects(&files, &key("th1"));
    assert!(th1 > 0, "th1 read for a query of it");
    assert_eq!(objects(&files, &key("file_index")), 1);
    assert_eq!(
        objects(&files, &key("th2")),
        0,
        "th2 not read: no query of it"
    );

    // A second file: a query of th1 sees it; th2 is still not read.
    ingest_one(&lake, 1).await;
    files.follow_tables(&[key("th1")]).await.expect("follow");
    assert_eq!(objects(&files, &key("file_index")), 2);
    assert_eq!(objects(&files, &key("th1")), 2 * th1);
    assert_eq!(objects(&files, &key("th2")), 0);

    // A query of th2 reads it at the same point: both files.
    files.follow_tables(&[key("th2")]).await.expect("follow");
    let th2 = objects(&files, &key("th2"));
    assert!(
        th2 > 0 && th2 % 2 == 0,
        "th2 has both files' objects: {th2}"
    );

    // No file since: reading th1 again needs no refresh and changes nothing.
    let before = files.changes();
    files.follow_tables(&[key("th1")]).await.expect("follow");
    assert_eq!(files.changes(), before, "nothing moved, nothing re-read");

    // A third file: th2, read first this time, is brought to it; th1 (not read) keeps two files
    // until a query reads it.
    ingest_one(&lake, 2).await;
    files.follow_tables(&[key("th2")]).await.expect("follow");
    assert_eq!(objects(&files, &key("th2")), th2 / 2 * 3);
    assert_eq!(objects(&files, &key("th1")), 2 * th1);
    files.follow_tables(&[key("th1")]).await.expect("follow");
    assert_eq!(objects(&files, &key("th1")), 3 * th1);

    // Following everything (the failure path's refresh) reads every table.
    files.follow().await.expect("follow all");
    assert_eq!(objects(&files, &key("file_index")), 3);
    let _ = std::fs::remove_dir_all(&dir);
}
