//! Group commit (`committer.rs`): concurrent ingests in one process share Delta commits per table,
//! and every file still lands exactly once, with its own application transaction at its own
//! generation; two attempts of one file in the same batch leave one copy of its rows.

mod common;

use std::collections::BTreeMap;
use std::sync::Arc;

use common::{fixtures, lfn, read_table, scratch};
use dials_dqmio::{MemSource, SourceVersion};
use dials_lake::{ingest, IngestError, IngestRequest, Location, Workspaces};
use serde_json::Value;

/// Per commit of a table's log: the application transactions it carries (app id → version).
fn txns_per_commit(table: &std::path::Path) -> Vec<BTreeMap<String, i64>> {
    let mut commits: Vec<_> = std::fs::read_dir(table.join("_delta_log"))
        .expect("log")
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "json"))
        .collect();
    commits.sort();
    commits
        .iter()
        .map(|c| {
            std::fs::read_to_string(c)
                .expect("commit")
                .lines()
                .filter_map(|l| serde_json::from_str::<Value>(l).ok())
                .filter_map(|v| {
                    let t = v.get("txn")?;
                    Some((
                        t.get("appId")?.as_str()?.to_string(),
                        t.get("version")?.as_i64()?,
                    ))
                })
                .collect()
        })
        .collect()
}

fn source(fixture: &str, name: &str, modified_ms: i64) -> Arc<MemSource> {
    let bytes = std::fs::read(fixtures().join(fixture)).expect("fixture");
    Arc::new(MemSource::new(name, bytes).with_version(SourceVersion {
        modified_ms,
        etag: format!("\"{name}-{modified_ms}\""),
    }))
}

/// Ingests a copy of `small_lz4.root` as file `i` (its own name and version).
async fn ingest_copy(
    lake: &Location,
    ws: &Workspaces,
    i: usize,
) -> Result<dials_lake::IngestReport, IngestError> {
    let req = IngestRequest {
        logical_file_name: lfn(i),
        dataset: None,
        deadline: None,
    };
    ingest(
        lake,
        ws,
        &req,
        source("small_lz4.root", &lfn(i), 1 + i as i64),
        None,
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_files_share_commits_and_each_lands_once() {
    let dir = scratch("group-commit");
    let lake = Location::parse(dir.to_str().expect("utf8"), true).expect("lake");
    let ws = Workspaces::default();
    const FILES: usize = 32;
    let tasks: Vec<_> = (0..FILES)
        .map(|i| {
            let lake = lake.clone();
            let ws = ws.clone();
            tokio::spawn(async move {
                let req = IngestRequest {
                    logical_file_name: lfn(i),
                    dataset: None,
                    deadline: None,
                };
                ingest(
                    &lake,
                    &ws,
                    &req,
                    source("small_lz4.root", &lfn(i), 1_733_000_000_000 + i as i64),
                    None,
                )
                .await
            })
        })
        .collect();
    let mut generations = BTreeMap::new();
    for (i, t) in tasks.into_iter().enumerate() {
        let rep = t.await.expect("task").expect("ingest");
        generations.insert(format!("dials.file.{}", rep.file_id), i);
    }
    // Exactly once: every file's rows, no more.
    let per_file = read_table(&dir.join("default/th1"))
        .iter()
        .map(|(_, b)| b.num_rows())
        .sum::<usize>()
        / FILES;
    let single = scratch("group-commit-single");
    let single_lake = Location::parse(single.to_str().expect("utf8"), true).expect("lake");
    let req = IngestRequest {
        logical_file_name: lfn(0),
        dataset: None,
        deadline: None,
    };
    ingest(
        &single_lake,
        &ws,
        &req,
        source("small_lz4.root", &lfn(0), 1),
        None,
    )
    .await
    .expect("single");
    let alone: usize = read_table(&single.join("default/th1"))
        .iter()
        .map(|(_, b)| b.num_rows())
        .sum();
    assert_eq!(per_file, alone);
    let th1: usize = read_table(&dir.join("default/th1"))
        .iter()
        .map(|(_, b)| b.num_rows())
        .sum();
    assert_eq!(th1, FILES * alone, "every file's th1 rows exactly once");
    let records = read_table(&dir.join("default/file_index"));
    assert_eq!(records.len(), FILES);
    // Commits were shared: fewer th1 commits than files, and some commit carries several files'
    // transactions; every file has exactly one th1 transaction, at its own generation.
    let commits = txns_per_commit(&dir.join("default/th1"));
    let with_files: Vec<_> = commits.iter().filter(|c| !c.is_empty()).collect();
    let widest = with_files.iter().map(|c| c.len()).max().unwrap_or(0);
    eprintln!(
        "th1: {} commits for {FILES} files, widest {widest}",
        with_files.len()
    );
    assert!(
        with_files.len() < FILES,
        "no commit was shared: {} commits for {FILES} files",
        with_files.len()
    );
    assert!(widest >= 2);
    let mut seen: BTreeMap<String, i64> = BTreeMap::new();
    for c in &with_files {
        for (app, v) in c.iter() {
            assert!(
                seen.insert(app.clone(), *v).is_none(),
                "{app} committed to th1 twice"
            );
        }
    }
    assert_eq!(seen.len(), FILES);
    for (app, v) in &seen {
        assert!(generations.contains_key(app), "unknown transaction {app}");
        assert!(*v > 1 << 62, "{app}: a versioned generation, got {v}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_attempts_of_one_file_among_others_leave_one_copy() {
    let dir = scratch("group-commit-same-file");
    let lake = Location::parse(dir.to_str().expect("utf8"), true).expect("lake");
    let ws = Workspaces::default();
    // Attempts 0 and 1 are the same version of file 0 (a redelivery running beside the first
    // delivery); files 1..8 are others, all at once.
    let tasks: Vec<_> = (0..10usize)
        .map(|i| {
            let lake = lake.clone();
            let ws = ws.clone();
            let file = i.saturating_sub(1);
            tokio::spawn(async move {
                let req = IngestRequest {
                    logical_file_name: lfn(file),
                    dataset: None,
                    deadline: None,
                };
                ingest(
                    &lake,
                    &ws,
                    &req,
                    source("small_zlib.root", &lfn(file), 1_733_000_000_000),
                    None,
                )
                .await
            })
        })
        .collect();
    for t in tasks {
        match t.await.expect("task") {
            Ok(_) | Err(IngestError::Superseded(_)) => {}
            Err(e) => panic!("ingest: {e}"),
        }
    }
    let alone = scratch("group-commit-same-file-alone");
    let alone_lake = Location::parse(alone.to_str().expect("utf8"), true).expect("lake");
    let req = IngestRequest {
        logical_file_name: lfn(0),
        dataset: None,
        deadline: None,
    };
    ingest(
        &alone_lake,
        &ws,
        &req,
        source("small_zlib.root", &lfn(0), 1),
        None,
    )
    .await
    .expect("alone");
    let one: usize = read_table(&alone.join("default/th1"))
        .iter()
        .map(|(_, b)| b.num_rows())
        .sum();
    let th1: usize = read_table(&dir.join("default/th1"))
        .iter()
        .map(|(_, b)| b.num_rows())
        .sum();
    assert_eq!(th1, 9 * one, "9 files, each once");
    let records = read_table(&dir.join("default/file_index"));
    assert_eq!(records.len(), 9);
}

/// Linger (`committer::Pending`): while another file of the process is still on its way, a data
/// table's commit waits for it, so two files whose ingests overlap share one th1 commit even when
/// the first is ready long before the second starts writing.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_data_commit_waits_for_a_pending_file_and_shares_it() {
    let dir = scratch("group-commit-linger");
    let lake = Location::parse(dir.to_str().expect("utf8"), true).expect("lake");
    let ws = Workspaces::default();
    let run = |i: usize| {
        let (lake, ws) = (lake.clone(), ws.clone());
        tokio::spawn(async move { ingest_copy(&lake, &ws, i).await })
    };
    // A file of this process that has not reached its commits yet (say, still decoding).
    let held = dials_lake::committer::Pending::new();
    let first = run(0);
    // The first file is written and waits at its th1 commit; the second starts only now.
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    let second = run(1);
    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    drop(held);
    first.await.expect("task").expect("first");
    second.await.expect("task").expect("second");
    let commits = txns_per_commit(&dir.join("default/th1"));
    let with_files: Vec<_> = commits.iter().filter(|c| !c.is_empty()).collect();
    assert_eq!(
        with_files.len(),
        1,
        "both files' th1 changes in one commit: {with_files:?}"
    );
    assert_eq!(with_files[0].len(), 2);
}

/// A table this process loaded earlier is followed past another writer's commits while the next
/// file decodes (`committer::prepare`): that file's commit is decided on the latest version and
/// loses no race. Without the prepare step the commit is decided on the stale table, refused, and
/// decided again (`races_lost` counts it).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_prepared_table_follows_other_writers_and_its_commit_loses_no_race() {
    use dials_lake::{committer, delta};
    let dir = scratch("group-commit-prepare");
    let lake = Location::parse(dir.to_str().expect("utf8"), true).expect("lake");
    let ws = Workspaces::default();
    ingest_copy(&lake, &ws, 0).await.expect("ingest");
    // A table committed to moments ago is taken as current (`DIALS_PREPARE_FRESH_MS`, 1 s): the
    // next file comes later here.
    tokio::time::sleep(std::time::Duration::from_millis(1200)).await;
    // Another writer (a table handle of its own, as another process has) moves th1 and me_index.
    for table in ["th1", "me_index"] {
        let mut t = delta::open(&lake, "default", table)
            .await
            .expect("open")
            .expect("table");
        let txn = deltalake_core::kernel::Transaction::new_with_last_update(
            format!("other.writer.{table}"),
            1,
            Some(delta::now_ms()),
        );
        delta::commit(&mut t, vec![], Some(txn), &[])
            .await
            .expect("other writer's commit");
    }
    let before = committer::races_lost(&lake, "default", "th1")
        + committer::races_lost(&lake, "default", "me_index");
    ingest_copy(&lake, &ws, 1).await.expect("ingest");
    let after = committer::races_lost(&lake, "default", "th1")
        + committer::races_lost(&lake, "default", "me_index");
    assert_eq!(
        after - before,
        0,
        "the commits were decided on a stale table and refused"
    );
    // Exactly once still: both files' th1 rows, the other writer's commit kept.
    let per_file = read_table(&dir.join("default/th1"))
        .iter()
        .map(|(_, b)| b.num_rows())
        .sum::<usize>();
    let records = read_table(&dir.join("default/file_index"));
    assert_eq!(records.len(), 2);
    assert!(per_file > 0 && per_file % 2 == 0);
    let apps: Vec<String> = txns_per_commit(&dir.join("default/th1"))
        .into_iter()
        .flat_map(|c| c.into_keys())
        .collect();
    assert!(apps.iter().any(|a| a == "other.writer.th1"));
    assert_eq!(
        apps.iter().filter(|a| a.starts_with("dials.file.")).count(),
        2
    );
}
