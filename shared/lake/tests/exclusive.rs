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

fn claims(file_ids: &[i64], removed: &[&str]) -> delta::Claims {
    delta::Claims {
        file_ids: file_ids.iter().copied().collect(),
        removed: removed.iter().map(|r| r.to_string()).collect(),
    }
}

/// Another writer's commit: `adds` of file `file_id` in, `removes` out, under its transaction.
async fn other_commit(
    lake: &Location,
    file_id: Option<(i64, i64)>,
    adds: &[&str],
    removes: &[&str],
) {
    let mut t = table(lake).await;
    let files = delta::active_files(&t).expect("files");
    let mut actions: Vec<Action> = adds
        .iter()
        .map(|a| Action::Add(delta::add(a.to_string(), 10, &[], None)))
        .collect();
    for r in removes {
        let f = files
            .iter()
            .find(|f| f.path == *r)
            .expect("object to remove");
        actions.push(Action::Remove(delta::remove(f)));
    }
    let txns = file_id
        .map(|(id, g)| vec![delta::file_txn(id, g)])
        .unwrap_or_default();
    delta::commit_txns(&mut t, actions, txns, &[])
        .await
        .expect("other writer");
}

/// Commits `actions` of file `file_id` (generation 1) on `stale` with `claims`.
async fn rebasing(
    stale: &deltalake_core::DeltaTable,
    file_id: i64,
    actions: Vec<Action>,
    claims: Option<&delta::Claims>,
) -> Result<delta::Written, delta::DeltaError> {
    delta::commit_txns_rebasing(
        stale,
        actions,
        vec![delta::file_txn(file_id, 1)],
        &[],
        claims,
    )
    .await
}

fn add_of(file_id: i64, tag: &str) -> Vec<Action> {
    vec![Action::Add(delta::add(object(file_id, tag), 10, &[], None))]
}

/// A commit decided on a table another writer moved, with its claims: when the commits that landed
/// first are of other files, it lands at the next free version without following the table; when
/// one touches its files or the objects it removes, it fails as a conflict and writes nothing.
#[tokio::test]
async fn a_commit_rebases_over_other_files_commits_and_not_over_its_own() {
    let dir = scratch("exclusive-rebase");
    let lake = Location::parse(dir.to_str().expect("utf8"), true).expect("lake");
    submit(&lake, "default", "file_index", intent(1, 1, "a"))
        .await
        .expect("first");
    let stale = table(&lake).await;
    let before = stale.version().expect("version");
    // Two commits of file 2 land first; the second removes an object of file 2.
    other_commit(&lake, Some((2, 1)), &[&object(2, "a")], &[]).await;
    other_commit(&lake, Some((2, 2)), &[&object(2, "b")], &[&object(2, "a")]).await;
    let written = rebasing(&stale, 3, add_of(3, "a"), Some(&claims(&[3], &[])))
        .await
        .expect("commits of other files do not conflict");
    assert_eq!(
        written.version(),
        before as i64 + 3,
        "after the two that landed first"
    );
    let now = table(&lake).await;
    let files = active(&now);
    for o in [object(1, "a"), object(2, "b"), object(3, "a")] {
        assert!(files.contains(&o), "{o} missing: {files:?}");
    }
    assert!(!files.contains(&object(2, "a")));
    assert_eq!(delta::file_generation(&now, 3).await.expect("txn"), Some(1));

    // The same file committed by another writer meanwhile: a conflict, nothing written.
    let stale = table(&lake).await;
    let v = stale.version().expect("version");
    other_commit(&lake, Some((4, 9)), &[&object(4, "x")], &[]).await;
    let err = rebasing(&stale, 4, add_of(4, "y"), Some(&claims(&[4], &[])))
        .await
        .expect_err("another attempt of the same file landed first");
    assert!(err.is_conflict(), "{err}");
    let now = table(&lake).await;
    assert_eq!(now.version(), Some(v + 1));
    assert!(!active(&now).contains(&object(4, "y")));

    // An object this commit removes was removed by the commit that landed first (a compaction
    // merged it): a conflict.
    let stale = table(&lake).await;
    let three = delta::active_files(&stale)
        .expect("files")
        .into_iter()
        .find(|f| f.path == object(3, "a"))
        .expect("3a");
    other_commit(&lake, None, &["part-c-merged.parquet"], &[&object(3, "a")]).await;
    let remove = vec![Action::Remove(delta::remove(&three))];
    let err = rebasing(&stale, 5, remove, Some(&claims(&[5], &[&object(3, "a")])))
        .await
        .expect_err("its removed object was removed first");
    assert!(err.is_conflict(), "{err}");

    // Without claims, any commit that landed first is a conflict (as before).
    let stale = table(&lake).await;
    other_commit(&lake, Some((6, 1)), &[&object(6, "a")], &[]).await;
    let err = rebasing(&stale, 7, add_of(7, "a"), None)
        .await
        .expect_err("no claims: no rebase");
    assert!(err.is_conflict(), "{err}");
}

/// What a commit entry touches, read from its JSON lines.
#[test]
fn a_commit_entry_touches_the_files_objects_and_removals_it_names() {
    let c = claims(&[42], &["part-c-1.parquet"]);
    let line = |s: &str| s.to_string() + "\n";
    let info = line(r#"{"commitInfo":{"operation":"WRITE"}}"#);
    let other_add = line(r#"{"add":{"path":"run_number=1/part-7-abc.parquet","size":1}}"#);
    assert!(!delta::touches((info.clone() + &other_add).as_bytes(), &c));
    let other_txn = line(r#"{"txn":{"appId":"dials.file.7","version":3}}"#);
    assert!(!delta::touches(other_txn.as_bytes(), &c));
    for hit in [
        r#"{"txn":{"appId":"dials.file.42","version":3}}"#,
        r#"{"add":{"path":"run_number=1/part-42-abc.parquet","size":1}}"#,
        r#"{"remove":{"path":"part-42.parquet"}}"#,
        r#"{"remove":{"path":"run_number=2/part-c-1.parquet"}}"#,
        r#"{"metaData":{"id":"x"}}"#,
        r#"{"protocol":{"minReaderVersion":1}}"#,
        r#"{"add":{}}"#,
        "not json",
    ] {
        assert!(delta::touches((info.clone() + hit).as_bytes(), &c), "{hit}");
    }
    // File 4 is not file 42 nor 420.
    let near = line(r#"{"add":{"path":"part-420-abc.parquet","size":1}}"#);
    assert!(!delta::touches(near.as_bytes(), &c));
    assert!(!delta::touches(b"", &c));
}
