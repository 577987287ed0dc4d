//! A batch of histograms (all lumisections of a run, or of a run in one file) → one score and one
//! flag per lumisection, as the model document says.

use std::collections::{BTreeMap, BTreeSet};

use crate::error::{MlError, Result};
use crate::model::ModelDoc;
use crate::onnx::{per_ls, OnnxModel};

/// The histograms of one input ME in a batch: `(ls_number, file_id)` → bins (no flow), row-major
/// `[ny][nx]` for TH2.
#[derive(Debug, Clone, Default)]
pub struct MeRows {
    /// ME name.
    pub me: String,
    /// Per-lumisection shape: `[nx]` or `[ny, nx]`.
    pub tail: Vec<usize>,
    /// Bins per (lumisection, file).
    pub rows: BTreeMap<(i64, i64), Vec<f32>>,
}

/// What one batch feeds a model: per input ME (in the document's order) its rows.
#[derive(Debug, Clone, Default)]
pub struct RunInput {
    /// Run.
    pub run: i64,
    /// Per input ME.
    pub mes: Vec<MeRows>,
}

/// The outcome for one lumisection of one file.
#[derive(Debug, Clone, PartialEq)]
pub struct ScoreRow {
    /// File the histograms came from.
    pub file_id: i64,
    /// Lumisection.
    pub ls_number: i64,
    /// The metric output (mode A), or mode B's metric/flag value.
    pub score: Option<f64>,
    /// Anomalous at scoring time (threshold then in force, or the model's own flag).
    pub flag: bool,
}

/// Scores every lumisection that has all the model's inputs. Rows that lack an input ME are left
/// out (a model needs all of them); bins that do not match the model's shape are an error.
pub fn score_run(doc: &ModelDoc, model: &OnnxModel, input: &RunInput) -> Result<Vec<ScoreRow>> {
    let label = doc.label();
    if input.mes.len() != model.tails.len() {
        return Err(MlError::Output {
            model: label,
            message: format!(
                "{} inputs given, the model takes {}",
                input.mes.len(),
                model.tails.len()
            ),
        });
    }
    let mut keys: Option<BTreeSet<(i64, i64)>> = None;
    for m in &input.mes {
        let k: BTreeSet<(i64, i64)> = m.rows.keys().copied().collect();
        keys = Some(match keys {
            None => k,
            Some(prev) => prev.intersection(&k).copied().collect(),
        });
    }
    let keys: Vec<(i64, i64)> = keys.unwrap_or_default().into_iter().collect();
    if keys.is_empty() {
        return Ok(Vec::new());
    }
    let n = keys.len();
    let mut data = Vec::with_capacity(input.mes.len());
    for (m, tail) in input.mes.iter().zip(&model.tails) {
        let per: usize = tail.iter().product();
        let mut d = Vec::with_capacity(n * per);
        for k in &keys {
            let row = &m.rows[k];
            if row.len() != per {
                return Err(MlError::Input {
                    model: label,
                    me: m.me.clone(),
                    message: format!(
                        "lumisection {} of file {} has {} bins, the model takes {tail:?}",
                        k.0,
                        k.1,
                        row.len()
                    ),
                });
            }
            d.extend_from_slice(row);
        }
        data.push(d);
    }
    let out = model.run(input.run, n, &data)?;
    let pick = |key: &str| -> Result<Vec<f64>> {
        let i = model.output_index(key).ok_or_else(|| MlError::Output {
            model: label.clone(),
            message: format!(
                "no output '{key}' (outputs: {:?})",
                model.outputs.iter().map(|o| &o.name).collect::<Vec<_>>()
            ),
        })?;
        let t = out.get(i).ok_or_else(|| MlError::Output {
            model: label.clone(),
            message: format!("output {i} missing"),
        })?;
        per_ls(t, n).map_err(|message| MlError::Output {
            model: label.clone(),
            message: format!("output '{key}': {message}"),
        })
    };
    let scores = doc.metric_key.as_deref().map(pick).transpose()?;
    let flags: Vec<bool> = if doc.builtin_threshold {
        let key = doc
            .flagging_key
            .as_deref()
            .ok_or_else(|| MlError::Invalid("builtin_threshold without flagging_key".into()))?;
        pick(key)?.into_iter().map(|v| v != 0.0).collect()
    } else {
        let t = doc
            .anomaly_threshold
            .ok_or_else(|| MlError::Invalid("no anomaly_threshold".into()))?;
        scores
            .as_ref()
            .map(|s| s.iter().map(|v| *v > t).collect())
            .unwrap_or_else(|| vec![false; n])
    };
    Ok(keys
        .iter()
        .enumerate()
        .map(|(i, (ls, file))| ScoreRow {
            file_id: *file,
            ls_number: *ls,
            // Mode B without a metric: the flag is the value.
            score: Some(
                scores
                    .as_ref()
                    .map_or(if flags[i] { 1.0 } else { 0.0 }, |s| s[i]),
            ),
            flag: flags[i],
        })
        .collect())
}
