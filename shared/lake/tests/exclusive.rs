//! Commits that the group committer decides itself (`delta::commit_txns_exclusive`): a commit
//! decided on a table that moved fails as a conflict and writes nothing, and the committer then
//! decides again on the followed table, so another process's commits (which remove objects of
//! other files, as every FINISHED record does) neither conflict with it nor get lost.

mod common;

use std::collections::BTreeSet;

use common::scratch;
use deltalake_core::kernel::Action;
use dials_lake::committer::{submit, Intent};
use dials_lake::{delta, Location};

fn object(file_id: i64, tag: &str) -> String {
    format!("part-{file_id}-{tag}.parquet")
}

fn intent(file_id: i64, generation: i64, tag: &str) -> Intent {
    Intent {
        file_id,
        generation,
        adds: vec![delta::add(object(file_id, tag), 10, &[], None)],
        source: None,
    }
}

async fn table(lake: &Location) -> deltalake_core::DeltaTable {
    delta::open(lake, "default", "file_index")
        .await
        .expect("open")
        .expect("table")
}

fn active(t: &deltalake_core::DeltaTable) -> BTreeSet<String> {
    delta::active_files(t)
        .expect("files")
        .into_iter()
        .map(|f| f.path)
        .collect()
}

#[tokio::test]
async fn a_commit_decided_on_a_moved_table_fails_and_writes_nothing() {
    let dir = scratch("exclusive-stale");
    let lake = Location::parse(dir.to_str().expect("utf8"), true).expect("lake");
    submit(&lake, "default", "file_index", intent(1, 1, "a"))
        .await
        .expect("first");
    let mut stale = table(&lake).await;
    let mut other = table(&lake).await;
    let before = stale.version().expect("version");
    delta::commit_txns(
        &mut other,
        vec![Action::Add(delta::add(object(2, "a"), 10, &[], None))],
        vec![delta::file_txn(2, 1)],
        &[],
    )
    .await
    .expect("other writer");
    let err = delta::commit_txns_exclusive(
        &mut stale,
        vec![Action::Add(delta::add(object(3, "a"), 10, &[], None))],
        vec![delta::file_txn(3, 1)],
        &[],
    )
    .await
    .expect_err("a commit on a table that moved must fail");
    assert!(err.is_conflict(), "not reported as a conflict: {err}");
    let now = table(&lake).await;
    assert_eq!(
        now.version(),
        Some(before + 1),
        "only the other writer's commit"
    );
    assert!(!active(&now).contains(&object(3, "a")));
    // On the current table the same commit goes through.
    let mut fresh = table(&lake).await;
    delta::commit_txns_exclusive(
        &mut fresh,
        vec![Action::Add(delta::add(object(3, "a"), 10, &[], None))],
        vec![delta::file_txn(3, 1)],
        &[],
    )
    .await
    .expect("current table");
    assert!(active(&table(&lake).await).contains(&object(3, "a")));
}

#[tokio::test]
async fn the_committer_follows_another_processs_commits_and_loses_nothing() {
    let dir = scratch("exclusive-follow");
    let lake = Location::parse(dir.to_str().expect("utf8"), true).expect("lake");
    // This process's committer loads the table (and keeps it between commits).
    submit(&lake, "default", "file_index", intent(1, 1, "a"))
        .await
        .expect("first");
    // Another process: file 2 STARTED, then FINISHED replacing it (a removal of an object that is
    // not file 1's).
    let mut other = table(&lake).await;
    delta::commit_txns(
        &mut other,
        vec![Action::Add(delta::add(object(2, "started"), 10, &[], None))],
        vec![delta::file_txn(2, 5)],
        &[],
    )
    .await
    .expect("started");
    let started = delta::active_files(&other)
        .expect("files")
        .into_iter()
        .find(|f| f.path == object(2, "started"))
        .expect("started object");
    delta::commit_txns(
        &mut other,
        vec![
            Action::Add(delta::add(object(2, "finished"), 10, &[], None)),
            Action::Remove(delta::remove(&started)),
        ],
        vec![delta::file_txn(2, 5)],
        &[],
    )
    .await
    .expect("finished");
    // File 1 again, newer generation, from the committer's table two commits behind.
    submit(&lake, "default", "file_index", intent(1, 2, "b"))
        .await
        .expect("decided again on the followed table");
    let t = table(&lake).await;
    let want: BTreeSet<String> = [object(1, "b"), object(2, "finished")]
        .into_iter()
        .collect();
    assert_eq!(active(&t), want);
    assert_eq!(delta::file_generation(&t, 1).await.expect("gen"), Some(2));
    assert_eq!(delta::file_generation(&t, 2).await.expect("gen"), Some(5));
    // And an older attempt of file 2 from this process is still superseded by the other's commit.
    let late = submit(&lake, "default", "file_index", intent(2, 4, "late")).await;
    assert!(
        matches!(late, Err(dials_lake::IngestError::Superseded(_))),
        "older generation not superseded: {late:?}"
    );
    assert_eq!(active(&table(&lake).await), want);
}
