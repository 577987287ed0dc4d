//! The files' generations read from the log directly (`txns.rs`) equal what delta-rs answers file
//! by file, across checkpoints; and the group committer, which keeps its loaded table and those
//! generations between commits, still sees another writer's commits (a newer generation committed
//! elsewhere supersedes an older attempt here).

mod common;

use std::collections::BTreeMap;

use common::scratch;
use dials_lake::committer::{submit, Intent};
use dials_lake::txns::TxnIndex;
use dials_lake::{delta, IngestError, Location};

fn intent(file_id: i64, generation: i64, n: usize) -> Intent {
    let adds = vec![delta::add(
        format!("part-{file_id}-{generation}-{n}.parquet"),
        10,
        &[],
        None,
    )];
    Intent {
        file_id,
        generation,
        adds,
        source: None,
    }
}

async fn delta_rs_answers(
    lake: &Location,
    ids: impl Iterator<Item = i64>,
) -> BTreeMap<i64, Option<i64>> {
    let t = delta::open(lake, "default", "file_index")
        .await
        .expect("open")
        .expect("table");
    let mut out = BTreeMap::new();
    for id in ids {
        out.insert(
            id,
            delta::file_generation(&t, id).await.expect("generation"),
        );
    }
    out
}

#[tokio::test]
async fn index_equals_delta_rs_across_checkpoints_and_follows_other_writers() {
    let dir = scratch("txn-index");
    let lake = Location::parse(dir.to_str().expect("utf8"), true).expect("lake");
    // 130 commits (checkpoints at 49 and 99): 40 files, each committed several times, sometimes
    // with an older generation (superseded, not committed).
    let mut want: BTreeMap<i64, i64> = BTreeMap::new();
    let mut superseded = 0;
    for n in 0..130usize {
        let id = 1000 + (n * 7 % 40) as i64;
        let generation = 1 + ((n * 7919) % 500) as i64;
        match submit(&lake, "default", "file_index", intent(id, generation, n)).await {
            Ok(()) => {
                assert!(want.get(&id).is_none_or(|g| *g <= generation));
                want.insert(id, generation);
            }
            Err(IngestError::Superseded(_)) => {
                assert!(
                    want.get(&id).is_some_and(|g| *g > generation),
                    "file {id} at {generation} wrongly superseded"
                );
                superseded += 1;
            }
            Err(e) => panic!("commit {n}: {e}"),
        }
    }
    assert!(
        superseded > 0,
        "the sequence never tried an older generation"
    );
    assert!(
        dir.join("default/file_index/_delta_log/_last_checkpoint")
            .exists(),
        "no checkpoint written"
    );

    let ids = (990..1050).collect::<Vec<i64>>();
    let answers = delta_rs_answers(&lake, ids.iter().copied()).await;
    for (id, g) in &answers {
        assert_eq!(*g, want.get(id).copied(), "delta-rs on file {id}");
    }
    // Built from the checkpoint and the commits after it.
    let t = delta::open(&lake, "default", "file_index")
        .await
        .expect("open")
        .expect("table");
    let built = TxnIndex::build(&t).await.expect("build");
    assert_eq!(built.version(), t.version().expect("version"));
    assert_eq!(built.len(), want.len());
    for id in &ids {
        assert_eq!(
            built.generation(*id),
            answers[id],
            "built index on file {id}"
        );
    }
    // Built at an older version (before the last checkpoint), then advanced commit by commit.
    let mut old = delta::open(&lake, "default", "file_index")
        .await
        .expect("open")
        .expect("table");
    let mut at_40 = deltalake_core::DeltaTable::new(old.log_store());
    at_40
        .update_incremental(Some(40))
        .await
        .expect("version 40");
    let mut ix = TxnIndex::build(&at_40).await.expect("build at 40");
    assert_eq!(ix.version(), 40);
    old.update_incremental(None).await.expect("latest");
    assert!(ix.advance(&old).await.expect("advance"));
    assert_eq!(ix.version(), t.version().expect("version"));
    for id in &ids {
        assert_eq!(
            ix.generation(*id),
            answers[id],
            "advanced index on file {id}"
        );
    }

    // Another writer (another process: its own table handle, its own commit) commits file 1000 at
    // a newer generation; this process's committer, which keeps its table and index, must see it.
    let mut other = delta::open(&lake, "default", "file_index")
        .await
        .expect("open")
        .expect("table");
    let newest = 10_000;
    delta::commit_txns(
        &mut other,
        vec![deltalake_core::kernel::Action::Add(delta::add(
            "part-1000-x.parquet".into(),
            1,
            &[],
            None,
        ))],
        vec![delta::file_txn(1000, newest)],
        &[],
    )
    .await
    .expect("other writer");
    match submit(
        &lake,
        "default",
        "file_index",
        intent(1000, newest - 1, 999),
    )
    .await
    {
        Err(IngestError::Superseded(_)) => {}
        other => panic!("an older attempt after another writer's newer commit: {other:?}"),
    }
    submit(
        &lake,
        "default",
        "file_index",
        intent(1001, newest + 1, 1000),
    )
    .await
    .expect("a newer attempt of another file");
    let after = delta_rs_answers(&lake, [1000, 1001].into_iter()).await;
    assert_eq!(after[&1000], Some(newest));
    assert_eq!(after[&1001], Some(newest + 1));
}
