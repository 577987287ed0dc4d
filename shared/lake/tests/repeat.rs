//! A file that holds the same ME more than once in one lumisection (tests/fixtures/data/repeat_me.root,
//! written by ROOT: two process histories, two kinds, two entries per `Indices` row): every occurrence
//! becomes its own row, and `seq` makes (run, lumisection, ME, file, seq) unique.

mod common;

use std::collections::BTreeMap;

use arrow::array::{Array, AsArray};
use arrow::datatypes::Int64Type;
use common::{fixtures, ingest_fixture, read_table, scratch};
use dials_lake::{Location, Workspaces};
use serde_json::Value;

const LFN: &str = "/store/data/Run2024C/ZeroBias/DQMIO/PromptReco-v1/000/380/400/00000/repeat.root";

/// (run, ls, me, kind) → entries of every occurrence, as ROOT reports them.
fn oracle(dim: u8) -> BTreeMap<(i64, i64, String, String), Vec<i64>> {
    let text =
        std::fs::read_to_string(fixtures().join("repeat_me.expected.jsonl")).expect("oracle");
    let mut m: BTreeMap<_, Vec<i64>> = BTreeMap::new();
    for line in text.lines() {
        let v: Value = serde_json::from_str(line).expect("json");
        let kind = v["kind"].as_str().expect("kind").to_string();
        if !kind.starts_with(if dim == 1 { "TH1" } else { "TH2" }) {
            continue;
        }
        let key = (
            v["run_number"].as_i64().expect("run"),
            v["ls_number"].as_i64().expect("ls"),
            v["me"].as_str().expect("me").to_string(),
            kind,
        );
        m.entry(key)
            .or_default()
            .push(v["entries"].as_i64().expect("entries"));
    }
    m.values_mut().for_each(|v| v.sort_unstable());
    m
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn repeated_mes_are_all_kept_with_a_unique_key() {
    let dir = scratch("repeat");
    let lake = Location::parse(dir.to_str().expect("utf8"), true).expect("lake");
    ingest_fixture(&lake, &Workspaces::default(), "repeat_me.root", LFN).await;
    for dim in [1u8, 2] {
        let table = if dim == 1 { "th1" } else { "th2" };
        let mut got: BTreeMap<(i64, i64, String, String), Vec<i64>> = BTreeMap::new();
        let mut keys = Vec::new();
        for (run, b) in read_table(&dir.join("default").join(table)) {
            let ls = b
                .column_by_name("ls_number")
                .expect("ls")
                .as_primitive::<Int64Type>()
                .clone();
            let me = b
                .column_by_name("me")
                .expect("me")
                .as_string::<i32>()
                .clone();
            let kind = b
                .column_by_name("kind")
                .expect("kind")
                .as_string::<i32>()
                .clone();
            let entries = b
                .column_by_name("entries")
                .expect("entries")
                .as_primitive::<Int64Type>()
                .clone();
            let file = b
                .column_by_name("file_id")
                .expect("file")
                .as_primitive::<Int64Type>()
                .clone();
            let seq = b
                .column_by_name("seq")
                .expect("seq column")
                .as_primitive::<Int64Type>()
                .clone();
            assert_eq!(seq.null_count(), 0, "{table}: seq is always written");
            for i in 0..b.num_rows() {
                let k = (
                    run,
                    ls.value(i),
                    me.value(i).to_string(),
                    kind.value(i).to_string(),
                );
                got.entry(k).or_default().push(entries.value(i));
                keys.push((
                    run,
                    ls.value(i),
                    me.value(i).to_string(),
                    file.value(i),
                    seq.value(i),
                ));
            }
        }
        got.values_mut().for_each(|v| v.sort_unstable());
        assert_eq!(
            got,
            oracle(dim),
            "{table}: every occurrence ROOT reports is a row"
        );
        let n = keys.len();
        keys.sort();
        keys.dedup();
        assert_eq!(keys.len(), n, "{table}: (run, ls, me, file, seq) is unique");
    }
    // The fixture's point: 8 TH1 rows and 4 TH2 rows share (run 380400, lumisection 1, ME).
    let th1 = oracle(1);
    let repeated: usize = th1
        .iter()
        .filter(|(k, _)| k.1 == 1 && k.2 == "PixelPhase1/Repeat/charge_repeated")
        .map(|(_, v)| v.len())
        .sum();
    assert_eq!(repeated, 8);
}
