//! Commits handed over between writers (`handover`): a writer that loses a version leaves its
//! change beside the log and the next writer carries it, each file under its own transaction;
//! a change is carried only while what its owner decided on still holds, and never twice.

mod common;

use std::collections::{BTreeSet, HashMap};

use common::scratch;
use deltalake_core::kernel::Action;
use deltalake_core::DeltaTable;
use dials_lake::committer::{submit, Intent};
use dials_lake::delta::DeltaError;
use dials_lake::delta::{self, Claims};
use dials_lake::handover::{self, Change, Committed, FileDecision, Mode};
use dials_lake::txns::TxnIndex;
use dials_lake::Location;

const TABLE: &str = "file_index";

fn object(file_id: i64, tag: &str) -> String {
    format!("part-{file_id}-{tag}.parquet")
}

async fn table(lake: &Location) -> DeltaTable {
    delta::open(lake, "default", TABLE)
        .await
        .expect("open")
        .expect("table")
}

/// A first ingest's change of `file_id`: one object in, nothing out.
fn first(file_id: i64, generation: i64, tag: &str) -> (Vec<Action>, FileDecision) {
    (
        vec![Action::Add(delta::add(object(file_id, tag), 10, &[], None))],
        FileDecision {
            id: file_id,
            generation,
            previous: None,
            objects: BTreeSet::new(),
        },
    )
}

fn claims(ids: &[i64]) -> Claims {
    Claims {
        file_ids: ids.iter().copied().collect(),
        removed: Default::default(),
    }
}

fn change<'a>(c: &'a Claims, (actions, file): (Vec<Action>, FileDecision)) -> Change<'a> {
    Change {
        actions,
        txns: vec![delta::file_txn(file.id, file.generation)],
        files: vec![file],
        claims: c,
        can_hand_over: true,
    }
}

/// A first ingest of `file_id` (generation `file_id × 10`) committed through `handover::commit`.
async fn commit_first(
    t: &DeltaTable,
    index: Option<&TxnIndex>,
    file_id: i64,
    tag: &str,
    mode: Mode,
) -> Result<Committed, DeltaError> {
    let c = claims(&[file_id]);
    handover::commit(
        t,
        change(&c, first(file_id, file_id * 10, tag)),
        &[],
        index,
        mode,
    )
    .await
}

/// A first ingest of `file_id` (generation `file_id × 10`) left for another writer to carry.
async fn leave_first(
    t: &DeltaTable,
    file_id: i64,
    tag: &str,
) -> Result<object_store::path::Path, DeltaError> {
    let c = claims(&[file_id]);
    handover::leave(t, &change(&c, first(file_id, file_id * 10, tag))).await
}

/// Another writer's commit of `file_id` (its own version, no hand-over).
async fn other_commit(lake: &Location, file_id: i64, generation: i64, tag: &str) -> i64 {
    let mut t = table(lake).await;
    delta::commit_txns(
        &mut t,
        vec![Action::Add(delta::add(object(file_id, tag), 10, &[], None))],
        vec![delta::file_txn(file_id, generation)],
        &[],
    )
    .await
    .expect("other writer")
}

/// Another process's commit of a first ingest of `file_id` (generation `file_id × 10`), named in
/// the log as written by `writer`.
async fn commit_by(lake: &Location, file_id: i64, writer: &str) {
    let t = table(lake).await;
    delta::commit_txns_as(
        &t,
        vec![Action::Add(delta::add(object(file_id, "x"), 10, &[], None))],
        vec![delta::file_txn(file_id, file_id * 10)],
        &[],
        writer,
    )
    .await
    .expect("other writer");
}

/// Every active object and every file's generation at the table's latest version.
async fn state(lake: &Location) -> (BTreeSet<String>, HashMap<i64, i64>) {
    let t = table(lake).await;
    let objects = delta::active_files(&t)
        .expect("files")
        .into_iter()
        .map(|f| f.path)
        .collect();
    let mut generations = HashMap::new();
    for id in 1..=9 {
        if let Some(g) = delta::file_generation(&t, id).await.expect("generation") {
            generations.insert(id, g);
        }
    }
    (objects, generations)
}

async fn lake_with_one_file(name: &str) -> Location {
    let dir = scratch(name);
    let lake = Location::parse(dir.to_str().expect("utf8"), true).expect("lake");
    submit(
        &lake,
        "default",
        TABLE,
        Intent {
            file_id: 1,
            generation: 1,
            adds: vec![delta::add(object(1, "a"), 10, &[], None)],
            source: None,
        },
    )
    .await
    .expect("first file");
    lake
}

#[tokio::test]
async fn a_change_left_by_a_writer_is_committed_by_the_next_and_its_owner_sees_it() {
    let lake = lake_with_one_file("handover-carried").await;
    let t_a = table(&lake).await;
    let t_b = table(&lake).await;
    let v0 = t_a.version().expect("version");
    let index = TxnIndex::build(&t_a).await.expect("index");

    // Writer B decided file 2 on v0 and left its change; writer X takes v0 + 1 with file 3.
    leave_first(&t_b, 2, "b").await.expect("left");
    assert_eq!(other_commit(&lake, 3, 30, "x").await as u64, v0 + 1);

    // Writer A (file 4, decided on v0) loses v0 + 1, finds B's change and carries it.
    let a = commit_first(&t_a, Some(&index), 4, "a", Mode::AfterLoss)
        .await
        .expect("A commits");
    assert!(!a.by_other);
    assert_eq!(a.written.version() as u64, v0 + 2);
    assert_eq!(a.written.rebased(), 1);
    assert_eq!(a.carried, vec![(2, 20)], "B's change carried");
    let (objects, generations) = state(&lake).await;
    assert!(objects.contains(&object(2, "b")) && objects.contains(&object(4, "a")));
    assert_eq!(generations.get(&2), Some(&20));
    assert_eq!(generations.get(&4), Some(&40));

    // Writer B, still deciding on v0, meets the commit that carried it: done, nothing written.
    let b = commit_first(&t_b, Some(&index), 2, "b", Mode::AfterLoss)
        .await
        .expect("B is done");
    assert!(b.by_other, "B must see that A committed its change");
    assert_eq!(b.written.version() as u64, v0 + 2);
    assert_eq!(
        table(&lake).await.version(),
        Some(v0 + 2),
        "no commit of B's own"
    );
}

#[tokio::test]
async fn a_committed_change_left_again_is_not_carried_twice() {
    let lake = lake_with_one_file("handover-twice").await;
    let t = table(&lake).await;
    // B's change is left, then committed by B itself.
    leave_first(&t, 2, "b").await.expect("left");
    let index = TxnIndex::build(&t).await.expect("index");
    commit_first(&t, Some(&index), 2, "b", Mode::AfterLoss)
        .await
        .expect("B commits");
    // The same change lies there still (its owner died before deleting it), and a failed later
    // attempt of file 2 took B's object out: the file has no object again, as when B decided.
    let mut now = table(&lake).await;
    let b_obj = delta::active_files(&now)
        .expect("files")
        .into_iter()
        .find(|f| f.path == object(2, "b"))
        .expect("B's object");
    delta::commit_txns(
        &mut now,
        vec![Action::Remove(delta::remove(&b_obj))],
        vec![delta::file_txn(2, 21)],
        &[],
    )
    .await
    .expect("failed attempt of file 2");
    leave_first(&t, 2, "b").await.expect("left again");

    // Writer A, on a table one version behind, loses a version and lists the waiting changes.
    let stale = table(&lake).await;
    let index = TxnIndex::build(&stale).await.expect("index");
    other_commit(&lake, 3, 30, "x").await;
    let a = commit_first(&stale, Some(&index), 4, "a", Mode::AfterLoss)
        .await
        .expect("A commits");
    assert!(
        a.carried.is_empty(),
        "a stale change was carried: {:?}",
        a.carried
    );
    let (objects, generations) = state(&lake).await;
    assert!(!objects.contains(&object(2, "b")), "B's object came back");
    assert_eq!(
        generations.get(&2),
        Some(&21),
        "file 2's generation went back"
    );
}

#[tokio::test]
async fn a_change_replacing_objects_is_carried_once_and_not_over_other_objects() {
    let lake = lake_with_one_file("handover-replace").await;
    // File 1's next record at the same generation (as FINISHED replaces STARTED): object a out,
    // object f in, decided while file 1 had object a.
    let replace = |tag: &str| {
        let t_obj = object(1, "a");
        (
            vec![
                Action::Add(delta::add(object(1, tag), 10, &[], None)),
                Action::Remove(deltalake_core::kernel::Remove {
                    path: t_obj.clone(),
                    data_change: true,
                    deletion_timestamp: Some(delta::now_ms()),
                    ..Default::default()
                }),
            ],
            FileDecision {
                id: 1,
                generation: 1,
                previous: Some(1),
                objects: BTreeSet::from([t_obj]),
            },
        )
    };
    let c1 = Claims {
        file_ids: [1].into(),
        removed: [object(1, "a")].into(),
    };
    let t = table(&lake).await;
    let index = TxnIndex::build(&t).await.expect("index");
    handover::leave(&t, &change(&c1, replace("f")))
        .await
        .expect("left");
    other_commit(&lake, 3, 30, "x").await;
    let a = commit_first(&t, Some(&index), 4, "a", Mode::AfterLoss)
        .await
        .expect("A commits");
    assert_eq!(a.carried, vec![(1, 1)], "the replacement carried");
    let (objects, _) = state(&lake).await;
    assert!(objects.contains(&object(1, "f")) && !objects.contains(&object(1, "a")));

    // A copy of it waiting still: file 1's generation is the one it read, but its objects are not.
    handover::leave(&t, &change(&c1, replace("g")))
        .await
        .expect("left again");
    let stale = table(&lake).await;
    let index = TxnIndex::build(&stale).await.expect("index");
    other_commit(&lake, 6, 60, "x").await;
    let b = commit_first(&stale, Some(&index), 7, "a", Mode::AfterLoss)
        .await
        .expect("B commits");
    assert!(
        b.carried.is_empty(),
        "carried over other objects: {:?}",
        b.carried
    );
    let (objects, _) = state(&lake).await;
    assert!(objects.contains(&object(1, "f")) && !objects.contains(&object(1, "g")));
}

#[tokio::test]
async fn a_change_whose_file_moved_after_it_was_left_is_not_carried() {
    let lake = lake_with_one_file("handover-moved").await;
    let t_a = table(&lake).await;
    let index = TxnIndex::build(&t_a).await.expect("index");
    // D left a first ingest of file 5 decided on v0; a newer version of file 5 is committed by
    // its own writer before anyone carries D's change.
    leave_first(&t_a, 5, "d").await.expect("left");
    other_commit(&lake, 5, 51, "e").await;
    let a = commit_first(&t_a, Some(&index), 4, "a", Mode::AfterLoss)
        .await
        .expect("A commits");
    assert!(
        a.carried.is_empty(),
        "carried over a newer commit: {:?}",
        a.carried
    );
    let (objects, generations) = state(&lake).await;
    assert!(!objects.contains(&object(5, "d")));
    assert_eq!(generations.get(&5), Some(&51));
}

#[tokio::test]
async fn without_an_index_a_writer_carries_nothing_and_commits_alone() {
    let lake = lake_with_one_file("handover-noindex").await;
    let t_a = table(&lake).await;
    leave_first(&t_a, 2, "b").await.expect("left");
    other_commit(&lake, 3, 30, "x").await;
    let a = commit_first(&t_a, None, 4, "a", Mode::AfterLoss)
        .await
        .expect("A commits");
    assert!(a.carried.is_empty());
    let (objects, _) = state(&lake).await;
    assert!(!objects.contains(&object(2, "b")));
    assert!(objects.contains(&object(4, "a")));
}

#[tokio::test]
async fn where_writers_crowd_a_table_a_writer_carries_waiting_changes_from_its_first_attempt() {
    let lake = lake_with_one_file("handover-upfront").await;
    // One other process, however many of its commits were first (a burst's two workers): no
    // hand-over, a waiting change is not carried, then or later.
    let stale = table(&lake).await;
    let index = TxnIndex::build(&stale).await.expect("index");
    leave_first(&stale, 2, "b").await.expect("left");
    for id in 3..6 {
        commit_by(&lake, id, "worker-b").await;
    }
    let a = commit_first(&stale, Some(&index), 6, "a", Mode::Crowded)
        .await
        .expect("A commits");
    assert_eq!(a.written.rebased(), 3);
    assert!(a.carried.is_empty(), "carried {:?}", a.carried);
    let t = table(&lake).await;
    let index = TxnIndex::build(&t).await.expect("index");
    let g = commit_first(&t, Some(&index), 7, "g", Mode::Crowded)
        .await
        .expect("G commits");
    assert!(g.carried.is_empty(), "carried {:?}", g.carried);
    let (objects, _) = state(&lake).await;
    assert!(!objects.contains(&object(2, "b")));
    // Versions lost to `CROWDED` other processes: the table is crowded from now on.
    let stale = table(&lake).await;
    let index = TxnIndex::build(&stale).await.expect("index");
    commit_by(&lake, 8, "worker-b").await;
    commit_by(&lake, 9, "worker-c").await;
    assert_eq!(handover::CROWDED, 2);
    let c = commit_first(&stale, Some(&index), 10, "c", Mode::Crowded)
        .await
        .expect("C commits");
    assert_eq!(c.written.rebased(), 2);
    // A change waits; the next commit, on a current table, wins its first version and carries it.
    let t = table(&lake).await;
    let index = TxnIndex::build(&t).await.expect("index");
    leave_first(&t, 11, "e").await.expect("left");
    let f = commit_first(&t, Some(&index), 12, "f", Mode::Crowded)
        .await
        .expect("F commits");
    assert_eq!(f.written.rebased(), 0, "no race");
    // Both waiting changes: the one just left, and B's, left before the table was crowded.
    let mut carried = f.carried.clone();
    carried.sort_unstable();
    assert_eq!(carried, vec![(2, 20), (11, 110)]);
    let (objects, _) = state(&lake).await;
    assert!(objects.contains(&object(11, "e")) && objects.contains(&object(12, "f")));
    assert!(objects.contains(&object(2, "b")));
    let t = table(&lake).await;
    assert_eq!(
        delta::file_generation(&t, 11).await.expect("generation"),
        Some(110)
    );
}

#[tokio::test]
async fn with_sharing_off_a_writer_carries_nothing() {
    let lake = lake_with_one_file("handover-off").await;
    let t_a = table(&lake).await;
    let index = TxnIndex::build(&t_a).await.expect("index");
    leave_first(&t_a, 2, "b").await.expect("left");
    other_commit(&lake, 3, 30, "x").await;
    let a = commit_first(&t_a, Some(&index), 4, "a", Mode::Off)
        .await
        .expect("A commits");
    assert!(a.carried.is_empty());
    assert_eq!(a.written.rebased(), 1, "the lost version gone past");
    let (objects, _) = state(&lake).await;
    assert!(!objects.contains(&object(2, "b")) && objects.contains(&object(4, "a")));
}

#[tokio::test]
async fn a_writer_several_versions_behind_goes_past_them_unless_one_touches_its_file() {
    let lake = lake_with_one_file("handover-catchup").await;
    let stale = table(&lake).await;
    let v0 = stale.version().expect("version");
    let index = TxnIndex::build(&stale).await.expect("index");
    for id in [3, 5, 6] {
        other_commit(&lake, id, id * 10, "x").await;
    }
    let a = commit_first(&stale, Some(&index), 4, "a", Mode::Off)
        .await
        .expect("A commits");
    assert_eq!(a.written.version() as u64, v0 + 4);
    assert_eq!(a.written.rebased(), 3);

    // Three more commits, the middle one of file 7: a writer of file 7 decided before them must
    // decide again, whatever comes after.
    let stale = table(&lake).await;
    let index = TxnIndex::build(&stale).await.expect("index");
    other_commit(&lake, 8, 80, "x").await;
    other_commit(&lake, 7, 71, "x").await;
    other_commit(&lake, 9, 90, "x").await;
    let err = commit_first(&stale, Some(&index), 7, "b", Mode::Off)
        .await
        .expect_err("a commit of the same file landed first");
    assert!(err.is_conflict(), "{err}");
    let (objects, generations) = state(&lake).await;
    assert!(!objects.contains(&object(7, "b")));
    assert_eq!(generations.get(&7), Some(&71));
}

#[tokio::test]
async fn another_attempts_commit_at_the_same_generation_is_not_taken_for_this_one() {
    let lake = lake_with_one_file("handover-same-generation").await;
    let stale = table(&lake).await;
    let index = TxnIndex::build(&stale).await.expect("index");
    // A redelivery of the same version (same generation 20) commits file 2 first, objects of its own.
    other_commit(&lake, 2, 20, "redelivered").await;
    let err = commit_first(&stale, Some(&index), 2, "b", Mode::AfterLoss)
        .await
        .expect_err("not this attempt's commit: decide again");
    assert!(err.is_conflict(), "{err}");
    let (objects, _) = state(&lake).await;
    assert!(!objects.contains(&object(2, "b")));
    assert!(objects.contains(&object(2, "redelivered")));
}
