//! Every value this reader decodes equals what ROOT itself reports for the committed fixtures
//! (`tests/fixtures/data/*.expected.jsonl`, written by `tests/fixtures/dump_root.py` with ROOT 6.40).

mod common;

use std::path::Path;

use dials_dqmio::dump::DumpLine;
use dials_dqmio::{DqmioFile, MeKind, Selection};
use serde_json::Value;

/// Compares two JSON values exactly: numbers by their f64 bits (so -0.0 ≠ 0.0), ints stay ints.
fn same(a: &Value, b: &Value, path: &str, diffs: &mut Vec<String>) {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => {
            let ints = (x.is_i64() || x.is_u64(), y.is_i64() || y.is_u64());
            let eq = match ints {
                (true, true) => x.as_i64() == y.as_i64() && x.as_u64() == y.as_u64(),
                (false, false) => x.as_f64().map(f64::to_bits) == y.as_f64().map(f64::to_bits),
                _ => false,
            };
            if !eq {
                diffs.push(format!("{path}: {x} != {y}"));
            }
        }
        (Value::Array(x), Value::Array(y)) => {
            if x.len() != y.len() {
                diffs.push(format!("{path}: length {} != {}", x.len(), y.len()));
                return;
            }
            for (i, (u, v)) in x.iter().zip(y).enumerate() {
                same(u, v, &format!("{path}[{i}]"), diffs);
            }
        }
        (Value::Object(x), Value::Object(y)) => {
            for k in x.keys().chain(y.keys()) {
                match (x.get(k), y.get(k)) {
                    (Some(u), Some(v)) => same(u, v, &format!("{path}.{k}"), diffs),
                    (u, v) => diffs.push(format!(
                        "{path}.{k}: present {} vs {}",
                        u.is_some(),
                        v.is_some()
                    )),
                }
            }
        }
        _ => {
            if a != b {
                diffs.push(format!("{path}: {a} != {b}"));
            }
        }
    }
}

fn check_against_root(root_file: &Path) -> usize {
    let expected_path = root_file.with_extension("expected.jsonl");
    let expected: Vec<Value> = std::fs::read_to_string(&expected_path)
        .unwrap_or_else(|e| panic!("{}: {e}", expected_path.display()))
        .lines()
        .map(|l| serde_json::from_str(l).expect("expected line is JSON"))
        .collect();
    let file =
        DqmioFile::open_path(root_file).unwrap_or_else(|e| panic!("{}: {e}", root_file.display()));
    let mut got = Vec::new();
    file.for_each(&Selection::default(), |me| {
        got.push(serde_json::to_value(DumpLine::new(&me)).expect("serialisable"));
        Ok(())
    })
    .unwrap_or_else(|e| panic!("{}: {e}", root_file.display()));
    assert_eq!(
        got.len(),
        expected.len(),
        "{}: number of elements",
        root_file.display()
    );
    let mut diffs = Vec::new();
    for (i, (g, e)) in got.iter().zip(&expected).enumerate() {
        same(g, e, &format!("line {i} ({})", e["me"]), &mut diffs);
    }
    assert!(
        diffs.is_empty(),
        "{}: {} differences, first: {:#?}",
        root_file.display(),
        diffs.len(),
        &diffs[..diffs.len().min(10)]
    );
    got.len()
}

fn fixture_files() -> Vec<std::path::PathBuf> {
    let mut v: Vec<_> = std::fs::read_dir(common::fixtures())
        .expect("fixtures folder")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            p.extension().is_some_and(|x| x == "root")
                && p.with_extension("expected.jsonl").exists()
        })
        .collect();
    v.sort();
    v
}

#[test]
fn every_fixture_matches_root_exactly() {
    let files = fixture_files();
    assert!(
        files.len() >= 6,
        "expected the committed fixtures, found {files:?}"
    );
    for f in files {
        let n = check_against_root(&f);
        assert!(n > 0, "{}: no elements", f.display());
    }
}

#[test]
fn objects_over_16_mib_in_every_compression() {
    // `tests/fixtures/regen.sh --big` writes them (the test script does, before the tests).
    for c in ["zlib", "lz4", "zstd", "lzma", "none"] {
        let big = common::fixtures().join(format!("../big/big_{c}.root"));
        assert!(
            big.exists(),
            "{} missing: run tests/fixtures/regen.sh --big",
            big.display()
        );
        check_against_root(&big);
    }
}

#[test]
fn all_compressions_decode_to_the_same_values() {
    let dump = |name: &str| {
        let f = DqmioFile::open_path(common::fixtures().join(name)).expect("open");
        let mut v = Vec::new();
        f.for_each(&Selection::default(), |me| {
            v.push(me);
            Ok(())
        })
        .expect("read");
        v
    };
    let reference = dump("small_zlib.root");
    for other in [
        "small_lzma.root",
        "small_lz4.root",
        "small_zstd.root",
        "small_none.root",
    ] {
        assert_eq!(dump(other), reference, "{other}");
    }
}

#[test]
fn every_kind_is_present_in_the_fixtures() {
    let f = DqmioFile::open_path(common::fixtures().join("small_zlib.root")).expect("open");
    let mut seen = std::collections::BTreeSet::new();
    f.for_each(&Selection::default(), |me| {
        seen.insert(me.kind);
        Ok(())
    })
    .expect("read");
    assert_eq!(seen.len(), MeKind::ALL.len(), "kinds seen: {seen:?}");
    assert_eq!(f.layout(), 14);
    let old = DqmioFile::open_path(common::fixtures().join("layout12.root")).expect("open");
    assert_eq!(old.layout(), 12);
}

#[test]
fn name_filter_skips_values_and_matches_regex() {
    let f = DqmioFile::open_path(common::fixtures().join("small_zlib.root")).expect("open");
    let sel = Selection {
        name: Some(regex::Regex::new("^PixelPhase1/").expect("regex")),
        ..Default::default()
    };
    let mut n = 0;
    f.for_each(&sel, |me| {
        assert!(me.name.starts_with("PixelPhase1/"), "{}", me.name);
        n += 1;
        Ok(())
    })
    .expect("read");
    assert!(n > 0);
    // Per-kind iteration sees the same elements as the Indices-ordered one.
    let mut m = 0;
    for kind in f.trees().keys() {
        f.for_each_of_kind(*kind, &sel, |_| {
            m += 1;
            Ok(())
        })
        .expect("read");
    }
    assert_eq!(n, m);
}

#[test]
fn per_run_and_empty_lumisections_are_indexed() {
    let f = DqmioFile::open_path(common::fixtures().join("small_zlib.root")).expect("open");
    assert!(
        f.indices().iter().any(|r| r.lumi == 0 && r.kind.is_some()),
        "per-run rows"
    );
    assert!(
        f.indices()
            .iter()
            .any(|r| r.kind.is_none() && r.type_code == 1000),
        "type-1000 rows"
    );
}
