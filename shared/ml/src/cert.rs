//! Certification JSON and golden JSON (DIALS v1.12's algorithms, without its bugs: every
//! requested run is answered, datasets are merged without duplicating ranges).

use std::collections::{BTreeMap, BTreeSet};

use serde_json::{json, Map, Value};

/// One anomalous lumisection as one model saw it (rows of several datasets/files already merged).
#[derive(Debug, Clone, PartialEq)]
pub struct Flagged {
    /// Model id.
    pub model_id: i64,
    /// Run.
    pub run_number: i64,
    /// Lumisection.
    pub ls_number: i64,
    /// Input ME id (the model's first input).
    pub me_id: i64,
    /// Input ME name.
    pub me: String,
    /// The model's ONNX file name.
    pub filename: String,
    /// The score.
    pub metric_value: f64,
}

/// `{"<run>": {"<ls>": [{"model_id", "me_id", "filename", "me", "mse"}, ...]}}` for every requested
/// run (`{}` when none of its lumisections is flagged); entries ordered by model id, one per model
/// (the highest score when several datasets or files flagged it).
pub fn cert_json(runs: &[i64], flagged: &[Flagged]) -> Value {
    let mut out: BTreeMap<i64, BTreeMap<i64, BTreeMap<i64, &Flagged>>> =
        runs.iter().map(|r| (*r, BTreeMap::new())).collect();
    for f in flagged {
        let Some(run) = out.get_mut(&f.run_number) else {
            continue;
        };
        let e = run
            .entry(f.ls_number)
            .or_default()
            .entry(f.model_id)
            .or_insert(f);
        if f.metric_value > e.metric_value {
            *e = f;
        }
    }
    let mut top = Map::new();
    for (run, lss) in out {
        let mut m = Map::new();
        for (ls, models) in lss {
            let entries: Vec<Value> = models
                .values()
                .map(|f| json!({ "model_id": f.model_id, "me_id": f.me_id, "filename": f.filename, "me": f.me, "mse": f.metric_value }))
                .collect();
            m.insert(ls.to_string(), Value::Array(entries));
        }
        top.insert(run.to_string(), Value::Object(m));
    }
    Value::Object(top)
}

/// `{"<run>": [[first, last], ...]}`: per requested run, the inclusive ranges of consecutive good
/// lumisection numbers, good = ingested (`all`) and not flagged (`bad`). Runs without a good
/// lumisection are left out.
pub fn golden_json(
    runs: &[i64],
    all: &BTreeMap<i64, BTreeSet<i64>>,
    bad: &BTreeMap<i64, BTreeSet<i64>>,
) -> Value {
    let empty = BTreeSet::new();
    let mut top = Map::new();
    let wanted: BTreeSet<i64> = runs.iter().copied().collect();
    for run in wanted {
        let Some(lss) = all.get(&run) else { continue };
        let bad = bad.get(&run).unwrap_or(&empty);
        let mut ranges: Vec<[i64; 2]> = Vec::new();
        for ls in lss.iter().filter(|l| !bad.contains(l)) {
            match ranges.last_mut() {
                Some(r) if r[1] + 1 == *ls => r[1] = *ls,
                _ => ranges.push([*ls, *ls]),
            }
        }
        if !ranges.is_empty() {
            top.insert(run.to_string(), json!(ranges));
        }
    }
    Value::Object(top)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn f(model_id: i64, run: i64, ls: i64, v: f64) -> Flagged {
        Flagged {
            model_id,
            run_number: run,
            ls_number: ls,
            me_id: 7,
            me: "A/b".into(),
            filename: "m.onnx".into(),
            metric_value: v,
        }
    }

    #[test]
    fn cert_answers_every_requested_run_and_merges_duplicates() {
        let v = cert_json(
            &[1, 2],
            &[
                f(10, 1, 3, 0.5),
                f(10, 1, 3, 0.9),
                f(11, 1, 3, 0.1),
                f(10, 9, 1, 1.0),
            ],
        );
        assert_eq!(
            v,
            json!({"1": {"3": [
                {"model_id": 10, "me_id": 7, "filename": "m.onnx", "me": "A/b", "mse": 0.9},
                {"model_id": 11, "me_id": 7, "filename": "m.onnx", "me": "A/b", "mse": 0.1}]}, "2": {}})
        );
    }

    #[test]
    fn golden_ranges_skip_bad_and_missing_lumisections() {
        let all = BTreeMap::from([
            (1, BTreeSet::from([1, 2, 3, 5, 6, 7])),
            (2, BTreeSet::from([1])),
            (3, BTreeSet::from([4])),
        ]);
        let bad = BTreeMap::from([(1, BTreeSet::from([6])), (2, BTreeSet::from([1]))]);
        let v = golden_json(&[1, 2, 3, 3, 4], &all, &bad);
        assert_eq!(v, json!({"1": [[1, 3], [5, 5], [7, 7]], "3": [[4, 4]]}));
    }
}
