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

/// Objects named by an `EXPLAIN` of `sql` (the objects its scan would open).
async fn scanned_objects(engine: &dials_api::engine::Engine, sql: &str) -> usize {
    let plan = engine
        .query(&format!("EXPLAIN {sql}"), vec![])
        .await
        .expect("explain");
    let mut text = String::new();
    for b in &plan {
        let col = b
            .column_by_name("plan")
            .and_then(|c| c.as_any().downcast_ref::<arrow::array::StringArray>())
            .expect("plan column");
        for p in col.iter().flatten() {
            text.push_str(p);
        }
    }
    // The physical plan names each object once (the logical plan names none).
    text.matches(".parquet").count()
}

/// The API's "files not FINISHED" query opens only the `file_index` objects whose `status`
/// bounds (Add statistics) admit another status: not one object per ingested file.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn file_index_objects_are_pruned_by_status() {
    let dir = std::env::temp_dir().join(format!("dials-api-status-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let lake = Location::parse(dir.to_str().expect("utf8"), true).expect("lake");
    for i in 0..4 {
        ingest_one(&lake, i).await;
    }
    // A failed file: its record says PARSING_ERROR.
    let bad = IngestRequest {
        logical_file_name:
            "/store/data/Run2024C/ZeroBias/DQMIO/PromptReco-v1/000/380/310/00000/bad.root".into(),
        dataset: None,
        deadline: None,
    };
    dials_lake::ingest::record_failure(
        &lake,
        &Workspaces::default(),
        &bad,
        None,
        5,
        "PARSING_ERROR",
        "not DQMIO",
    )
    .await
    .expect("failure recorded");
    let engine = dials_api::engine::Engine::new(&lake, Workspaces::default())
        .await
        .expect("engine");
    let table = engine.table("default", "file_index");
    let unfinished = format!("SELECT DISTINCT file_id FROM {table} WHERE status <> 'FINISHED'");
    assert_eq!(
        scanned_objects(&engine, &format!("SELECT file_id FROM {table}")).await,
        5,
        "five records, five objects"
    );
    assert_eq!(
        scanned_objects(&engine, &unfinished).await,
        1,
        "only the failed file's record is opened"
    );
    let ids = engine
        .unfinished_files("default")
        .await
        .expect("unfinished");
    assert_eq!(ids.len(), 1);
    assert_eq!(
        engine
            .finished_files("default")
            .await
            .expect("finished")
            .len(),
        4
    );
    let _ = std::fs::remove_dir_all(&dir);
}
