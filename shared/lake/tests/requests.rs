//! Lake requests counted (`DIALS_STORE_COUNT=1`, `store::instrumented`): an ingest's report says
//! how many requests of each kind it made to the lake, and which of them while committing.
//! (Its own test binary: the switch is read once per process.)

mod common;

use std::path::Path;

use common::{ingest_fixture, lfn, scratch};
use dials_lake::{Location, Workspaces};

/// Files under `dir` whose name ends with `suffix`, at any depth.
fn count(dir: &Path, suffix: &str) -> u64 {
    let mut n = 0;
    for e in std::fs::read_dir(dir).expect("dir").flatten() {
        let p = e.path();
        if p.is_dir() {
            n += count(&p, suffix);
        } else if p.to_string_lossy().ends_with(suffix) {
            n += 1;
        }
    }
    n
}

#[tokio::test]
async fn an_ingest_reports_the_requests_it_made_to_the_lake() {
    std::env::set_var("DIALS_STORE_COUNT", "1");
    let dir = scratch("requests");
    let lake = Location::parse(dir.to_str().expect("utf8"), true).expect("lake");
    let ws = Workspaces::default();

    let first = ingest_fixture(&lake, &ws, "small_zlib.root", &lfn(1)).await;
    let all = first.lake_requests.expect("counted");
    let committing = first.lake_requests_committing.expect("counted");
    // Every object in the lake and every log entry was put by this ingest (one put each).
    let (objects, entries) = (count(&dir, ".parquet"), count(&dir, ".json"));
    assert!(objects > 0 && entries > 0);
    assert!(
        all.put >= objects + entries,
        "{all:?}: {objects} objects, {entries} log entries"
    );
    // Its commits were among them: at least the log entries written after the tables existed
    // (one per table and the FINISHED record); the tables were read before that.
    assert!(
        committing.put >= 1 && committing.put <= all.put,
        "{committing:?} of {all:?}"
    );
    assert!(committing.get <= all.get && committing.list <= all.list);
    assert!(all.list >= 1, "{all:?}");

    // Every table followed past the first file's commits now, and awaited: the second file's own
    // `prepare` then finds them fresh and reads nothing in the background, whose requests could
    // otherwise still be in flight while it commits on a slow machine.
    let tables: Vec<String> = std::fs::read_dir(dir.join("default"))
        .expect("workspace")
        .flatten()
        .filter(|e| e.path().join("_delta_log").is_dir())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    assert!(tables.len() > 5, "{tables:?}");
    dials_lake::committer::settled(async {
        for t in &tables {
            dials_lake::committer::prepare(&lake, "default", t);
        }
    })
    .await;

    // A second file: its counts are its own (the first's are not counted again), and it reads the
    // tables the first one created.
    let second = ingest_fixture(&lake, &ws, "small_zlib.root", &lfn(2)).await;
    let again = second.lake_requests.expect("counted");
    let (objects2, entries2) = (count(&dir, ".parquet"), count(&dir, ".json"));
    assert!(
        again.put >= (objects2 - objects) + (entries2 - entries),
        "{again:?}"
    );
    // The first one also created the tables (one more log entry each): counting its requests
    // again would make the second's the larger.
    assert!(again.put < all.put, "{again:?} against the first's {all:?}");
    assert!(again.get + again.list >= 1, "{again:?}");
    // Alone on tables it has followed, a warm process's commits only put: a commit made with no
    // file pending leaves its snapshot to be followed at the table's next use. (At most one LIST
    // and its reads may be the STARTED record's follow, made while the file was still pending,
    // overlapping the commits on a slow machine.) Bringing each table to its commit at once
    // (`DIALS_FOLLOW_AFTER_COMMIT=1`) lists every log again and reads the commits back: 14 LISTs
    // and 28 GETs here.
    let committing = second.lake_requests_committing.expect("counted");
    assert!(committing.put >= 1, "{committing:?}");
    assert!(
        committing.list <= 1 && committing.get <= 2,
        "{committing:?}"
    );
}
