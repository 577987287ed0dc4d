//! Compaction and vacuum: merged objects hold exactly the rows they replace; a file ingested again
//! after its rows were merged replaces them (as if never merged); vacuum deletes only what no
//! snapshot needs.

mod common;

use std::path::Path;

use arrow::util::display::{ArrayFormatter, FormatOptions};
use common::{committed, fixtures, ingest_fixture, lfn, read_table, scratch};
use dials_lake::compact::{self, CompactOptions};
use dials_lake::{Location, Workspaces};

const TABLES: [&str; 4] = ["th1", "th2", "lumisection_index", "me_index"];

/// Every row of a table as text (run first), sorted: a multiset to compare lakes by.
fn table_rows(dir: &Path, columns: Option<&[&str]>) -> Vec<String> {
    let mut out = Vec::new();
    let opts = FormatOptions::default();
    for (run, b) in read_table(dir) {
        let cols: Vec<_> = b
            .schema()
            .fields()
            .iter()
            .enumerate()
            .filter(|(_, f)| columns.is_none_or(|c| c.contains(&f.name().as_str())))
            .map(|(i, _)| ArrayFormatter::try_new(b.column(i).as_ref(), &opts).expect("formatter"))
            .collect();
        for i in 0..b.num_rows() {
            let mut s = run.to_string();
            for c in &cols {
                s.push('|');
                s.push_str(&c.value(i).to_string());
            }
            out.push(s);
        }
    }
    out.sort();
    out
}

fn lake_rows(dir: &Path) -> Vec<Vec<String>> {
    let ws = dir.join("default");
    let mut all: Vec<Vec<String>> = TABLES
        .iter()
        .map(|t| table_rows(&ws.join(t), None))
        .collect();
    all.push(table_rows(
        &ws.join("file_index"),
        Some(&["file_id", "status", "dataset_id"]),
    ));
    all
}

fn open(dir: &Path) -> Location {
    Location::parse(dir.to_str().expect("utf8"), true).expect("lake")
}

async fn ingest_ten(lake: &Location, replaced: Option<(usize, &str)>) {
    for i in 0..10 {
        let fixture = match replaced {
            Some((j, fx)) if j == i => fx,
            _ => "small_zlib.root",
        };
        ingest_fixture(lake, &Workspaces::default(), fixture, &lfn(i)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn compaction_merges_each_partition_and_keeps_every_row() {
    let dir = scratch("compact");
    let lake = open(&dir);
    ingest_ten(&lake, None).await;
    let before = lake_rows(&dir);
    let th1_before = committed(&dir.join("default/th1"));
    assert_eq!(
        th1_before.len() % 10,
        0,
        "ten objects per run partition before"
    );
    let report = compact::compact_lake(&lake, &["default".to_string()], CompactOptions::default())
        .await
        .expect("compact");
    for t in &report {
        assert_eq!(t.deferred, 0, "{t:?}");
        assert!(t.merged >= 1 && t.inputs >= 10, "every table merged: {t:?}");
    }
    assert_eq!(lake_rows(&dir), before, "the same rows after compaction");
    for table in TABLES.iter().chain(["file_index"].iter()) {
        let objs = committed(&dir.join("default").join(table));
        let parts: std::collections::BTreeSet<_> = objs
            .iter()
            .map(|p| p.parent().map(Path::to_path_buf))
            .collect();
        assert_eq!(
            objs.len(),
            parts.len(),
            "{table}: one object per partition after compaction: {objs:?}"
        );
        assert!(objs.iter().all(|p| p
            .file_name()
            .is_some_and(|n| n.to_string_lossy().starts_with(compact::MERGED_PREFIX))));
        assert!(
            objs.iter().all(|p| p.exists()),
            "{table}: committed objects exist"
        );
    }
    // Nothing left to merge: a second run commits nothing.
    let again = compact::compact_lake(&lake, &["default".to_string()], CompactOptions::default())
        .await
        .expect("compact");
    assert!(again.iter().all(|t| t.merged == 0), "{again:?}");

    // Vacuum with no retention deletes the inputs and a never-committed object, keeps every
    // committed object, and the rows stay.
    let stray = dir
        .join("default/th1")
        .join(
            th1_before[0]
                .parent()
                .and_then(Path::file_name)
                .expect("run dir"),
        )
        .join("part-1-deadbeef.parquet");
    std::fs::write(&stray, b"not committed").expect("stray");
    let vac = compact::vacuum(&lake, "default", std::time::Duration::ZERO)
        .await
        .expect("vacuum");
    let deleted: usize = vac.iter().map(|v| v.deleted).sum();
    assert!(deleted >= th1_before.len(), "inputs deleted: {vac:?}");
    assert!(
        th1_before.iter().all(|p| !p.exists()),
        "merged inputs are gone"
    );
    assert!(!stray.exists(), "uncommitted object is gone");
    assert_eq!(lake_rows(&dir), before, "the same rows after vacuum");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_file_ingested_again_after_compaction_replaces_its_merged_rows() {
    // Lake A: ten files, compacted, then file 3 ingested again as another version.
    let a = scratch("compact-reingest-a");
    let lake_a = open(&a);
    ingest_ten(&lake_a, None).await;
    compact::compact_lake(&lake_a, &["default".to_string()], CompactOptions::default())
        .await
        .expect("compact");
    ingest_fixture(&lake_a, &Workspaces::default(), "tiny_none.root", &lfn(3)).await;
    // Lake B: the same files, file 3 in its second version from the start, never compacted.
    let b = scratch("compact-reingest-b");
    let lake_b = open(&b);
    ingest_ten(&lake_b, Some((3, "tiny_none.root"))).await;
    assert_eq!(
        lake_rows(&a),
        lake_rows(&b),
        "re-ingest after compaction = ingest of that version"
    );
    // And file 3 ingested once more in its first version: back to ten equal files.
    ingest_fixture(&lake_a, &Workspaces::default(), "small_zlib.root", &lfn(3)).await;
    let c = scratch("compact-reingest-c");
    let lake_c = open(&c);
    ingest_ten(&lake_c, None).await;
    assert_eq!(lake_rows(&a), lake_rows(&c));
}

/// The run partitions of a table and their committed objects' names.
fn by_run(table_dir: &Path) -> std::collections::BTreeMap<String, Vec<String>> {
    let mut m: std::collections::BTreeMap<String, Vec<String>> = Default::default();
    for p in committed(table_dir) {
        let run = p
            .parent()
            .and_then(Path::file_name)
            .map(|n| n.to_string_lossy().to_string())
            .expect("run dir");
        m.entry(run).or_default().push(
            p.file_name()
                .map(|n| n.to_string_lossy().to_string())
                .expect("name"),
        );
    }
    m
}

/// True when every copy object covers exactly the main table's objects of its run.
fn copies_current(ws: &Path, table: &str) -> Vec<bool> {
    let main = by_run(&ws.join(table));
    let copy = by_run(&ws.join(format!("{table}_by_me")));
    assert_eq!(
        main.keys().collect::<Vec<_>>(),
        copy.keys().collect::<Vec<_>>(),
        "{table}: a copy per run"
    );
    copy.iter()
        .map(|(run, objs)| {
            assert_eq!(objs.len(), 1, "{table} {run}: one copy object: {objs:?}");
            let want = dials_lake::me_major::covers(main[run].iter().map(String::as_str));
            dials_lake::me_major::covers_of(&objs[0]) == Some(want.as_str())
        })
        .collect()
}

/// The (me_id, ls_number) sequence of each copy object, asserted sorted.
fn assert_me_major(dir: &Path) {
    use arrow::array::AsArray;
    use arrow::datatypes::Int64Type;
    for (run, b) in read_table(dir) {
        let me = b
            .column_by_name("me_id")
            .expect("me_id")
            .as_primitive::<Int64Type>();
        let ls = b
            .column_by_name("ls_number")
            .expect("ls")
            .as_primitive::<Int64Type>();
        for i in 1..b.num_rows() {
            assert!(
                (me.value(i - 1), ls.value(i - 1)) <= (me.value(i), ls.value(i)),
                "run {run} row {i}: not ME-major"
            );
        }
    }
    // Also across batches of an object: read each object as one sequence.
    for p in committed(dir) {
        let f = std::fs::File::open(&p).expect("open");
        let mut last = (i64::MIN, i64::MIN);
        for b in parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(f)
            .expect("parquet")
            .build()
            .expect("reader")
        {
            let b = b.expect("batch");
            let me = b
                .column_by_name("me_id")
                .expect("me_id")
                .as_primitive::<Int64Type>();
            let ls = b
                .column_by_name("ls_number")
                .expect("ls")
                .as_primitive::<Int64Type>();
            for i in 0..b.num_rows() {
                assert!(last <= (me.value(i), ls.value(i)), "{p:?}: not ME-major");
                last = (me.value(i), ls.value(i));
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn compaction_writes_a_current_me_major_copy_and_a_reingest_makes_it_stale() {
    let dir = scratch("compact-memajor");
    let lake = open(&dir);
    let ws = dir.join("default");
    ingest_ten(&lake, None).await;
    let report = compact::compact_lake(&lake, &["default".to_string()], CompactOptions::default())
        .await
        .expect("compact");
    for table in compact::ME_MAJOR_TABLES {
        let t = report.iter().find(|t| t.table == table).expect("reported");
        let runs = by_run(&ws.join(table)).len();
        assert_eq!(
            (t.copies, t.copies_current, t.copies_skipped),
            (runs, 0, 0),
            "{t:?}"
        );
        assert!(
            copies_current(&ws, table).iter().all(|c| *c),
            "{table}: every copy current"
        );
        assert_eq!(
            table_rows(&ws.join(format!("{table}_by_me")), None),
            table_rows(&ws.join(table), None),
            "{table}: the copy holds the main rows"
        );
        assert_me_major(&ws.join(format!("{table}_by_me")));
    }
    assert!(report
        .iter()
        .filter(|t| !compact::ME_MAJOR_TABLES.contains(&t.table.as_str()))
        .all(|t| t.copies == 0));
    // Nothing changed: the next compaction writes no copy.
    let again = compact::compact_lake(&lake, &["default".to_string()], CompactOptions::default())
        .await
        .expect("compact");
    assert!(again.iter().all(|t| t.copies == 0), "{again:?}");
    assert!(
        again
            .iter()
            .filter(|t| t.table == "th1")
            .all(|t| t.copies_current == by_run(&ws.join("th1")).len()),
        "{again:?}"
    );

    // File 3 again, as another version: its runs' main objects change, so their copies are stale.
    ingest_fixture(&lake, &Workspaces::default(), "tiny_none.root", &lfn(3)).await;
    let stale = copies_current(&ws, "th1");
    assert!(
        stale.iter().any(|c| !*c),
        "the re-ingested file's runs have a stale copy: {stale:?}"
    );
    assert_ne!(
        table_rows(&ws.join("th1_by_me"), None),
        table_rows(&ws.join("th1"), None),
        "the stale copy differs from main"
    );
    // The next compaction brings them up to date.
    let report = compact::compact_lake(&lake, &["default".to_string()], CompactOptions::default())
        .await
        .expect("compact");
    let t = report.iter().find(|t| t.table == "th1").expect("th1");
    assert_eq!(t.copies, stale.iter().filter(|c| !**c).count(), "{t:?}");
    for table in compact::ME_MAJOR_TABLES {
        assert!(
            copies_current(&ws, table).iter().all(|c| *c),
            "{table}: current again"
        );
        assert_eq!(
            table_rows(&ws.join(format!("{table}_by_me")), None),
            table_rows(&ws.join(table), None),
            "{table}: equal to main again"
        );
        assert_me_major(&ws.join(format!("{table}_by_me")));
    }
    // Vacuum deletes the replaced copy objects.
    let vac = compact::vacuum(&lake, "default", std::time::Duration::ZERO)
        .await
        .expect("vacuum");
    assert!(
        vac.iter().any(|v| v.table == "th1_by_me" && v.deleted >= 1),
        "{vac:?}"
    );
    let on_disk: usize = std::fs::read_dir(ws.join("th1_by_me"))
        .expect("dir")
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().starts_with("run_number="))
        .map(|e| std::fs::read_dir(e.path()).expect("run").count())
        .sum();
    assert_eq!(
        on_disk,
        by_run(&ws.join("th1_by_me")).len(),
        "only the current copy objects remain"
    );
}

/// A redelivery of the same source version (same generation) after compaction merged its first
/// ingest: the merged rows of the file are written again without it, so its rows stay once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_same_version_ingested_again_after_compaction_keeps_its_rows_once() {
    use dials_dqmio::{MemSource, SourceVersion};
    let dir = scratch("compact-same-version");
    let lake = open(&dir);
    let versioned = |i: usize| {
        let bytes = std::fs::read(fixtures().join("small_zlib.root")).expect("fixture");
        std::sync::Arc::new(MemSource::new(&lfn(i), bytes).with_version(SourceVersion {
            modified_ms: 1_733_000_000_000 + i as i64,
            etag: format!("\"etag-{i}\""),
        }))
    };
    let request = |i: usize| dials_lake::IngestRequest {
        logical_file_name: lfn(i),
        dataset: None,
        deadline: None,
    };
    for i in 0..10 {
        dials_lake::ingest(
            &lake,
            &Workspaces::default(),
            &request(i),
            versioned(i),
            None,
        )
        .await
        .expect("ingest");
    }
    compact::compact_lake(&lake, &["default".to_string()], CompactOptions::default())
        .await
        .expect("compact");
    let merged = committed(&dir.join("default/th1"))
        .iter()
        .filter(|p| {
            p.file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with(compact::MERGED_PREFIX))
        })
        .count();
    assert!(merged > 0, "compaction merged the files' th1 objects");
    let once = lake_rows(&dir);
    dials_lake::ingest(
        &lake,
        &Workspaces::default(),
        &request(2),
        versioned(2),
        None,
    )
    .await
    .expect("redelivered");
    assert_eq!(
        lake_rows(&dir),
        once,
        "the same version ingested twice must count once"
    );
}
