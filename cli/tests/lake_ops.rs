//! Operating a lake with the `dials` binary: serving never invents a lake, and a failed ingest says
//! truthfully whether its status is in the lake.

mod common;

use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("dials-lake-ops-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    dir
}

#[test]
fn serve_refuses_a_lake_that_does_not_exist_and_creates_nothing() {
    let typo = scratch("typo").join("lake-with-a-typo");
    let mut child = Command::new(env!("CARGO_BIN_EXE_dials"))
        .args([
            "serve",
            "--lake",
            typo.to_str().expect("utf8"),
            "--listen",
            "127.0.0.1:0",
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run dials");
    let t0 = Instant::now();
    while child.try_wait().expect("wait").is_none() && t0.elapsed() < Duration::from_secs(20) {
        std::thread::sleep(Duration::from_millis(50));
    }
    let still_serving = child.try_wait().expect("wait").is_none();
    if still_serving {
        let _ = child.kill();
    }
    let out = child.wait_with_output().expect("output");
    assert!(
        !still_serving,
        "serve must refuse a missing lake at once, not serve an empty one"
    );
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("no lake there"), "{err}");
    assert!(!typo.exists(), "serve created {}", typo.display());
}

#[test]
fn a_transient_ingest_failure_is_not_reported_as_recorded() {
    // The lake's th1 folder is a plain file: writing the data object fails with an I/O error of the
    // store (transient: a retry may succeed once the store is fixed), so no final status is recorded.
    let lake = scratch("transient");
    std::fs::create_dir_all(lake.join("default")).expect("lake");
    std::fs::write(lake.join("default").join("th1"), b"in the way").expect("blocker");
    let fx =
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures/data/small_zlib.root");
    let out = Command::new(env!("CARGO_BIN_EXE_dials"))
        .args([
            "ingest",
            fx.to_str().expect("utf8"),
            "--lake",
            lake.to_str().expect("utf8"),
            "--dataset",
            "/A/B-v1/DQMIO",
        ])
        .output()
        .expect("run dials");
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(
        !err.contains("(status recorded in file_index)"),
        "claims a status was recorded: {err}"
    );
    assert!(
        err.contains(
            "1 file(s) failed (no status recorded in file_index: transient failures, run again)"
        ),
        "{err}"
    );
    let _ = std::fs::remove_dir_all(&lake);
}

/// A lake in the format before Delta (plain Parquet folders: one `part-<file_id>.parquet` per file
/// and table, no log) becomes Delta tables in place: the same objects, untouched; objects of a
/// file that never FINISHED stay out; a second run changes nothing.
#[test]
fn migrate_turns_an_old_lake_into_delta_tables_in_place() {
    let dir = scratch("migrate");
    let lake = dir.join("lake");
    let input =
        dir.join("in/store/data/Run2024C/ZeroBias/DQMIO/PromptReco-v1/000/380/310/00000/m.root");
    std::fs::create_dir_all(input.parent().expect("dir")).expect("mkdir");
    std::fs::copy(
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures/data/small_zlib.root"),
        &input,
    )
    .expect("copy");
    let dials = |args: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_dials"))
            .args(args)
            .output()
            .expect("run dials")
    };
    let out = dials(&[
        "ingest",
        input.to_str().expect("utf8"),
        "--lake",
        lake.to_str().expect("utf8"),
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // Rewrite it as the old format: only the committed objects, under their old names; no logs.
    let tables = [
        "th1",
        "th2",
        "lumisection_index",
        "me_index",
        "dataset_index",
        "file_index",
    ];
    // Tables the old format did not have (issue 13): an old lake has no folder for them.
    let newer = [
        "th3",
        "profile1d",
        "profile2d",
        "scalar",
        "th1_run",
        "th2_run",
        "th3_run",
        "profile1d_run",
        "profile2d_run",
        "scalar_run",
    ];
    for t in newer {
        std::fs::remove_dir_all(lake.join("default").join(t)).expect("rm newer table");
    }
    let mut before = std::collections::BTreeMap::new();
    for t in tables {
        let tdir = lake.join("default").join(t);
        let keep = common::committed(&tdir);
        let mut old_names = Vec::new();
        for rel in &keep {
            let (folder, name) = rel
                .rsplit_once('/')
                .map_or(("", rel.as_str()), |(f, n)| (f, n));
            let id = name
                .trim_start_matches("part-")
                .split('-')
                .next()
                .expect("id");
            let old = if folder.is_empty() {
                format!("part-{id}.parquet")
            } else {
                format!("{folder}/part-{id}.parquet")
            };
            std::fs::rename(tdir.join(rel), tdir.join(format!("{old}.keep"))).expect("rename");
            old_names.push(old);
        }
        // Everything else (the log, uncommitted records) goes.
        std::fs::remove_dir_all(tdir.join("_delta_log")).expect("log");
        for e in walk(&tdir) {
            if e.extension().is_some_and(|x| x == "parquet") {
                std::fs::remove_file(e).expect("rm");
            }
        }
        for old in &old_names {
            std::fs::rename(tdir.join(format!("{old}.keep")), tdir.join(old)).expect("rename back");
        }
        old_names.sort();
        before.insert(t, old_names);
    }
    // An object of a file whose ingest never finished (the old format's orphan): not served then,
    // not committed now.
    let th1_run = lake.join("default/th1/run_number=380310");
    let some = before["th1"]
        .iter()
        .find(|n| n.starts_with("run_number=380310/"))
        .expect("th1 object");
    std::fs::copy(
        lake.join("default/th1").join(some),
        th1_run.join("part-999.parquet"),
    )
    .expect("orphan");
    for run in 0..2 {
        let out = dials(&["migrate", "--lake", lake.to_str().expect("utf8")]);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let report = String::from_utf8_lossy(&out.stdout);
        assert_eq!(
            report.lines().count(),
            tables.len() + newer.len(),
            "{report}"
        );
        for t in tables {
            assert_eq!(
                common::committed(&lake.join("default").join(t)),
                before[t],
                "run {run}: {t}"
            );
        }
        // The newer tables are created empty.
        for t in newer {
            assert!(
                common::committed(&lake.join("default").join(t)).is_empty(),
                "run {run}: {t}"
            );
        }
        if run == 1 {
            assert!(
                report.lines().all(|l| l.contains("\"already_delta\":true")),
                "{report}"
            );
        }
    }
}

fn walk(dir: &std::path::Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let p = e.path();
        if p.is_dir() {
            out.extend(walk(&p));
        } else {
            out.push(p);
        }
    }
    out
}

/// Rows of a Delta table folder at its latest version, and its live object names.
fn live_rows(table: &std::path::Path) -> (u64, Vec<String>) {
    let live = common::committed_rows(table);
    let rows = live.values().sum();
    let names = live
        .keys()
        .map(|p| p.rsplit('/').next().unwrap_or(p).to_string())
        .collect();
    (rows, names)
}

/// `dials ingest --compact-every N` compacts the lake while it ingests: every file's rows are
/// there exactly once, and the tables hold merged objects instead of one object per file.
#[test]
fn ingest_compacts_the_lake_along_the_way() {
    let dir = scratch("compact-every");
    let fixture =
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures/data/small_zlib.root");
    let run = |lake: &std::path::Path, inputs: &std::path::Path, every: &str| {
        let out = Command::new(env!("CARGO_BIN_EXE_dials"))
            .args(["ingest", inputs.to_str().expect("utf8"), "--lake"])
            .arg(lake)
            .args(["--compact-every", every])
            .env("DIALS_LOG", "dials=info")
            .output()
            .expect("run dials");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "{err}");
        // Compaction runs in a `dials compact` child process (its memory goes back to the system
        // when it exits), not in the ingesting process.
        assert!(
            !err.contains("compacting in this one")
                && !err.contains("compaction while ingesting failed"),
            "{err}"
        );
        if every != "0" {
            assert!(err.contains("compacted the lake while ingesting"), "{err}");
        }
    };
    let one = dir.join("one");
    let single =
        one.join("store/data/Run2024C/ZeroBias/DQMIO/PromptReco-v1/000/380/310/00000/c0.root");
    std::fs::create_dir_all(single.parent().expect("dir")).expect("mkdir");
    std::fs::copy(&fixture, &single).expect("copy");
    run(&dir.join("lake-one"), &one, "0");
    let (per_file, _) = live_rows(&dir.join("lake-one/default/th1"));
    assert!(per_file > 0);

    let inputs = dir.join("in");
    for i in 0..8 {
        let p = inputs.join(format!(
            "store/data/Run2024C/ZeroBias/DQMIO/PromptReco-v1/000/380/310/00000/c{i}.root"
        ));
        std::fs::create_dir_all(p.parent().expect("dir")).expect("mkdir");
        std::fs::copy(&fixture, &p).expect("copy");
    }
    let lake = dir.join("lake");
    run(&lake, &inputs, "4");
    for table in ["th1", "lumisection_index", "file_index"] {
        let (rows, names) = live_rows(&lake.join("default").join(table));
        let (alone, _) = live_rows(&dir.join("lake-one/default").join(table));
        assert!(alone > 0, "{table}: rows counted from the log's statistics");
        assert_eq!(rows, 8 * alone, "{table}: every file's rows exactly once");
        assert!(
            names.iter().any(|n| n.starts_with("part-c-")),
            "{table}: no merged object after ingesting with --compact-every 4: {names:?}"
        );
    }
    // Without it, one object per file (and run) stays.
    let plain = dir.join("lake-plain");
    run(&plain, &inputs, "0");
    let (_, names) = live_rows(&plain.join("default/th1"));
    assert!(names.iter().all(|n| !n.starts_with("part-c-")), "{names:?}");
}
