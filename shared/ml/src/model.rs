//! The model document (`model.json`): what cmsdials' `MLModelsIndex` reads, plus what scoring needs.

use serde::{Deserialize, Serialize};

/// One input of a model: a monitoring element fed as `float32 [n_ls, bins]` (TH1) or
/// `[n_ls, ny, nx]` (TH2), bins without under/overflow.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct InputMe {
    /// The ONNX input's name.
    pub name: String,
    /// ME path, e.g. `PixelPhase1/Tracks/PXBarrel/charge_PXLayer_2`.
    pub me: String,
    /// The ME's id in the lake.
    pub me_id: i64,
    /// 1 (TH1) or 2 (TH2); 0 while unknown (the ME is not in the lake yet).
    pub dim: i64,
    /// Tensor dims with -1 for the batch (lumisections): `[-1, nx]` or `[-1, ny, nx]`; empty while unknown.
    pub dims: Vec<i64>,
    /// Element type fed to the model (always `float32`).
    pub data_type: String,
}

/// One output of a model as its ONNX file declares it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct OutputSig {
    /// Output name.
    pub name: String,
    /// Dims (-1 where symbolic/unknown).
    pub dims: Vec<i64>,
    /// Element type.
    pub data_type: String,
}

/// A `name=value` tag.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Tag {
    /// Name.
    pub name: String,
    /// Value.
    pub value: String,
}

/// The model document. Field names and types are cmsdials 2.4.1's `MLModelsIndex`; `reason`,
/// `workspace`, `filename` and `inputs_in_order` are ours (the client ignores extra keys).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ModelDoc {
    /// Stable id: hash of workspace, name and revision (see [`model_id`]).
    pub id: i64,
    /// Name (a folder of the registry: `[A-Za-z0-9_.-]+`).
    pub name: String,
    /// Revision, 1 for the first registration of a name.
    pub revision: i64,
    /// Validation passed: the model can score.
    pub ready: bool,
    /// Scores new data on ingest (and is offered to backfill).
    pub active: bool,
    /// Model format (`onnx`).
    #[serde(rename = "type")]
    pub kind: String,
    /// Mode A: a lumisection is anomalous when `metric_key`'s output > this. Editable without re-run.
    pub anomaly_threshold: Option<f64>,
    /// Mode B: the model flags by itself, through the output `flagging_key`.
    pub builtin_threshold: bool,
    /// Free text.
    pub description: String,
    /// Mode B: the output that is the flag (non-zero = anomalous).
    pub flagging_key: Option<String>,
    /// Inputs, in the ONNX file's input order.
    pub input_signature: Vec<InputMe>,
    /// Output giving the per-lumisection score (mode A; optional in mode B).
    pub metric_key: Option<String>,
    /// Outputs as the ONNX file declares them.
    pub output_signature: Vec<OutputSig>,
    /// Tags.
    pub tags: Option<Vec<Tag>>,
    /// KServe service (unused here: inference is in-process).
    pub isvc_service_name: Option<String>,
    /// KServe YAML (unused here).
    pub isvc_yaml: Option<String>,
    /// Who registered it.
    pub created_by: String,
    /// Who changed it last.
    pub modified_by: String,
    /// When registered (RFC 3339 UTC).
    pub created_at: String,
    /// When changed last.
    pub modified_at: String,
    /// Why the model is not ready (null when ready).
    #[serde(default)]
    pub reason: Option<String>,
    /// Workspace the model belongs to.
    #[serde(default)]
    pub workspace: String,
    /// The ONNX file's name as registered (cert JSON reports it as `filename`).
    #[serde(default)]
    pub filename: String,
}

/// The id of a model revision: stable, in `0 … 2^53-1` like every lake id.
pub fn model_id(workspace: &str, name: &str, revision: i64) -> i64 {
    dials_lake::ids::stable_id("model", &format!("{workspace}/{name}/{revision}"))
}

/// A valid registry name: a folder and an URL-safe word.
pub fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 200
        && !name.starts_with('.')
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'))
}

impl ModelDoc {
    /// `name@revision`, for messages.
    pub fn label(&self) -> String {
        format!("{}@{}", self.name, self.revision)
    }

    /// The checks that need no data: a valid name, inputs given, exactly one threshold mode.
    pub fn check_shape(&self) -> Result<(), String> {
        if !valid_name(&self.name) {
            return Err(format!("name '{}' must be [A-Za-z0-9_.-]+", self.name));
        }
        if self.input_signature.is_empty() {
            return Err("no input ME".into());
        }
        match (self.builtin_threshold, self.anomaly_threshold, &self.metric_key, &self.flagging_key) {
            (false, Some(t), Some(_), None) if t.is_finite() => Ok(()),
            (false, Some(_), Some(_), None) => Err("anomaly_threshold must be a finite number".into()),
            (true, None, _, Some(_)) => Ok(()),
            _ => Err("exactly one threshold mode: builtin_threshold=false with metric_key and anomaly_threshold, \
                      or builtin_threshold=true with flagging_key (and no anomaly_threshold)"
                .into()),
        }
    }

    /// Whether a score/flag pair is anomalous under the document's current threshold.
    pub fn is_bad(&self, score: Option<f64>, flag: Option<bool>) -> bool {
        if self.builtin_threshold {
            flag.unwrap_or(false)
        } else {
            matches!((score, self.anomaly_threshold), (Some(s), Some(t)) if s > t)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(crate) fn doc() -> ModelDoc {
        ModelDoc {
            id: model_id("ws", "m", 1),
            name: "m".into(),
            revision: 1,
            ready: true,
            active: true,
            kind: "onnx".into(),
            anomaly_threshold: Some(0.5),
            builtin_threshold: false,
            description: String::new(),
            flagging_key: None,
            input_signature: vec![InputMe {
                name: "x".into(),
                me: "A/b".into(),
                me_id: 1,
                dim: 1,
                dims: vec![-1, 3],
                data_type: "float32".into(),
            }],
            metric_key: Some("mse".into()),
            output_signature: vec![],
            tags: None,
            isvc_service_name: None,
            isvc_yaml: None,
            created_by: "t".into(),
            modified_by: "t".into(),
            created_at: "2026-01-01T00:00:00Z".into(),
            modified_at: "2026-01-01T00:00:00Z".into(),
            reason: None,
            workspace: "ws".into(),
            filename: "model.onnx".into(),
        }
    }

    #[test]
    fn exactly_one_threshold_mode() {
        let mut d = doc();
        assert!(d.check_shape().is_ok());
        d.flagging_key = Some("flag".into());
        assert!(d.check_shape().is_err(), "both modes");
        d.anomaly_threshold = None;
        d.metric_key = None;
        assert!(
            d.check_shape().is_err(),
            "flag key without builtin_threshold"
        );
        d.builtin_threshold = true;
        assert!(d.check_shape().is_ok());
        d.flagging_key = None;
        assert!(d.check_shape().is_err(), "neither");
        let mut d = doc();
        d.anomaly_threshold = Some(f64::NAN);
        assert!(d.check_shape().is_err());
        d.name = "../x".into();
        assert!(d.check_shape().is_err());
    }

    #[test]
    fn flags_follow_the_current_threshold() {
        let mut d = doc();
        assert!(d.is_bad(Some(0.6), None));
        assert!(!d.is_bad(Some(0.5), None));
        d.anomaly_threshold = Some(0.7);
        assert!(!d.is_bad(Some(0.6), None));
        d.builtin_threshold = true;
        assert!(d.is_bad(Some(0.0), Some(true)));
        assert!(!d.is_bad(Some(9.0), Some(false)));
    }

    #[test]
    fn document_round_trips_with_the_clients_keys() {
        let v = serde_json::to_value(doc()).expect("json");
        for k in [
            "id",
            "name",
            "revision",
            "ready",
            "active",
            "type",
            "anomaly_threshold",
            "builtin_threshold",
            "description",
            "flagging_key",
            "input_signature",
            "metric_key",
            "output_signature",
            "tags",
            "isvc_service_name",
            "isvc_yaml",
            "created_by",
            "modified_by",
            "created_at",
            "modified_at",
        ] {
            assert!(v.get(k).is_some(), "{k}");
        }
        let back: ModelDoc = serde_json::from_value(v).expect("back");
        assert_eq!(back, doc());
    }
}
